"""The lake on object storage (``DREAMS_LAKE_URL=s3://bucket/lake``, ``dreaming.lake_fs``).

The S3 endpoint is moto's S3 server (``moto.server.ThreadedMotoServer``) started by this module on
127.0.0.1 at a free port: an S3-compatible server in this process, not AWS; nothing else is contacted.
The catalog, locks and staging stay under a local ``DREAMS_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dreaming.catalog import Catalog
from dreaming.fsck import fsck
from dreaming.ingest import ingest_files
from dreaming.lake import Lake
from dreaming.policy import Policy
from dreaming.settings import get_settings
from dreaming.signals import extract_signals

import moto.server as moto_server  # the dev extra (scripts/bootstrap.sh): a missing one fails, never skips
import s3fs  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_SESSION_TOKEN": "testing"}
COLS = ("tenant, agent_id, session_id, seq, event_id, ts, type, role, text, tool_name, tool_use_id, tool_input, "
        "is_error, outcome, source_format, raw")  # every column but snapshot_id (a new id per ingest)


@pytest.fixture(scope="module")
def endpoint():
    """moto's S3 server on loopback (127.0.0.1, a free port) for this module."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, tmp_path, monkeypatch):
    """A fresh bucket, and settings whose lake is ``s3://<bucket>/lake`` (catalog under a local home)."""
    import boto3

    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("DREAMS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DREAMS_LAKE_URL", f"s3://{bucket}/lake")
    monkeypatch.setenv("DREAMS_S3_ENDPOINT_URL", endpoint)
    return get_settings()


def _objects(settings, root: str = "transcripts") -> list[str]:
    from dreaming.lake_fs import LakeFiles

    return sorted(LakeFiles(settings).listing((root,)))


def _events(session: str, n: int, start: int = 0, hour: int = 10, day: str = "2026-11-02") -> list[dict]:
    return [{"id": f"sevt_{session}_{i}", "type": "agent.message" if i % 2 else "user.message",
             "processed_at": f"{day}T{hour}:{i:02d}:00Z", "session_id": session,
             "content": [{"type": "text", "text": f"always use uv, never pip ({i})"}]} for i in range(start, start + n)]


def _exports(folder: Path) -> dict[str, list[Path]]:
    """Two tenants' exports: an overlapping re-export (dedupe), a session across midnight (two files)."""
    folder.mkdir(parents=True, exist_ok=True)

    def jsonl(name, records):
        p = folder / name
        p.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return p

    night = [{**e, "processed_at": ts} for e, ts in zip(_events("sesn_night", 4), [
        "2026-11-02T23:58:00Z", "2026-11-02T23:59:00Z", "2026-11-03T00:00:00Z", "2026-11-03T00:01:00Z"], strict=True)]
    return {
        "acme": [jsonl("monday.jsonl", _events("sesn_A", 6)),
                 # overlaps monday's 6 events at the same positions: which copy wins (snapshot ids made in
                 # the same millisecond sort at random) changes no column but snapshot_id
                 jsonl("tuesday.jsonl", _events("sesn_A", 9) + _events("sesn_B", 2, hour=11)),
                 jsonl("night.jsonl", night)],
        "globex": [jsonl("globex.jsonl", _events("sesn_G", 3, day="2026-11-04"))],
    }


def _ingest(settings, exports) -> list[str]:
    cat = Catalog(settings)
    try:
        return [f.status for tenant, paths in exports.items() for f in ingest_files(paths, cat, tenant=tenant).files]
    finally:
        cat.engine.dispose()


def _read(settings, ids, tenant="acme"):
    q = f"SELECT {COLS} FROM events ORDER BY session_id, ts, event_id"
    with Lake(settings) as lk, lk.scoped(ids, tenant=tenant) as sc:
        return (lk.sessions(tenant=tenant), sc.con.execute(q).fetchall(), sorted(sc.files),
                extract_signals(sc, ids, Policy(), tenant=tenant))


