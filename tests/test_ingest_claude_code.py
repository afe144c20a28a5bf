"""Claude Code session JSONL → the event schema."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from dreaming.ingest import ingest_files
from dreaming.lake import Lake

SID = "0f3c2a9e-5b7d-4c1e-9a8b-1234567890ab"


def line(type_: str, uuid: str, ts: str, content=None, **extra) -> dict:
    d = {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/me/proj",
        "sessionId": SID,
        "version": "1.0.51",
        "gitBranch": "main",
        "type": type_,
        "uuid": uuid,
        "timestamp": ts,
    }
    if content is not None:
        role = "user" if type_ == "user" else "assistant"
        d["message"] = {"role": role, "content": content}
        if role == "assistant":
            d["message"].update({"id": f"msg_{uuid}", "type": "message", "model": "claude-sonnet-4-6",
                                 "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 9}})
            d["requestId"] = f"req_{uuid}"
    d.update(extra)
    return d


SESSION = [
    {"type": "summary", "summary": "Fix the failing build", "leafUuid": "u-9"},
    line("user", "u-1", "2026-11-02T09:00:00.123Z", "please run the tests with uv"),
    line("assistant", "u-2", "2026-11-02T09:00:05.456Z", [
        {"type": "thinking", "thinking": "I should run pytest.", "signature": "sig"},
        {"type": "text", "text": "Running the tests."},
        {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "pip install -e ."}},
    ]),
    line("user", "u-3", "2026-11-02T09:00:09Z", [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "error: externally-managed-environment",
         "is_error": True}], toolUseResult={"stderr": "..."}),
    line("assistant", "u-4", "2026-11-02T09:00:12Z", [
        {"type": "tool_use", "id": "toolu_02", "name": "mcp__github__search", "input": {"q": "uv"}}]),
    line("user", "u-5", "2026-11-02T09:00:13Z", [
        {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "found"}]}]),
    {"type": "file-history-snapshot", "messageId": "u-5", "snapshot": {"trackedFileBackups": {}},
     "isSnapshotUpdate": False},
    line("user", "u-6", "2026-11-02T09:00:20Z", [{"type": "text", "text": "[Request interrupted by user]"}]),
    {**line("system", "u-7", "2026-11-02T09:00:21Z"), "subtype": "informational", "content": "compacting",
     "level": "info"},
    line("assistant", "u-8", "2026-11-02T09:00:22Z", [{"type": "text", "text": "API Error: 529 overloaded"}],
         isApiErrorMessage=True),
    line("user", "u-9", "2026-11-02T09:00:30Z", "no, always use uv, never pip"),
]


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_claude_code_session(tmp_path, lake, catalog):
    f = tmp_path / f"{SID}.jsonl"
    write_jsonl(f, SESSION)
    [res] = ingest_files([f], catalog, tenant="me").files
    assert res.status == "ingested", res.error
    assert res.format == "claude-code"
    rows = sorted(pq.read_table(sorted(lake.transcripts_dir.rglob("*.parquet"))[0]).to_pylist(),
                  key=lambda r: r["seq"])
    got = [(r["type"], r["role"], r["event_id"]) for r in rows]
    assert got == [
        ("user.message", "user", "u-1"),
        ("agent.thinking", "assistant", "u-2"),
        ("agent.message", "assistant", "u-2#1"),
        ("agent.tool_use", "assistant", "u-2#2"),
        ("agent.tool_result", "tool", "u-3"),
        ("agent.mcp_tool_use", "assistant", "u-4"),
        ("agent.mcp_tool_result", "tool", "u-5"),
        ("user.interrupt", "user", "u-6"),
        ("system.message", "system", "u-7"),
        ("session.error", "system", "u-8"),
        ("user.message", "user", "u-9"),
    ]
    by_id = {r["event_id"]: r for r in rows}
    assert by_id["u-2#2"]["tool_name"] == "Bash"
    assert json.loads(by_id["u-2#2"]["tool_input"]) == {"command": "pip install -e ."}
    assert by_id["u-3"]["is_error"] is True and by_id["u-3"]["tool_use_id"] == "toolu_01"
    assert by_id["u-5"]["is_error"] is False and by_id["u-5"]["text"] == "found"
    assert str(by_id["u-1"]["ts"]) == "2026-11-02 09:00:00.123000+00:00"
    assert all(r["session_id"] == SID for r in rows)
    # the first event of a line keeps the whole line; later blocks keep their block
    assert json.loads(by_id["u-2"]["raw"])["requestId"] == "req_u-2"
    assert json.loads(by_id["u-2#2"]["raw"])["id"] == "toolu_01"
    assert (res.events, res.tool_calls, res.errors, res.sessions) == (11, 2, 2, 1)
    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert (s["events"], s["tool_calls"], s["errors"]) == (11, 2, 2)


def test_only_summary_lines_is_skipped_not_failed(tmp_path, lake, catalog):
    f = tmp_path / "summaries.jsonl"
    write_jsonl(f, [{"type": "summary", "summary": "x", "leafUuid": "a"},
                    {"type": "summary", "summary": "y", "leafUuid": "b"}])
    [res] = ingest_files([f], catalog).files
    assert res.status == "skipped" and res.error is None and "no events" in res.note
    assert catalog.list_snapshots() == []


def test_message_without_session_id_or_timestamp_fails(tmp_path, lake, catalog):
    for field, n in (("sessionId", 3), ("timestamp", 3), ("uuid", 3)):
        bad = [dict(r) for r in SESSION[:4]]
        bad[2] = {k: v for k, v in bad[2].items() if k != field}
        f = tmp_path / f"missing-{field}.jsonl"
        write_jsonl(f, bad)
        [res] = ingest_files([f], catalog, fmt="claude-code").files
        assert res.status == "failed"
        assert f"{f}:{n}:" in res.error and field in res.error, res.error
    assert not list(lake.transcripts_dir.rglob("*.parquet"))
    assert catalog.list_snapshots() == []
