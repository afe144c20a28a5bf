"""`dreams lake compact` / `lake stats` (dreaming.lake_compact): one file per partition, the same events,
atomic against a crash at every step (fsck repairs, nothing is lost or read twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dreaming import lake_compact
from dreaming.fsck import fsck
from dreaming.lake import Lake
from tests.factories import write_sessions

W = [("user", "hi"), ("assistant", "yo")]
Q = "SELECT * FROM events ORDER BY tenant, session_id, seq, event_id"


def _two_snapshots(lake):
    write_sessions(lake, [{"session_id": "a", "events": W}, {"session_id": "b", "events": W}], snapshot_id="snap_1")
    write_sessions(lake, [{"session_id": "a", "events": W}, {"session_id": "c", "events": W}], snapshot_id="snap_2")


def _rows(lake):
    with Lake(lake) as lk:
        whole = lk.con.execute(Q).fetchall()
        with lk.scoped(["a", "c"], tenant="acme") as sc:
            scoped = sc.con.execute(Q).fetchall()
    return whole, scoped


def _parquet(lake):
    return sorted(p for p in lake.transcripts_dir.rglob("*.parquet"))


def test_compact_keeps_every_event_in_one_file_and_is_idempotent(lake):
    _two_snapshots(lake)
    before = _rows(lake)
    assert lake_compact.stats(lake)["totals"]["files"] == 2
    r = lake_compact.compact(lake)
    assert [p.status for p in r.partitions] == ["compacted"]
    assert _rows(lake) == before  # same deduplicated events, whole-lake and scoped
    assert len(before[0]) == 6 and len(_parquet(lake)) == 3  # the new file; the old two wait for the grace
    assert fsck(lake).retired_waiting and len(_parquet(lake)) == 3  # within the grace: kept, not quarantined
    assert fsck(lake, grace_s=0).retired_removed and len(_parquet(lake)) == 1
    st = lake_compact.stats(lake)
    assert st["totals"]["files"] == 1 and st["totals"]["rows"] == 8  # the duplicate copies are kept, as ingested
    assert lake_compact.compact(lake).partitions == []  # nothing left to do


def test_dry_run_writes_nothing(lake):
    _two_snapshots(lake)
    files = _parquet(lake)
    r = lake_compact.compact(lake, dry_run=True)
    assert r.dry_run and len(r.partitions) == 1 and not r.compacted
    assert _parquet(lake) == files and lake_compact.stats(lake)["totals"]["files"] == 2
    (p,) = r.partitions  # the plan says what it would rewrite: both files' rows and bytes
    assert p.rows == 8 and p.bytes == sum(f.stat().st_size for f in files)


@pytest.mark.parametrize("step", ["staged", "placed", "registered"])
def test_a_crash_at_any_step_loses_nothing_and_fsck_repairs(lake, monkeypatch, step):
    _two_snapshots(lake)
    before = _rows(lake)

    def crash(name):
        if name == step:
            raise lake_compact._Crash(name)

    monkeypatch.setattr(lake_compact, "_step", crash)
    with pytest.raises(lake_compact._Crash):
        lake_compact.compact(lake)
    assert _rows(lake) == before  # a reader right after the crash sees every event once
    fsck(lake, grace_s=0)
    assert _rows(lake) == before
    monkeypatch.setattr(lake_compact, "_step", lambda name: None)
    lake_compact.compact(lake)
    fsck(lake, grace_s=0)  # the retired files go
    assert _rows(lake) == before and len(_parquet(lake)) == 1
    assert not fsck(lake, grace_s=0).quarantined  # nothing was ever an orphan


def test_cli_stats_and_compact_json(lake):
    _two_snapshots(lake)
    env_cmd = [str(Path(sys.executable).with_name("dreams"))]
    st = json.loads(subprocess.run([*env_cmd, "lake", "stats", "--json"], capture_output=True, text=True,
                                   check=True).stdout)
    assert st["data"][0]["files"] == 2 and st["next_page"] is None
    out = subprocess.run([*env_cmd, "lake", "compact", "--json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["compacted"] == 1
    assert len(_parquet(lake)) == 3  # the old two are kept for readers until the grace has passed


def test_a_reader_that_listed_the_old_files_still_reads_every_event(lake):
    """A Lake opened before a compaction reads after it (a dream's read step): the old files must still be
    there. They go only once the grace has passed, by fsck or the next compact, and never to quarantine."""
    _two_snapshots(lake)
    expected = _rows(lake)
    with Lake(lake) as early:
        early.files  # listed before the compaction
        with early.scoped(["a", "c"], tenant="acme") as sc:
            lake_compact.compact(lake)
            assert sc.con.execute(Q).fetchall() == expected[1]
        assert early.con.execute(Q).fetchall() == expected[0] and not early.missing
    assert _rows(lake) == expected  # a reader opened after it reads the new file
    r = fsck(lake)
    assert len(r.retired_waiting) == 2 and not r.quarantined and not r.retired_removed
    assert lake_compact.compact(lake, dry_run=True).retired_removed == []
    again = lake_compact.compact(lake)  # the next compact (a later night) cleans up past the grace
    assert again.retired_removed == [] and len(_parquet(lake)) == 3
    lake.staging_grace_s = 0.0
    assert len(lake_compact.compact(lake).retired_removed) == 2 and len(_parquet(lake)) == 1
    assert _rows(lake) == expected