def test_ingest_and_scoped_reads_on_s3_match_a_local_lake(s3, tmp_path):
    exports = _exports(tmp_path / "exports")
    assert _ingest(s3, exports) == ["ingested"] * 4
    objects = _objects(s3)
    assert len(objects) == 5  # sesn_night crosses midnight: one file per UTC day
    assert all(o.startswith("transcripts/tenant=") for o in objects)
    assert not (s3.home / "transcripts").exists()  # nothing of the lake on local disk
    local = get_settings(home=tmp_path / "local", lake_url=None)
    assert _ingest(local, exports) == ["ingested"] * 4

    ids = ["sesn_A", "sesn_B", "sesn_night"]
    sessions, events, files, signals = _read(s3, ids)
    l_sessions, l_events, l_files, l_signals = _read(local, ids)
    assert sessions == l_sessions and events == l_events and signals == l_signals
    assert {s["session_id"]: s["events"] for s in sessions} == {"sesn_A": 9, "sesn_B": 2, "sesn_night": 4}
    assert files and all(f.startswith(f"{s3.lake_url}/transcripts/tenant=acme/") for f in files)
    assert _read(s3, ["sesn_G"], tenant="globex")[1] == _read(local, ["sesn_G"], tenant="globex")[1]
    with Lake(s3) as lk:  # the whole-lake views read the objects too
        assert lk.con.execute("SELECT count(*) FROM events").fetchone()[0] == 18 and lk.missing == []
        assert lk.glob.startswith(s3.lake_url)
    # re-ingesting the same exports is a no-op: nothing new in the catalog or the bucket
    assert _ingest(s3, exports) == ["skipped"] * 4
    assert _objects(s3) == objects
    report = fsck(s3, grace_s=0)
    assert report.quarantined == [] and report.missing == [] and report.registered == 5


def test_stats_and_compaction_on_s3(s3, tmp_path):
    """Compaction on the object store: the same events from one object per partition; the replaced objects
    stay for readers until the grace has passed, then fsck deletes them (never quarantines them)."""
    from dreaming import lake_compact

    _ingest(s3, _exports(tmp_path / "exports"))
    totals = lake_compact.stats(s3)["totals"]
    assert totals["files"] == 5 and totals["rows"] == 24 and totals["bytes"] > 0 and totals["missing"] == 0
    ids = ["sesn_A", "sesn_B", "sesn_night"]
    before = _read(s3, ids)
    dry = lake_compact.compact(s3, dry_run=True)
    (planned,) = dry.partitions  # acme's 2026-11-02: monday, tuesday and the night's first half
    assert planned.status == "would compact" and len(planned.files) == 3 and planned.rows == 19 and planned.bytes > 0
    with Lake(s3) as early, early.scoped(ids, tenant="acme") as sc:  # a reader that listed the old objects
        report = lake_compact.compact(s3)
        assert [p.status for p in report.partitions] == ["compacted"]
        assert sc.con.execute("SELECT count(*) FROM events").fetchone()[0] == 15  # still reads them
    after = _read(s3, ids)
    assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]  # same sessions, events, signals
    assert len(after[2]) == 2 and lake_compact.stats(s3)["totals"]["files"] == 3
    assert len(_objects(s3)) == 6  # the new object, the three old ones kept for readers, the other two
    r = fsck(s3)
    assert len(r.retired_waiting) == 3 and not r.quarantined and not r.missing
    r = fsck(s3, grace_s=0)
    assert len(r.retired_removed) == 3 and not r.quarantined and len(_objects(s3)) == 3
    assert _read(s3, ids)[1] == before[1]


CRASH = """
import os, sys
from pathlib import Path
from dreaming.catalog import Catalog
from dreaming.ingest import commit, ingest_files
commit._step = lambda name: os._exit(137) if name == "placed" else None  # dies between PUT and registration
ingest_files([Path(sys.argv[1])], Catalog(), tenant="acme", recover=False)
"""


