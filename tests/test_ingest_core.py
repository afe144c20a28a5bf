"""Ingest as a whole: bad input, all-or-nothing files, re-ingest, overlapping exports, detection."""

from __future__ import annotations

import json

import pytest

from dreaming.errors import BadInput
from dreaming.ingest import ingest_files
from dreaming.ingest.common import read_source
from dreaming.ingest.detect import detect_format
from dreaming.lake import Lake


def events(session: str, n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"sevt_{session}_{i}", "type": "agent.message" if i % 2 else "user.message",
         "processed_at": f"2026-11-02T10:{i:02d}:00Z", "session_id": session,
         "content": [{"type": "text", "text": f"message {i}"}]}
        for i in range(start, start + n)
    ]


def jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def lake_files(settings) -> list:
    return sorted(settings.transcripts_dir.rglob("*.parquet")) if settings.transcripts_dir.exists() else []


# --- bad input ----------------------------------------------------------------------------------

BAD_INPUTS = {
    # name: (bytes, expected line, words that must appear in the message)
    "malformed.json": (b'[{"id": "sevt_1", "type": "user.message",,}]', 1, "malformed JSON"),
    "malformed-pretty.json": (b'{\n  "data": [\n    {"id": 1}\n    {"id": 2}\n  ]\n}\n', 4, "malformed JSON"),
    "malformed-line.jsonl": (
        b'{"id": "sevt_1", "type": "user.message", "processed_at": "2026-11-02T10:00:00Z"}\n{oops}\n'
        b'{"id": "sevt_3", "type": "user.message", "processed_at": "2026-11-02T10:00:00Z"}\n', 2, "malformed JSON"),
    "truncated.jsonl": (
        b'{"id": "sevt_1", "type": "user.message", "processed_at": "2026-11-02T10:00:00Z"}\n{"id": "sevt_2", "ty',
        2, "truncated"),
    "truncated.json": (b'[{"id": "sevt_1", "type": "user.message"},\n {"id": "sevt_2"', 2, "truncated"),
    "latin1.jsonl": ('{"id": "sevt_1", "type": "user.message", "processed_at": "2026-11-02T10:00:00Z"}\n'
                     '{"id": "sevt_2", "type": "user.message", "text": "café"}\n'.encode("latin-1"), 2, "not UTF-8"),
    "empty.jsonl": (b"", 1, "empty"),
    "blank.json": (b"  \n\n ", 1, "empty"),
    "unknown.json": (b'{"hello": "world", "rows": [1, 2, 3]}', 1, "unknown transcript format"),
    "unknown-lines.jsonl": (b'{"a": 1}\n{"a": 2}\n', 1, "unknown transcript format"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_fails_naming_file_and_line_and_writes_nothing(tmp_path, lake, catalog, name):
    content, line, words = BAD_INPUTS[name]
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.jsonl"
    jsonl(good, events("sesn_GOOD", 3))
    report = ingest_files([bad, good], catalog)
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in report.files}
    res = by_name[name]
    assert res.status == "failed"
    assert res.error.startswith(f"{bad}:{line}: "), res.error
    assert words in res.error
    # the other file of the batch still ingested; the bad one left nothing behind
    assert by_name["good.jsonl"].status == "ingested"
    assert [s["source_path"].rsplit("/", 1)[-1] for s in catalog.list_snapshots()] == ["good.jsonl"]
    assert len(lake_files(lake)) == 1
    assert not any(lake.staging_dir.glob("*")) if lake.staging_dir.exists() else True


def test_read_source_raises_bad_input_with_location(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": \n')
    with pytest.raises(BadInput) as e:
        read_source(f)
    assert (e.value.file, e.value.line) == (str(f), 2)


def test_missing_file_and_bad_tenant(tmp_path, lake, catalog):
    [res] = ingest_files([tmp_path / "nope.json"], catalog).files
    assert res.status == "failed" and "no such file" in res.error
    with pytest.raises(BadInput, match="tenant"):
        ingest_files([tmp_path], catalog, tenant="../etc")
    with pytest.raises(BadInput, match="format"):
        ingest_files([tmp_path], catalog, fmt="csv")


# --- all or nothing -----------------------------------------------------------------------------


def test_catalog_failure_removes_placed_files(tmp_path, lake, catalog, monkeypatch):
    f = tmp_path / "two-days.jsonl"
    recs = events("sesn_A", 2) + [{**e, "processed_at": "2026-11-03T08:00:00Z"} for e in events("sesn_A", 2, 5)]
    jsonl(f, recs)

    def boom(conn, row):
        assert len(lake_files(lake)) == 2  # both day files were in place when the catalog was written
        raise RuntimeError("disk full")

    monkeypatch.setattr(catalog, "insert_snapshot", boom)
    [res] = ingest_files([f], catalog).files
    assert res.status == "failed" and "disk full" in res.error
    assert lake_files(lake) == []
    assert catalog.list_snapshots() == []
    monkeypatch.undo()
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested" and res.days == ["2026-11-02", "2026-11-03"]
    assert len(lake_files(lake)) == 2


def test_snapshot_layout_and_catalog_row(tmp_path, lake, catalog):
    f = tmp_path / "s.jsonl"
    jsonl(f, events("sesn_A", 4) + events("sesn_B", 2))
    [res] = ingest_files([f], catalog, tenant="acme", agent="bot").files
    [path] = lake_files(lake)
    assert path.relative_to(lake.home).as_posix() == f"transcripts/tenant=acme/day=2026-11-02/{res.snapshot_id}.parquet"
    [snap] = catalog.list_snapshots()
    assert snap["id"] == res.snapshot_id and snap["rows"] == 6 and snap["sessions"] == 2
    assert (snap["tenant"], snap["agent_id"], snap["source_format"]) == ("acme", "bot", "anthropic")
    assert snap["files"] == res.files and snap["days"] == ["2026-11-02"]


# --- re-ingest and overlap ----------------------------------------------------------------------


def test_reingest_is_a_no_op(tmp_path, lake, catalog):
    f = tmp_path / "s.jsonl"
    jsonl(f, events("sesn_A", 5))
    first = ingest_files([f], catalog).files[0]
    assert first.status == "ingested"
    files_before = lake_files(lake)
    again = ingest_files([f, tmp_path], catalog)  # the folder holds the same file: once
    assert [r.status for r in again.files] == ["skipped"]
    assert again.files[0].snapshot_id == first.snapshot_id
    assert lake_files(lake) == files_before and len(catalog.list_snapshots()) == 1
    # another tenant is another snapshot
    assert ingest_files([f], catalog, tenant="other").files[0].status == "ingested"
    assert len(catalog.list_snapshots()) == 2


def test_overlapping_exports_count_each_event_once(tmp_path, lake, catalog):
    a = tmp_path / "export-monday.jsonl"
    b = tmp_path / "export-tuesday.jsonl"
    jsonl(a, events("sesn_A", 6))  # events 0-5
    jsonl(b, events("sesn_A", 6, start=3) + events("sesn_B", 2))  # events 3-8 overlap on 3-5
    report = ingest_files([a, b], catalog)
    assert [r.status for r in report.files] == ["ingested", "ingested"]
    assert report.events == 14
    with Lake(lake) as lk:
        got = {s["session_id"]: s["events"] for s in lk.sessions()}
        total = lk.con.execute("select count(*), count(distinct event_id) from events").fetchall()[0]
    assert got == {"sesn_A": 9, "sesn_B": 2}
    assert total == (11, 11)


def test_the_same_content_twice_in_one_batch_is_ingested_once(tmp_path, lake, catalog):
    a, b = tmp_path / "a.jsonl", tmp_path / "copy-of-a.jsonl"
    jsonl(a, events("sesn_A", 4))
    b.write_bytes(a.read_bytes())
    report = ingest_files([a, b], catalog)
    assert [r.status for r in report.files] == ["ingested", "skipped"]
    assert report.files[1].snapshot_id == report.files[0].snapshot_id
    assert "earlier in this batch" in report.files[1].note
    assert len(lake_files(lake)) == 1 and len(catalog.list_snapshots()) == 1
    assert not list(lake.staging_dir.glob("*")), "the withdrawn copy left a staged file behind"


def test_files_are_registered_in_groups_and_each_stays_all_or_nothing(tmp_path, lake, catalog, monkeypatch):
    import gc

    import dreaming.ingest as ingest

    monkeypatch.setattr(ingest, "COMMIT_GROUP", 2)
    commits = []
    real_insert = catalog.insert_snapshot
    monkeypatch.setattr(catalog, "insert_snapshot", lambda conn, row: (commits.append(row["id"]),
                                                                         real_insert(conn, row)))
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"s{i}.jsonl")
        jsonl(paths[-1], events(f"sesn_{i}", 3))
    (tmp_path / "s2.jsonl").write_text("{oops}\n")  # the middle file is bad
    report = ingest_files(paths, catalog)
    assert [r.status for r in report.files] == ["ingested", "ingested", "failed", "ingested", "ingested"]
    assert "s2.jsonl" in report.files[2].error
    assert sorted(commits) == sorted(r.snapshot_id for r in report.ingested)
    assert {s["id"] for s in catalog.list_snapshots()} == set(commits)
    assert len(lake_files(lake)) == 4 and not list(lake.staging_dir.glob("*"))
    assert gc.isenabled()  # paused during the batch only


def test_duplicate_events_inside_one_file_count_once(tmp_path, lake, catalog):
    f = tmp_path / "dup.jsonl"
    jsonl(f, events("sesn_A", 3) + events("sesn_A", 3))
    [res] = ingest_files([f], catalog).files
    assert res.events == 3


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,fmt",
    [
        (json.dumps(events("s", 2)), "anthropic"),
        (json.dumps({"data": events("s", 2), "next_page": None}), "anthropic"),
        (json.dumps({"type": "summary", "summary": "x", "leafUuid": "u"}) + "\n"
         + json.dumps({"type": "user", "uuid": "u", "sessionId": "s", "timestamp": "2026-01-01T00:00:00Z",
                       "message": {"role": "user", "content": "hi"}}) + "\n", "claude-code"),
        (json.dumps([{"task_id": 1, "trial": 0, "reward": 1.0, "traj": [{"role": "user", "content": "x"}]}]),
         "openai"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), "openai"),
        (json.dumps({"role": "user", "content": "x"}) + "\n" + json.dumps({"role": "assistant", "content": "y"}),
         "openai"),
        (json.dumps({"instance_id": "i", "info": {}, "messages": [], "trajectory_format": "mini-swe-agent-1"}),
         "mini-swe-agent"),
    ],
)
def test_detect(tmp_path, content, fmt):
    f = tmp_path / "x.json"
    f.write_text(content)
    assert detect_format(read_source(f)) == fmt


def test_folder_expands_to_transcript_files(tmp_path, lake, catalog):
    d = tmp_path / "exports"
    (d / "sub").mkdir(parents=True)
    jsonl(d / "a.jsonl", events("sesn_A", 2))
    jsonl(d / "sub" / "b.jsonl", events("sesn_B", 2))
    (d / "README.md").write_text("# not a transcript")
    (d / ".hidden.jsonl").write_text("garbage")
    calls = []
    report = ingest_files([d], catalog, progress=lambda done, total: calls.append((done, total)))
    assert [r.path.rsplit("/", 1)[-1] for r in report.files] == ["a.jsonl", "b.jsonl"]
    assert report.ok and report.sessions == 2
    assert calls == [(0, 2), (1, 2), (2, 2)]
