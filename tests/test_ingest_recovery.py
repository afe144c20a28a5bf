"""Crashes during ingest: the lake reads only registered files; fsck cleans staging and quarantines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from dreaming.atomic import StagingArea, place_lock, staged_name, write_parquet_atomic
from dreaming.catalog import Catalog
from dreaming.cli import app
from dreaming.fsck import fsck
from dreaming.ingest import ingest_files
from dreaming.lake import Lake
from dreaming.schema import EVENT_SCHEMA
from tests.factories import event_rows

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def write_events(path: Path, session: str, n: int = 3) -> None:
    path.write_text("".join(json.dumps({
        "id": f"sevt_{session}_{i}", "type": "user.message", "session_id": session,
        "processed_at": f"2026-11-02T10:{i:02d}:00Z", "content": [{"type": "text", "text": f"m{i}"}]}) + "\n"
        for i in range(n)))


def orphan(settings, session: str = "sesn_orphan") -> Path:
    """A snapshot file in the lake without a catalog row (what a crash after placing leaves)."""
    rows = event_rows({"session_id": session, "events": [("user", "hi"), ("assistant", "yo")]}, "snap_orphan")
    path = settings.transcripts_dir / "tenant=acme" / "day=2026-11-02" / "snap_orphan.parquet"
    return write_parquet_atomic(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), path, settings.staging_dir)


def test_the_lake_reads_only_registered_files_and_fsck_quarantines_the_rest(tmp_path, lake, catalog):
    write_events(tmp_path / "a.jsonl", "sesn_A")
    assert ingest_files([tmp_path / "a.jsonl"], catalog, tenant="acme", recover=False).ok
    stray = orphan(lake)
    with Lake(lake) as lk:
        assert [s["session_id"] for s in lk.sessions()] == ["sesn_A"]  # the orphan is not read
    report = fsck(lake, catalog)
    assert [q["from"] for q in report.quarantined] == [stray.relative_to(lake.home).as_posix()]
    moved = lake.home / report.quarantined[0]["to"]
    assert moved.is_file() and moved.is_relative_to(lake.quarantine_dir) and not stray.exists()
    assert report.missing == [] and report.ok
    # idempotent: a second run finds nothing
    again = fsck(lake, catalog)
    assert not again.changed and again.registered == 1


def test_a_registered_file_missing_on_disk_is_reported_and_left_out(tmp_path, lake, catalog):
    write_events(tmp_path / "a.jsonl", "sesn_A")
    write_events(tmp_path / "b.jsonl", "sesn_B")
    report = ingest_files([tmp_path], catalog)
    gone = lake.home / report.files[0].files[0]
    gone.unlink()
    with Lake(lake) as lk:
        assert [s["session_id"] for s in lk.sessions()] == ["sesn_B"]
        assert lk.missing == [str(gone)]
    r = runner.invoke(app, ["lake", "fsck", "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["missing"] == [gone.relative_to(lake.home).as_posix()]


def test_fsck_removes_dead_writers_staging_but_not_a_live_one(lake, catalog):
    staging = lake.staging_dir
    live = StagingArea(staging)
    (live.dir / "x.parquet").write_bytes(b"in progress")
    # a dead ingest's folder: its lock file exists but nobody holds it
    dead = staging / "ingest~otherhost~1~abc"
    dead.mkdir()
    (dead / "y.parquet").write_bytes(b"left behind")
    (staging / "ingest~otherhost~1~abc.lock").write_text("")
    # a loose staged file of a process that is gone (this host), and a fresh one of a live process
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_loose = staging / staged_name("v1.parquet").replace(f"~{os.getpid()}~", f"~{gone.stdout.strip()}~")
    dead_loose.write_bytes(b"x")
    live_loose = staging / staged_name("v2.parquet")
    live_loose.write_bytes(b"x")
    try:
        report = fsck(lake, catalog)
        assert (live.dir / "x.parquet").exists() and live_loose.exists()
        assert not dead.exists() and not dead_loose.exists()
        assert not (staging / "ingest~otherhost~1~abc.lock").exists()
        assert set(report.staging_removed) >= {"_staging/ingest~otherhost~1~abc/y.parquet",
                                                f"_staging/{dead_loose.name}"}
        assert f"_staging/{live.name}" in report.staging_active
        # past the grace period even a live-looking loose file is stale
        assert f"_staging/{live_loose.name}" in fsck(lake, catalog, grace_s=0).staging_removed
    finally:
        live.close()
    assert not any(staging.iterdir())


def test_fsck_waits_for_a_writer_between_placing_and_registering(tmp_path, lake, catalog):
    path = None
    done = threading.Event()
    with place_lock(lake.home):  # what an ingest holds while it places and registers
        path = orphan(lake, "sesn_in_flight")
        t = threading.Thread(target=lambda: (fsck(lake, Catalog(lake)), done.set()))
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # fsck waits for the lock
        catalog.register_written("snap_orphan", [path], rows=2, sessions=1)
    t.join(10)
    assert done.is_set() and path.exists()  # registered meanwhile: not quarantined


CHILD = """
import os, sys, time
from pathlib import Path
from dreaming.catalog import Catalog
from dreaming.ingest import ingest_files

def placed_then_hang(self, conn, row):
    Path(os.environ["MARK"]).write_text("placed")
    time.sleep(600)

Catalog.insert_snapshot = placed_then_hang
ingest_files([Path(sys.argv[1])], Catalog(), tenant="acme")
"""


def test_sigkill_between_placing_and_registering_then_recovery(tmp_path, lake, catalog):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_events(src / f"s{i}.jsonl", f"sesn_{i}")
    mark = tmp_path / "placed"
    env = {**os.environ, "DREAMS_HOME": str(lake.home), "MARK": str(mark), "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(src)], env=env)
    try:
        deadline = time.time() + 120
        while not mark.exists():
            assert p.poll() is None and time.time() < deadline, "the child never placed its files"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    placed = sorted(lake.transcripts_dir.rglob("*.parquet"))
    assert len(placed) == 3  # in the lake, without catalog rows
    assert any(lake.staging_dir.iterdir())  # the dead writer's staging folder and lock
    with Lake(lake) as lk:
        assert lk.sessions() == []  # nothing unregistered is read
    # the next ingest recovers first, then ingests everything
    report = ingest_files([src], catalog, tenant="acme")
    assert report.ok and report.sessions == 3
    assert len(report.recovery["quarantined"]) == 3 and report.recovery["staging_removed"]
    assert not any(lake.staging_dir.iterdir())
    with Lake(lake) as lk:
        assert sorted(s["session_id"] for s in lk.sessions()) == ["sesn_0", "sesn_1", "sesn_2"]
    assert len(list(lake.quarantine_dir.rglob("*.parquet"))) == 3  # moved, never deleted


def test_lake_fsck_cli_reports_what_it_moved(lake, catalog):
    stray = orphan(lake)
    r = runner.invoke(app, ["lake", "fsck"])
    assert r.exit_code == 0, r.output
    assert "1 unregistered file(s) quarantined" in r.stdout
    assert stray.relative_to(lake.home).as_posix() in r.stdout
