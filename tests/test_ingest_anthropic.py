"""Anthropic Managed Agents session events → the event schema."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from dreaming.ingest import ingest_files
from dreaming.lake import Lake
from dreaming.schema import EVENT_SCHEMA

T = "2026-11-02T09:00:{:02d}Z"


def ev(i: int, type_: str, **fields) -> dict:
    return {"id": f"sevt_{i:03d}", "type": type_, "processed_at": T.format(i), **fields}


# One event of every type in notes/dreams-api.md §3.3, plus an unknown one and a stream-only delta.
ALL_EVENTS = [
    ev(0, "user.message", content=[{"type": "text", "text": "Always use uv, never pip."}]),
    ev(1, "user.define_outcome", description="tests pass", rubric={"type": "text", "content": "all green"},
       max_iterations=3, outcome_id="outc_1"),
    ev(2, "session.status_running"),
    ev(3, "span.model_request_start"),
    ev(4, "agent.thinking"),
    ev(5, "span.model_request_end", model_request_start_id="sevt_003", is_error=False,
       model_usage={"input_tokens": 10, "output_tokens": 5}),
    ev(6, "agent.message", content=[{"type": "text", "text": "Running the tests."}]),
    ev(7, "agent.tool_use", name="bash", input={"command": "pip install x"}, evaluated_permission="allow"),
    ev(8, "agent.tool_result", tool_use_id="sevt_007",
       content=[{"type": "text", "text": "error: externally-managed-environment"}], is_error=True),
    ev(9, "agent.mcp_tool_use", name="search", mcp_server_name="docs", input={"q": "uv"}),
    ev(10, "agent.mcp_tool_result", mcp_tool_use_id="sevt_009", content=[{"type": "text", "text": "uv add x"}]),
    ev(11, "agent.custom_tool_use", name="deploy", input={"env": "prod"}),
    ev(12, "user.custom_tool_result", custom_tool_use_id="sevt_011", content=[{"type": "text", "text": "ok"}]),
    ev(13, "user.tool_confirmation", tool_use_id="sevt_007", result="deny", deny_message="use uv"),
    ev(14, "user.tool_result", tool_use_id="sevt_007", content=[{"type": "text", "text": "done"}], is_error=False),
    ev(15, "user.interrupt"),
    ev(16, "system.message", content=[{"type": "text", "text": "be brief"}]),
    ev(17, "agent.thread_context_compacted"),
    ev(18, "agent.thread_message_sent", content=[{"type": "text", "text": "hi sub"}], to_session_thread_id="sthr_1"),
    ev(19, "agent.thread_message_received", content=[{"type": "text", "text": "hi lead"}],
       from_session_thread_id="sthr_1"),
    ev(20, "session.error", error={"type": "model_overloaded_error", "message": "overloaded",
                                   "retry_status": {"type": "retrying"}}),
    ev(21, "session.status_rescheduled"),
    ev(22, "session.updated", title="new title"),
    ev(23, "session.usage", usage={"input_tokens": 1}),
    ev(24, "session.thread_created", agent_name="sub", session_thread_id="sthr_1"),
    ev(25, "session.thread_status_running", agent_name="sub", session_thread_id="sthr_1"),
    ev(26, "session.thread_status_idle", agent_name="sub", session_thread_id="sthr_1",
       stop_reason={"type": "end_turn"}),
    ev(27, "session.thread_status_terminated", agent_name="sub", session_thread_id="sthr_1"),
    ev(28, "span.outcome_evaluation_start", outcome_id="outc_1", iteration=0),
    ev(29, "span.outcome_evaluation_ongoing", outcome_id="outc_1", iteration=0),
    ev(30, "span.outcome_evaluation_end", outcome_evaluation_start_id="sevt_028", outcome_id="outc_1", iteration=0,
       result="satisfied", explanation="all criteria met", usage={}),
    ev(31, "session.status_idle", stop_reason={"type": "end_turn"}),
    ev(32, "session.status_terminated"),
    ev(33, "agent.brand_new_thing", content=[{"type": "text", "text": "future event"}], extra={"x": 1}),
    {"type": "event_delta", "event_id": "sevt_006", "delta": {"type": "content_delta"}},
    ev(34, "session.deleted"),
]


def rows_of(lake_settings) -> list[dict]:
    files = sorted(lake_settings.transcripts_dir.rglob("*.parquet"))
    out = []
    for f in files:
        t = pq.read_table(f)
        assert t.schema.equals(EVENT_SCHEMA), f"{f} does not have EVENT_SCHEMA"
        out += t.to_pylist()
    return sorted(out, key=lambda r: (r["session_id"], r["seq"]))


def test_every_event_type_maps(tmp_path, lake, catalog):
    f = tmp_path / "sesn_ABC.json"
    f.write_text(json.dumps(ALL_EVENTS))
    report = ingest_files([f], catalog, tenant="acme", agent="coder")
    [res] = report.files
    assert res.status == "ingested", res.error
    assert res.format == "anthropic"
    rows = rows_of(lake)
    assert [r["seq"] for r in rows] == list(range(35))  # the stream-only delta is skipped
    by_type = {r["type"]: r for r in rows}
    assert {e["type"] for e in ALL_EVENTS if e["type"] != "event_delta"} == set(by_type)
    assert all(r["session_id"] == "sesn_ABC" for r in rows)  # from the file stem
    assert all(r["tenant"] == "acme" and r["agent_id"] == "coder" for r in rows)
    assert all(r["event_id"] == json.loads(r["raw"])["id"] for r in rows)
    assert by_type["user.message"]["text"] == "Always use uv, never pip."
    assert by_type["user.message"]["role"] == "user"
    assert str(by_type["user.message"]["ts"]) == "2026-11-02 09:00:00+00:00"
    tu = by_type["agent.tool_use"]
    assert (tu["role"], tu["tool_name"], tu["tool_use_id"]) == ("assistant", "bash", "sevt_007")
    assert json.loads(tu["tool_input"]) == {"command": "pip install x"}
    tr = by_type["agent.tool_result"]
    assert (tr["role"], tr["is_error"], tr["tool_use_id"]) == ("tool", True, "sevt_007")
    assert tr["text"] == "error: externally-managed-environment"
    assert by_type["agent.mcp_tool_result"]["tool_use_id"] == "sevt_009"
    assert by_type["user.custom_tool_result"]["tool_use_id"] == "sevt_011"
    assert by_type["user.custom_tool_result"]["role"] == "tool"
    assert by_type["user.tool_confirmation"]["text"] == "deny use uv"
    err = by_type["session.error"]
    assert err["is_error"] is True and err["role"] == "system"
    assert err["text"] == "model_overloaded_error: overloaded"
    assert by_type["session.status_idle"]["text"] == "end_turn"
    end = by_type["span.outcome_evaluation_end"]
    assert (end["outcome"], end["text"]) == ("satisfied", "all criteria met")
    unknown = by_type["agent.brand_new_thing"]
    assert unknown["text"] == "future event" and unknown["role"] == "assistant"
    assert json.loads(unknown["raw"])["extra"] == {"x": 1}
    assert res.tool_calls == 3 and res.errors == 2 and res.events == 35

    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert (s["session_id"], s["events"], s["tool_calls"], s["errors"], s["outcome"]) == (
        "sesn_ABC", 35, 3, 2, "satisfied")


def test_page_and_jsonl_shapes(tmp_path, lake, catalog):
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"data": ALL_EVENTS[:5], "next_page": None, "session_id": "sesn_PAGE"}))
    jl = tmp_path / "events.jsonl"
    jl.write_text("\n".join(json.dumps({**e, "session_id": "sesn_JL"}) for e in ALL_EVENTS[5:12]) + "\n")
    report = ingest_files([page, jl], catalog, tenant="acme")
    assert [f.status for f in report.files] == ["ingested", "ingested"], [f.error for f in report.files]
    assert [f.format for f in report.files] == ["anthropic", "anthropic"]
    with Lake(lake) as lk:
        got = {s["session_id"]: s["events"] for s in lk.sessions()}
    assert got == {"sesn_PAGE": 5, "sesn_JL": 7}
    rows = rows_of(lake)
    jl_rows = [r for r in rows if r["session_id"] == "sesn_JL"]
    # JSONL keeps each line verbatim in raw
    assert jl_rows[0]["raw"] == jl.read_text().splitlines()[0]


@pytest.mark.parametrize(
    "event,field",
    [
        ({"type": "user.message", "processed_at": T.format(1), "content": []}, "id"),
        ({"id": "sevt_1", "type": "user.message", "processed_at": None, "content": []}, "processed_at"),
        ({"id": "sevt_1", "type": "user.message", "processed_at": "yesterday", "content": []}, "processed_at"),
        ({"id": "sevt_1", "processed_at": T.format(1)}, "type"),
    ],
)
def test_event_without_id_or_timestamp_fails_naming_line(tmp_path, lake, catalog, event, field):
    f = tmp_path / "bad.jsonl"
    good = ev(0, "user.message", content=[{"type": "text", "text": "hi"}])
    f.write_text(json.dumps(good) + "\n" + json.dumps(event) + "\n")
    [res] = ingest_files([f], catalog, fmt="anthropic").files
    assert res.status == "failed"
    assert f"{f}:2:" in res.error and field in res.error
    assert not list(lake.transcripts_dir.rglob("*.parquet"))
    assert catalog.list_snapshots() == []


def test_bad_element_of_array_names_its_line(tmp_path, lake, catalog):
    events = [ev(0, "user.message", content=[]), {"type": "agent.message", "processed_at": T.format(1)}]
    f = tmp_path / "arr.json"
    f.write_text(json.dumps(events, indent=2))
    [res] = ingest_files([f], catalog).files
    assert res.status == "failed"
    starts = [n for n, text in enumerate(f.read_text().splitlines(), start=1) if text == "  {"]
    line = starts[1]  # the second element's opening brace
    assert f"{f}:{line}:" in res.error and "no id" in res.error