def test_a_crash_between_put_and_registration_leaves_an_object_no_read_sees(s3, tmp_path):
    src = _exports(tmp_path / "exports")["acme"][0]
    out = subprocess.run([sys.executable, "-c", CRASH, str(src)], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 137, out.stderr
    stray = _objects(s3)
    assert len(stray) == 1  # written, not registered
    cat = Catalog(s3)
    try:
        assert cat.snapshot_files() == []
    finally:
        cat.engine.dispose()
    with Lake(s3) as lk:  # a file not in the catalog does not exist
        assert lk.sessions() == [] and lk.files == [] and lk.missing == []
    # within the grace another machine's ingest may be between its PUT and its registration: left alone
    young = fsck(s3)
    assert young.quarantined == [] and young.staging_active == stray
    report = fsck(s3, grace_s=0)
    assert [q["from"] for q in report.quarantined] == stray
    assert report.quarantined[0]["to"].startswith("quarantine/") and report.quarantined[0]["to"].endswith(stray[0])
    assert _objects(s3) == [] and _objects(s3, "quarantine") == [report.quarantined[0]["to"]]
    assert not fsck(s3, grace_s=0).changed  # idempotent
    # the export is not known to the catalog: ingesting it again places and registers it; then a no-op
    assert _ingest(s3, {"acme": [src]}) == ["ingested"]
    assert _ingest(s3, {"acme": [src]}) == ["skipped"]
    with Lake(s3) as lk:
        assert [(s["session_id"], s["events"]) for s in lk.sessions(tenant="acme")] == [("sesn_A", 6)]


def test_a_failed_check_or_catalog_write_leaves_no_object(s3, tmp_path, monkeypatch):
    from dreaming.lake_fs import LakeFiles

    src = _exports(tmp_path / "exports")["acme"][0]

    def bad(self, staged, rel):
        raise OSError("the object has 1 rows, the staged file 6")

    monkeypatch.setattr(LakeFiles, "_validate", bad)
    cat = Catalog(s3)
    try:
        res = ingest_files([src], cat, tenant="acme", recover=False).files[0]
        assert res.status == "failed" and "the staged file 6" in res.error
        assert _objects(s3) == [] and cat.snapshot_files() == []
        monkeypatch.undo()
        monkeypatch.setattr(cat, "insert_snapshot", lambda conn, row: (_ for _ in ()).throw(RuntimeError("db down")))
        res = ingest_files([src], cat, tenant="acme", recover=False).files[0]
        assert res.status == "failed" and "db down" in res.error
        assert _objects(s3) == [] and cat.snapshot_files() == []
    finally:
        cat.engine.dispose()


def test_a_registered_object_that_is_gone_is_reported_missing(s3, tmp_path):
    from dreaming.lake_fs import LakeFiles

    cat = Catalog(s3)
    try:
        report = ingest_files(_exports(tmp_path / "exports")["acme"][:2], cat, tenant="acme")
    finally:
        cat.engine.dispose()
    store = LakeFiles(s3)
    gone = report.files[0].files[0]  # monday's: sesn_A's first 6 events (tuesday's file holds all 9)
    store.fs.rm_file(store.key(gone))
    with Lake(s3) as lk:
        assert lk.missing == [store.uri(gone)]
        assert [(s["session_id"], s["events"]) for s in lk.sessions(tenant="acme")] == [("sesn_A", 9), ("sesn_B", 2)]
        with lk.scoped(["sesn_A"], tenant="acme") as sc:
            assert sc.missing == [store.uri(gone)] and len(sc.files) == 1
    assert fsck(s3).missing == [gone]


def test_keep_secrets_sidecars_go_to_the_store_registered(s3, tmp_path):
    from tests.test_ingest_secrets import KEY, write

    src = tmp_path / "s.jsonl"
    write(src)
    cat = Catalog(s3)
    try:
        res = ingest_files([src], cat, tenant="acme", keep_secrets=True).files[0]
        assert res.status == "ingested" and res.originals
        assert _objects(s3, "originals") == [res.originals] == cat.original_files()
    finally:
        cat.engine.dispose()
    from dreaming.lake_fs import LakeFiles

    assert KEY in LakeFiles(s3).read_table(res.originals).to_pylist()[0]["text"]  # the unredacted original
    with Lake(s3) as lk:
        assert KEY not in str(lk.con.execute("SELECT text FROM events").fetchall())  # the lake is redacted
    report = fsck(s3, grace_s=0)
    assert report.quarantined == [] and report.registered == 2 and report.ok


def test_the_session_index_is_built_from_objects_registered_without_it(s3, tmp_path):
    import sqlalchemy as sa

    from dreaming.catalog import lake_files, session_index

    _ingest(s3, _exports(tmp_path / "exports"))
    before = _read(s3, ["sesn_A", "sesn_night"])
    cat = Catalog(s3)
    try:
        with cat.tx() as conn:  # a catalog from before the index
            conn.execute(session_index.delete())
            conn.execute(lake_files.delete())
        assert _read(s3, ["sesn_A", "sesn_night"]) == before  # rows rebuilt from the objects, once
        with cat.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(lake_files)).scalar() == 5
    finally:
        cat.engine.dispose()


