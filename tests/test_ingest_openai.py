"""OpenAI-style chat trajectories (tau-bench shape and plain conversations) → the event schema."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from dreaming.ingest import ingest_files
from dreaming.lake import Lake


def run(task_id: int, trial: int, reward: float, fail_tool: bool) -> dict:
    result = "Error: reservation not found" if fail_tool else '{"status": "ok"}'
    return {
        "task_id": task_id,
        "trial": trial,
        "reward": reward,
        "info": {"task": {"user_id": f"user_{task_id}"}, "reward_info": {"r": reward}},
        "traj": [
            {"role": "system", "content": "# Airline Agent Policy"},
            {"role": "user", "content": f"Cancel reservation {task_id}"},
            {"content": None, "role": "assistant", "tool_calls": [
                {"function": {"arguments": json.dumps({"reservation_id": str(task_id)}),
                              "name": "cancel_reservation"}, "id": f"call_{task_id}_{trial}", "type": "function"}]},
            {"role": "tool", "tool_call_id": f"call_{task_id}_{trial}", "name": "cancel_reservation",
             "content": result},
            {"content": "Done.", "role": "assistant"},
        ],
    }


def read_rows(settings) -> list[dict]:
    rows = []
    for f in sorted(settings.transcripts_dir.rglob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return sorted(rows, key=lambda r: (r["ts"], r["session_id"], r["seq"]))


def test_tau_bench_shape(tmp_path, lake, catalog):
    runs = [run(0, 0, 1.0, False), run(0, 1, 0.0, True), run(1, 0, 0.0, True)]
    f = tmp_path / "tau.json"
    f.write_text(json.dumps(runs))
    [res] = ingest_files([f], catalog, tenant="tau").files
    assert res.status == "ingested", res.error
    assert (res.format, res.sessions, res.tool_calls, res.errors) == ("openai", 3, 3, 2)
    rows = read_rows(lake)
    first = [r for r in rows if r["session_id"] == rows[0]["session_id"]]
    assert [r["type"] for r in first] == ["system.message", "user.message", "agent.tool_use",
                                          "agent.tool_result", "agent.message", "span.outcome_evaluation_end"]
    tu = first[2]
    assert (tu["tool_name"], tu["tool_use_id"]) == ("cancel_reservation", "call_0_0")
    assert json.loads(tu["tool_input"]) == {"reservation_id": "0"}
    assert first[3]["role"] == "tool" and first[3]["tool_use_id"] == "call_0_0"
    assert first[-1]["outcome"] == "1.0"
    assert json.loads(first[-1]["raw"])["info"]["task"]["user_id"] == "user_0"
    # synthetic, deterministic time: run k starts at 2024-01-01 + k minutes, + 1 s per event
    assert [str(r["ts"]) for r in first[:2]] == ["2024-01-01 00:00:00+00:00", "2024-01-01 00:00:01+00:00"]

    with Lake(lake) as lk:
        ss = lk.sessions(tenant="tau")
    assert sorted(s["outcome"] for s in ss) == ["0.0", "0.0", "1.0"]
    assert sorted(s["errors"] for s in ss) == [0, 1, 1]
    assert len({s["session_id"] for s in ss}) == 3


def test_session_ids_are_deterministic_across_exports(tmp_path, lake, catalog):
    """The same run in two different files (another order, another neighbour) keeps its ids."""
    a, b, c = run(0, 0, 1.0, False), run(0, 1, 0.0, True), run(2, 0, 1.0, False)
    f1 = tmp_path / "export1.json"
    f1.write_text(json.dumps([a, b]))
    f2 = tmp_path / "export2.json"
    f2.write_text(json.dumps([c, b, a], indent=1))
    report = ingest_files([f1, f2], catalog)
    assert [f.status for f in report.files] == ["ingested", "ingested"]
    assert report.events == 12 + 18  # counted per file (6 events a run) ...
    with Lake(lake) as lk:
        ss = lk.sessions()
        n_events = lk.con.execute("select count(*) from events").fetchall()[0][0]
    assert len(ss) == 3  # ... but each session and event once in the lake
    assert n_events == 18
    assert sum(s["tool_calls"] for s in ss) == 3


def test_plain_conversation_with_timestamps(tmp_path, lake, catalog):
    conv = {"id": "conv-42", "outcome": "satisfied", "messages": [
        {"role": "user", "content": "hi", "timestamp": "2026-11-03T10:00:00+02:00"},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}], "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": 1}"}},
            {"id": "c2", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": 2}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "1", "timestamp": "2026-11-03T08:00:05Z"},
        {"role": "tool", "tool_call_id": "c2", "content": "boom", "is_error": True},
    ]}
    f = tmp_path / "conv.jsonl"
    f.write_text(json.dumps(conv) + "\n")
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested", res.error
    rows = read_rows(lake)
    assert {r["session_id"] for r in rows} == {"conv-42"}
    rows.sort(key=lambda r: r["seq"])
    assert [r["type"] for r in rows] == ["user.message", "agent.message", "agent.tool_use", "agent.tool_use",
                                         "agent.tool_result", "agent.tool_result", "span.outcome_evaluation_end"]
    assert str(rows[0]["ts"]) == "2026-11-03 08:00:00+00:00"  # converted to UTC
    assert str(rows[1]["ts"]) == "2026-11-03 08:00:00+00:00"  # carried forward
    assert str(rows[5]["ts"]) == "2026-11-03 08:00:05+00:00"
    assert rows[5]["is_error"] is True and rows[4]["is_error"] is False
    assert rows[-1]["outcome"] == "satisfied"
    assert (res.tool_calls, res.errors) == (2, 1)


def test_bare_message_list_is_one_session_named_after_the_file(tmp_path, lake, catalog):
    f = tmp_path / "chat-7.json"
    f.write_text(json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]))
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested"
    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert s["session_id"] == "chat-7" and s["events"] == 2


def test_unknown_role_fails_with_field(tmp_path, lake, catalog):
    bad = run(0, 0, 1.0, False)
    bad["traj"][3]["role"] = "robot"
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([run(1, 0, 1.0, False), bad], indent=2))
    [res] = ingest_files([f], catalog, fmt="openai").files
    assert res.status == "failed"
    assert "[1].traj[3].role" in res.error and "robot" in res.error
    assert f"{f}:" in res.error
    assert not list(lake.transcripts_dir.rglob("*.parquet"))
