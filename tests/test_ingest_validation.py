"""What ingest refuses (exit 2, naming file, line and field), repairs or skips (always reported)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from dreaming.cli import app
from dreaming.ingest import ingest_files
from dreaming.lake import Lake

runner = CliRunner()


def ev(i: int, **kw) -> dict:
    return {"id": f"sevt_{i}", "type": "user.message", "session_id": "sesn_A",
            "processed_at": f"2026-11-02T10:{i:02d}:00Z", "content": [{"type": "text", "text": f"m{i}"}], **kw}


def jsonl(path, recs) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs), encoding="utf-8")


def cc(i: int, **kw) -> dict:
    return {"type": "user", "uuid": f"u{i}", "sessionId": "s1", "timestamp": f"2026-11-02T10:{i:02d}:00Z",
            "message": {"role": "user", "content": f"hello {i}"}, **kw}


def one(tmp_path, catalog, name, recs, **kw):
    f = tmp_path / name
    jsonl(f, recs)
    [res] = ingest_files([f], catalog, **kw).files
    return f, res


# --- implausible timestamps: refused ------------------------------------------------------------

FUTURE = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("value", [-1, 0, 1.5, "0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
                                   "1999-12-31T23:59:59Z", FUTURE, "2126-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_implausible_anthropic_times_are_refused_naming_line_and_field(tmp_path, lake, catalog, value):
    f, res = one(tmp_path, catalog, "t.jsonl", [ev(0), ev(1, processed_at=value)])
    assert res.status == "failed"
    assert res.error.startswith(f"{f}:2: implausible timestamp"), res.error
    assert "(field 'processed_at')" in res.error
    assert catalog.list_snapshots() == []


@pytest.mark.parametrize("fmt,doc,field", [
    ("claude-code", [cc(0), cc(1, timestamp="1900-01-01T00:00:00Z")], "timestamp"),
    ("openai", {"messages": [{"role": "user", "content": "x", "timestamp": "2199-01-01T00:00:00Z"}]},
     "messages[0].timestamp"),
    ("mini-swe-agent", {"instance_id": "i", "trajectory_format": "mini-swe-agent-1", "info": {}, "messages": [
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "x", "extra": {"response": {"created": 1.5}}}]},
     "messages[1].extra.response.created"),
    ("mini-swe-agent", {"instance_id": "i", "trajectory_format": "mini-swe-agent-1", "info": {}, "messages": [
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "x", "extra": {"response": {"created": "yesterday"}}}]},
     "messages[1].extra.response.created"),
])
def test_bad_times_in_every_format_are_refused(tmp_path, lake, catalog, fmt, doc, field):
    f = tmp_path / "t.json"
    f.write_text(json.dumps(doc) if isinstance(doc, dict) else "".join(json.dumps(r) + "\n" for r in doc))
    [res] = ingest_files([f], catalog, fmt=fmt).files
    assert res.status == "failed", res
    assert res.error.startswith(f"{f}:") and f"(field '{field}')" in res.error, res.error


def test_the_bounds_come_from_settings(tmp_path, lake, catalog, monkeypatch):
    monkeypatch.setenv("DREAMS_MIN_EVENT_TIME", "1960-01-01T00:00:00Z")
    from dreaming.catalog import Catalog
    from dreaming.settings import get_settings

    f, res = one(tmp_path, Catalog(get_settings()), "t.jsonl", [ev(0, processed_at=0)])
    assert res.status == "ingested"  # 1970 is plausible now


def test_tau_bench_synthetic_times_still_work(tmp_path, lake, catalog):
    f = tmp_path / "tau.json"
    f.write_text(json.dumps([{"task_id": 1, "trial": 0, "reward": 1.0, "traj": [
        {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}]))
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested" and res.days == ["2024-01-01"]


# --- Claude Code lines without a known type: skipped and reported ---------------------------------


def test_claude_code_unknown_and_missing_types_are_skipped_and_reported(tmp_path, lake, catalog):
    no_type = {k: v for k, v in cc(2).items() if k != "type"}
    recs = [{"type": "summary", "summary": "s", "leafUuid": "u0"}, cc(1), no_type, cc(3, type="user-v2"), cc(4)]
    f, res = one(tmp_path, catalog, "c.jsonl", recs)
    assert res.status == "ingested" and res.events == 2
    assert [(i["line"], i["field"], i["action"]) for i in res.issues] == [(3, "type", "skipped"), (4, "type", "skipped")]
    assert "unknown line type 'user-v2'" in res.issues[1]["reason"]
    assert res.ignored == {"summary line": 1}
    r = runner.invoke(app, ["ingest", str(f), "--json"])  # already ingested: a no-op
    out = json.loads(runner.invoke(app, ["ingest", str(f), "--tenant", "t2", "--json"]).stdout)
    assert r.exit_code == 0
    assert out["totals"]["skipped_lines"] == 2 and out["totals"]["ignored_records"] == 1
    assert out["files"][0]["issues"][0]["line"] == 3


def test_plain_summary_lists_skipped_lines(tmp_path, lake):
    f = tmp_path / "c.jsonl"
    jsonl(f, [cc(1), cc(2, type="mystery")])
    r = runner.invoke(app, ["ingest", str(f)])
    assert r.exit_code == 0
    assert f"skipped: {f}:2: unknown line type 'mystery'" in " ".join(r.output.split())


# --- Anthropic session ids ------------------------------------------------------------------------


def test_anthropic_file_name_session_is_reported_as_repaired(tmp_path, lake, catalog):
    recs = [{k: v for k, v in ev(i).items() if k != "session_id"} for i in range(3)]
    f, res = one(tmp_path, catalog, "sesn_from_name.jsonl", recs)
    assert res.status == "ingested"
    [issue] = res.issues
    assert (issue["line"], issue["field"], issue["action"], issue["count"]) == (1, "session_id", "repaired", 3)
    assert "'sesn_from_name'" in issue["reason"]
    with Lake(lake) as lk:
        assert [s["session_id"] for s in lk.sessions()] == ["sesn_from_name"]


@pytest.mark.parametrize("recs,line", [
    ([ev(0), {k: v for k, v in ev(1).items() if k != "session_id"}], 2),  # later event without one
    ([{k: v for k, v in ev(0).items() if k != "session_id"}, ev(1)], 1),  # earlier event without one
    ([ev(0), ev(1, session_id="")], 2),
    ([ev(0, session_id=["sesn_A"])], 1),
    ([ev(0, session_id=7)], 1),
])
def test_unusable_or_mixed_session_ids_are_refused(tmp_path, lake, catalog, recs, line):
    f, res = one(tmp_path, catalog, "s.jsonl", recs)
    assert res.status == "failed"
    assert res.error.startswith(f"{f}:{line}: ") and "(field 'session_id')" in res.error, res.error


# --- values that cannot be stored as they are ---------------------------------------------------


def test_lone_surrogates_are_repaired_and_reported(tmp_path, lake, catalog):
    line = json.dumps(ev(1)).replace('"m1"', '"cut \\ud83d here"')
    f, res = one(tmp_path, catalog, "s.jsonl", [ev(0), line])
    assert res.status == "ingested"
    [issue] = res.issues
    assert (issue["line"], issue["field"], issue["action"]) == (2, "content[0].text", "repaired")
    with Lake(lake) as lk:
        texts = [r[0] for r in lk.con.execute("select text from events order by seq").fetchall()]
    assert texts == ["m0", "cut \ufffd here"]


def test_a_valid_surrogate_pair_is_not_a_repair(tmp_path, lake, catalog):
    line = json.dumps(ev(0)).replace('"m0"', '"smile \\ud83d\\ude00"')
    f, res = one(tmp_path, catalog, "s.jsonl", [line])
    assert res.status == "ingested" and res.issues == []


@pytest.mark.parametrize("fmt,make", [
    ("anthropic", lambda deep: json.dumps(ev(0)).replace('[{"type": "text", "text": "m0"}]', deep)),
    ("openai", lambda deep: json.dumps({"messages": [{"role": "user", "content": "PLACE"}]}).replace('"PLACE"', deep)),
])
def test_deep_nesting_is_refused_naming_the_line(tmp_path, lake, catalog, fmt, make):
    deep = "[" * 1500 + '"x"' + "]" * 1500
    f = tmp_path / "deep.jsonl"
    f.write_text(json.dumps(ev(5)) + "\n" + make(deep) + "\n" if fmt == "anthropic" else make(deep))
    [res] = ingest_files([f], catalog, fmt=fmt).files
    assert res.status == "failed"
    assert "nested deeper than 1024 levels" in res.error
    assert res.error.startswith(f"{f}:{2 if fmt == 'anthropic' else 1}: "), res.error


@pytest.mark.parametrize("extra,field", [
    ({"type": "agent.tool_use", "name": ["bash"], "input": {}}, "name"),
    ({"type": "agent.tool_result", "tool_use_id": {"id": 1}}, "id / tool_use_id"),
    ({"type": "span.outcome_evaluation_end", "result": "ok", "explanation": ["a", "b"]}, "content / explanation"),
])
def test_a_list_where_text_belongs_names_line_and_field(tmp_path, lake, catalog, extra, field):
    f, res = one(tmp_path, catalog, "w.jsonl", [ev(0), ev(1, **extra)])
    assert res.status == "failed"
    assert res.error.startswith(f"{f}:2: value must be text"), res.error
    assert f"(field '{field}" in res.error and "Arrow" not in res.error


def test_repeated_events_are_reported(tmp_path, lake, catalog):
    f, res = one(tmp_path, catalog, "d.jsonl", [ev(0), ev(1), ev(0)])
    assert res.events == 2
    assert [(i["line"], i["field"], i["action"]) for i in res.issues] == [(3, "id", "skipped")]


def test_cli_exit_2_names_file_line_and_field(tmp_path, lake):
    f = tmp_path / "t.jsonl"
    jsonl(f, [ev(0, processed_at="9999-12-31T23:59:59Z")])
    r = runner.invoke(app, ["ingest", str(f)])
    assert r.exit_code == 2
    assert f"{f}:1: implausible timestamp" in " ".join(r.output.split())