@pytest.mark.flow
def test_cli_ingest_sessions_run_and_fsck_on_the_s3_lake(s3, tmp_path, prefect_harness):
    """The commands a user runs, as separate processes of the installed entry point, on the S3 lake
    (``dreams run`` against the test session's Prefect server)."""
    from prefect.settings import PREFECT_API_URL

    dreams = str(Path(sys.executable).with_name("dreams"))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}

    def run(*args, timeout=120):
        out = subprocess.run([dreams, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return json.loads(out.stdout) if "--json" in args else out.stdout

    exports = _exports(tmp_path / "exports")
    ingested = run("ingest", *map(str, exports["acme"]), "--tenant", "acme", "--json")
    assert ingested["totals"]["ingested"] == 3 and _objects(s3) and not (s3.home / "transcripts").exists()
    listed = run("sessions", "--tenant", "acme", "--json")["data"]
    assert {s["session_id"]: s["events"] for s in listed} == {"sesn_A": 9, "sesn_B": 2, "sesn_night": 4}
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "style.md").write_text("# style\nUse tabs.\n", encoding="utf-8")
    run("store", "create", "s", "--scope", "acme", "--from-dir", str(tmp_path / "memory"), "--json")
    dream = run("run", "--store", "s", "--json", timeout=300)
    assert dream["status"] == "completed", dream.get("error")
    sessions = next(i["session_ids"] for i in dream["inputs"] if i["type"] == "sessions")
    assert sorted(sessions) == ["sesn_A", "sesn_B", "sesn_night"]  # read from the objects
    assert run("lake", "fsck", "--json")["ok"]
    assert run("lake", "compact", "--json")["compacted"] == 1  # acme's 2026-11-02: three objects into one


def test_two_machines_share_the_s3_lake_through_the_postgresql_catalog(s3, tmp_path, monkeypatch):
    """Two homes (each its own staging, locks and fsck) on one bucket and one PostgreSQL catalog: each
    reads what the other ingested, and neither's fsck takes the other's objects for debris."""
    from tests.pg import fresh_database

    exports = _exports(tmp_path / "exports")
    with fresh_database() as url:
        monkeypatch.setenv("DREAMS_CATALOG_URL", url)
        a, b = (get_settings(home=tmp_path / name) for name in ("machine-a", "machine-b"))
        assert _ingest(a, {"acme": exports["acme"]}) == ["ingested"] * 3
        assert _ingest(b, {"globex": exports["globex"], "acme": exports["acme"][:1]}) == ["ingested", "skipped"]
        for settings in (b, a):
            report = fsck(settings, grace_s=0)
            assert report.quarantined == [] and report.missing == [] and report.registered == 5
        assert _read(a, ["sesn_A", "sesn_B", "sesn_night"]) == _read(b, ["sesn_A", "sesn_B", "sesn_night"])
        with Lake(b) as lk:
            assert {s["session_id"]: s["events"] for s in lk.sessions()} == {
                "sesn_A": 9, "sesn_B": 2, "sesn_night": 4, "sesn_G": 3}
