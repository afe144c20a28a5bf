"""The session index (dreaming.lake_index) and scoped reads (Lake.sessions / Lake.scoped): real Parquet, real DuckDB.

A scoped read must give exactly what the whole-lake views give for the same sessions, open only the
files that hold them, and keep working on a catalog written before the index existed.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from dreaming.catalog import Catalog, lake_files, session_index
from dreaming.ingest import ingest_files
from dreaming.lake import Lake, query_sessions
from dreaming.policy import Policy
from dreaming.signals import extract_signals
from tests.factories import T0, write_sessions
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

lake = lake_both  # every test here runs on SQLite and on PostgreSQL (tests/pg.py)


def _events(session: str, n: int, start: int = 0, hour: int = 10) -> list[dict]:
    return [{"id": f"sevt_{session}_{i}", "type": "agent.message" if i % 2 else "user.message",
             "processed_at": f"2026-11-02T{hour}:{i:02d}:00Z", "session_id": session,
             "content": [{"type": "text", "text": f"message {i}"}]} for i in range(start, start + n)]


def _jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _index(settings) -> list[dict]:
    cat = Catalog(settings)
    try:
        with cat.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(session_index).order_by(
                session_index.c.path, session_index.c.session_id)).mappings()]
    finally:
        cat.engine.dispose()


def _mixed_lake(settings) -> None:
    """Two tenants (one reusing a session id), a session across midnight, two agents, an overlapping
    re-export, errors and tool calls: what a selection must get exactly right."""
    work = [("user", "always use uv, never pip"), ("tool_use", "bash", {"command": "pip install x"}),
            ("tool_result", "error: externally-managed-environment", True),
            ("tool_use", "bash", {"command": "uv pip install x"}),
            ("tool_result", "ok"), ("assistant", "done")]
    sessions = [
        {"session_id": "s1", "events": work, "outcome": "satisfied"},
        {"session_id": "s2", "agent_id": "agent-2", "start": T0 + timedelta(hours=3), "events": work[:3]},
        {"session_id": "late", "start": T0.replace(hour=23, minute=58), "events": work},  # one file: the start day
        {"session_id": "s3", "start": T0 + timedelta(days=2), "events": [("user", "hi"), ("assistant", "yo")]},
        {"session_id": "twice", "start": T0 + timedelta(days=3), "events": work[:2]},
        {"session_id": "twice", "start": T0 + timedelta(days=3), "events": work[:2]},  # one file, ids repeated
        {"session_id": "s1", "tenant": "globex", "events": [("user", "globex's own s1")]},
        {"session_id": "g2", "tenant": "globex", "start": T0 + timedelta(days=1), "events": work},
    ]
    write_sessions(settings, sessions, snapshot_id="snap_0001")
    write_sessions(settings, [sessions[0], sessions[3]], snapshot_id="snap_0002")  # an overlapping export
    # an ingested session across midnight: one file per UTC day
    src = settings.home.parent / "midnight.jsonl"
    _jsonl(src, [{**e, "processed_at": ts} for e, ts in zip(_events("sesn_night", 4), [
        "2026-11-02T23:58:00Z", "2026-11-02T23:59:00Z", "2026-11-03T00:00:00Z", "2026-11-03T00:01:00Z"], strict=True)])
    cat = Catalog(settings)
    try:
        assert ingest_files([src], cat, tenant="acme").files[0].status == "ingested"
    finally:
        cat.engine.dispose()


def test_ingest_writes_index_rows_with_the_snapshot_and_reingest_keeps_dedupe(tmp_path, lake, catalog):
    a, b = tmp_path / "monday.jsonl", tmp_path / "tuesday.jsonl"
    _jsonl(a, _events("sesn_A", 6))
    _jsonl(b, _events("sesn_A", 6, start=3) + _events("sesn_B", 2, hour=11))  # overlaps sesn_A's 3-5
    assert [f.status for f in ingest_files([a], catalog).files] == ["ingested"]
    rows = _index(lake)
    assert [(r["session_id"], r["events"]) for r in rows] == [("sesn_A", 6)]
    assert [f.status for f in ingest_files([b], catalog).files] == ["ingested"]
    rows = _index(lake)
    files = {r["path"] for r in rows}
    with catalog.engine.connect() as conn:
        indexed = set(conn.execute(sa.select(lake_files.c.path)).scalars())
    assert indexed == files == set(catalog.snapshot_files())
    assert sorted((r["session_id"], r["events"]) for r in rows) == [("sesn_A", 6), ("sesn_A", 6), ("sesn_B", 2)]
    first = min(r["first_ts"] for r in rows if r["session_id"] == "sesn_A")
    assert first.replace(tzinfo=None) == T0.replace(hour=10, tzinfo=None)
    with Lake(lake) as lk:
        scoped = {s["session_id"]: s["events"] for s in lk.sessions(tenant="default")}
        whole = {s["session_id"]: s["events"] for s in lk.sessions()}
    assert scoped == whole == {"sesn_A": 9, "sesn_B": 2}  # each event once, as before the index
    # the same content again is skipped, and leaves the index as it was
    assert [f.status for f in ingest_files([b], catalog).files] == ["skipped"]
    assert _index(lake) == rows


def test_selections_answer_exactly_what_the_whole_lake_answers(lake):
    _mixed_lake(lake)
    day = T0.replace(hour=0)
    cases = [
        {"tenant": "acme"}, {"tenant": "globex"}, {"tenant": "acme", "agent": "agent-2"},
        {"tenant": "acme", "since": T0 + timedelta(hours=1)}, {"tenant": "acme", "until": T0 + timedelta(hours=14)},
        {"tenant": "acme", "since": day + timedelta(days=1), "until": day + timedelta(days=2)},
        {"tenant": "acme", "since": T0.replace(hour=23, minute=59)},  # started before: not selected
        {"tenant": "acme", "session_ids": ["s1", "late", "nope"]}, {"session_ids": ["s1"]}, {"agent": "agent-1"},
        {"tenant": "acme", "since": day + timedelta(days=1)},  # sesn_night started the day before: not selected
        {"tenant": "acme", "session_ids": []}, {"tenant": "nobody"},
    ]
    with Lake(lake) as lk:
        for f in cases:
            assert lk.sessions(**f) == query_sessions(lk.con, **f), f
        # the session across midnight is one session of two files; the re-exported s1 counts once
        by_id = {s["session_id"]: s for s in lk.sessions(tenant="acme")}
        assert by_id["sesn_night"]["events"] == 4 and by_id["s1"]["events"] == 6 and by_id["s1"]["errors"] == 1
        assert by_id["twice"]["events"] == 2


def test_single_file_sessions_are_answered_from_the_index_without_opening_a_file(lake):
    """A session that one file holds, without repeated event ids, is its index row: `dreams sessions`
    opens no Parquet file for it (the file can even be unreadable); sessions held by several files, or by
    a file that repeats ids, are still computed from their files."""
    _mixed_lake(lake)
    day_file = next(r["path"] for r in _index(lake) if r["session_id"] == "s2")
    with Lake(lake) as lk:
        want = lk.sessions(tenant="acme", session_ids=["s2", "late"])
        assert want == query_sessions(lk.con, tenant="acme", session_ids=["s2", "late"])
        everything = lk.sessions(tenant="acme")
    (lake.home / day_file).write_bytes(b"not parquet at all")  # it also holds s1, which another file holds too
    with Lake(lake) as lk:
        assert lk.sessions(tenant="acme", session_ids=["s2", "late"]) == want
        assert [r["session_id"] for r in lk.sessions(tenant="acme", agent="agent-2")] == ["s2"]
        with pytest.raises(Exception, match="(?i)parquet"):
            lk.sessions(tenant="acme", session_ids=["s1"])  # s1 is in two files: computed from them
    assert {r["session_id"] for r in everything} >= {"s1", "s2", "late", "twice", "sesn_night"}
    (lake.home / day_file).unlink()  # a registered file gone from disk: left out, as the whole lake leaves it out
    with Lake(lake) as lk:
        assert lk.sessions(tenant="acme", session_ids=["s2", "late", "s3"]) == query_sessions(
            lk.con, tenant="acme", session_ids=["s2", "late", "s3"])
        assert [r["session_id"] for r in lk.sessions(tenant="acme", session_ids=["s2", "late", "s3"])] == ["s3"]


def test_index_rows_without_a_summary_are_computed_from_their_files(lake):
    """Rows indexed before revision 0002 carry no summary: those sessions are read from their files, and
    every selection still answers what the whole lake answers."""
    _mixed_lake(lake)
    cat = Catalog(lake)
    with cat.tx() as conn:
        conn.execute(session_index.update().values(tool_calls=None, errors=None, outcome=None, outcome_seq=None,
                                                   source_format=None))
    cat.engine.dispose()
    with Lake(lake) as lk:
        for f in [{"tenant": "acme"}, {"tenant": "globex", "since": T0}, {"tenant": "acme", "session_ids": ["s2"]}]:
            assert lk.sessions(**f) == query_sessions(lk.con, **f), f


def test_a_scoped_read_gives_the_same_events_and_signals_as_the_whole_lake(lake):
    _mixed_lake(lake)
    ids = ["s1", "late", "s3", "sesn_night", "twice"]
    q = "SELECT * FROM events WHERE tenant = 'acme' AND list_contains(?, session_id) ORDER BY session_id, seq"
    with Lake(lake) as lk:
        whole = lk.con.execute(q, [ids]).fetchall()
        whole_signals = extract_signals(lk.con, ids, Policy(), tenant="acme")
    with Lake(lake) as lk, lk.scoped(ids, tenant="acme") as sc:
        assert sc.con.execute(q, [ids]).fetchall() == whole
        assert sc.con.execute("SELECT count(*) FROM events").fetchall() == [(len(whole),)]  # nothing else
        assert all("tenant=acme" in f for f in sc.files) and len(sc.files) < len(lk.files)
        assert extract_signals(sc, ids, Policy(), tenant="acme") == whole_signals
    assert whole_signals.errors and whole_signals.preferences  # the comparison compared something
    # sessions held by one file each, whose ids do not repeat: read without the dedupe window, same rows
    single = ["late", "s2"]
    with Lake(lake) as lk, lk.scoped(single, tenant="acme") as sc:
        view = sc.con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'events'").fetchone()[0]
        assert "QUALIFY" not in view
        assert sc.con.execute(q, [single]).fetchall() == lk.con.execute(q, [single]).fetchall()
        assert len(sc.con.execute(q, [single]).fetchall()) == 9


def test_another_tenants_files_are_not_opened(lake):
    from dreaming.dreams import DreamService, Selection

    _mixed_lake(lake)
    svc = DreamService(Catalog(lake))
    store = svc.stores.create("acme-notes", scope="acme")
    for p in (lake.transcripts_dir / "tenant=globex").rglob("*.parquet"):
        p.write_bytes(b"not parquet at all")  # any read of globex's files would fail
    with Lake(lake) as lk:
        try:
            lk.con.execute("SELECT count(*) FROM events").fetchall()
            raise AssertionError("the whole-lake view should read globex's broken files")
        except Exception as e:  # noqa: BLE001 - duckdb's IO/invalid input error
            assert "parquet" in str(e).lower()
        assert [s["session_id"] for s in lk.sessions(tenant="acme", session_ids=["s1"])] == ["s1"]
    d = svc.create(store["id"], Selection(session_ids=["s1", "s2", "late"]))
    inputs = svc.read(d.id)
    assert sorted(s["session_id"] for s in inputs.sessions) == ["late", "s1", "s2"]
    assert {s["tenant"] for s in inputs.signals.sessions} == {"acme"} and inputs.signals.errors


def test_a_catalog_without_index_rows_gets_them_built_once(lake, caplog):
    _mixed_lake(lake)
    want = _index(lake)
    cat = Catalog(lake)
    with cat.tx() as conn:  # a lake from before the index: snapshots registered, no index rows
        conn.execute(session_index.delete())
        conn.execute(lake_files.delete())
    cat.engine.dispose()
    assert _index(lake) == []
    caplog.set_level(logging.INFO, logger="dreaming.lake_index")
    with Lake(lake) as lk:
        assert [s["session_id"] for s in lk.sessions(tenant="acme", session_ids=["s1", "s3"])] == ["s1", "s3"]
    assert any("session index" in r.getMessage() and "registered without" in r.getMessage() for r in caplog.records)
    assert _index(lake) == want
    caplog.clear()
    with Lake(lake) as lk:
        lk.sessions(tenant="acme")
    assert not any("registered without" in r.getMessage() for r in caplog.records)  # once


def test_a_missing_registered_file_is_left_out_of_a_scoped_read(lake):
    _mixed_lake(lake)
    gone = next((lake.transcripts_dir / "tenant=acme" / "day=2026-11-03").glob("snap*.parquet"))
    held = [r["session_id"] for r in _index(lake) if r["path"].endswith(f"day=2026-11-03/{gone.name}")]
    assert held == ["sesn_night"]
    gone.unlink()  # the second half of the session across midnight
    with Lake(lake) as lk:
        assert lk.missing == [str(gone)]
        with lk.scoped(["sesn_night", "s1"], tenant="acme") as sc:
            assert sc.missing == [str(gone)]
            rows = sc.sessions()
        assert rows == query_sessions(lk.con, tenant="acme", session_ids=["sesn_night", "s1"])
        assert {r["session_id"]: r["events"] for r in rows}["sesn_night"] == 2  # 23:58 and 23:59 only


def test_an_event_copied_into_a_resumed_session_stays_in_both_and_every_read_agrees(tmp_path, lake, catalog):
    """A resumed conversation that copies the original's event ids: each session keeps its events, so a
    scoped read of the resumed session alone and the whole-lake view give the same rows."""
    original = _events("orig", 4)
    resumed = [{**e, "session_id": "resumed"} for e in original] + _events("resumed", 2, start=4, hour=11)
    _jsonl(tmp_path / "a.jsonl", original)
    _jsonl(tmp_path / "b.jsonl", resumed)
    assert ingest_files([tmp_path / "a.jsonl"], catalog, tenant="acme").ok
    assert ingest_files([tmp_path / "b.jsonl"], catalog, tenant="acme").ok  # a later snapshot
    q = "SELECT session_id, event_id FROM events WHERE list_contains(?, session_id) ORDER BY session_id, seq"
    with Lake(lake) as lk:
        whole = lk.con.execute(q, [["resumed"]]).fetchall()
        counts = dict(lk.con.execute("SELECT session_id, events FROM sessions").fetchall())
    assert len(whole) == 6 and counts == {"orig": 4, "resumed": 6}
    with Lake(lake) as lk, lk.scoped(["resumed"], tenant="acme") as sc:
        assert sc.con.execute(q, [["resumed"]]).fetchall() == whole
