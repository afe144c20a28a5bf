"""mini-swe-agent ``.traj.json`` trajectories → the event schema."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from dreaming.ingest import ingest_files
from dreaming.lake import Lake


def assistant(thought: str, *commands: str, created: int | None = None) -> dict:
    body = f"THOUGHT: {thought}\n\n" + "\n\n".join(f"```bash\n{c}\n```" for c in commands)
    m = {"role": "assistant", "content": body}
    if created is not None:
        m["extra"] = {"response": {"id": "gen-1", "object": "chat.completion", "created": created}}
    return m


def observe(rc: int, output: str) -> dict:
    return {"role": "user", "content": f"<returncode>{rc}</returncode>\n<output>\n{output}\n</output>"}


def trajectory(with_times: bool = True) -> dict:
    t0 = 1763511546 if with_times else None
    return {
        "instance_id": "django__django-99999",
        "trajectory_format": "mini-swe-agent-1",
        "info": {"exit_status": "Submitted", "submission": "diff --git a/x b/x", "model_stats": {"api_calls": 5}},
        "messages": [
            {"role": "system", "content": "You are a helpful assistant that can interact with a shell."},
            {"role": "user", "content": "<pr_description>Fix the validator</pr_description>"},
            assistant("look around", "ls django/core", created=t0),
            observe(0, "validators.py"),
            assistant("run it", "python -c 'import django; x()'", created=t0 + 10 if t0 else None),
            observe(1, "Traceback (most recent call last):\n  File \"<string>\", line 1\nNameError: x"),
            assistant("two at once", "ls", "pwd", created=t0 + 20 if t0 else None),
            {"role": "user", "content": "Please always provide EXACTLY ONE action in triple backticks, found 2 actions."},
            assistant("grep", "grep -n foo bar.py", created=t0 + 30 if t0 else None),
            observe(2, "grep: bar.py: No such file or directory"),
            assistant("submit", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff", created=t0 + 40 if t0 else None),
            {"role": "user", "content": "diff --git a/x b/x\n+fixed"},
        ],
    }


def test_trajectory(tmp_path, lake, catalog):
    f = tmp_path / "django__django-99999.traj.json"
    f.write_text(json.dumps(trajectory(), indent=1))
    [res] = ingest_files([f], catalog, tenant="swe").files
    assert res.status == "ingested", res.error
    assert res.format == "mini-swe-agent"
    rows = sorted(pq.read_table(next(lake.transcripts_dir.rglob("*.parquet"))).to_pylist(), key=lambda r: r["seq"])
    assert [r["type"] for r in rows] == [
        "system.message", "user.message",
        "agent.message", "agent.tool_use", "agent.tool_result",
        "agent.message", "agent.tool_use", "agent.tool_result",
        "agent.message", "system.message",  # two bash blocks: the harness rejects it, nothing executed
        "agent.message", "agent.tool_use", "agent.tool_result",
        "agent.message", "agent.tool_use", "agent.tool_result",
        "span.outcome_evaluation_end",
    ]
    results = [r for r in rows if r["type"] == "agent.tool_result"]
    assert [r["is_error"] for r in results] == [False, True, True, False]  # rc 0, traceback, rc 2, diff
    uses = [r for r in rows if r["type"] == "agent.tool_use"]
    assert [r["tool_use_id"] for r in uses] == [r["tool_use_id"] for r in results]
    assert json.loads(uses[0]["tool_input"]) == {"command": "ls django/core"}
    assert all(r["tool_name"] == "bash" for r in uses)
    assert rows[-1]["outcome"] == "Submitted"
    assert str(rows[0]["ts"]) == "2025-11-19 00:19:06+00:00"  # first assistant turn's time
    assert str(rows[7]["ts"]) == "2025-11-19 00:19:16+00:00"  # output takes its command's time
    assert {r["session_id"] for r in rows} == {"django__django-99999"}
    assert (res.tool_calls, res.errors) == (4, 3)  # rc != 0, a traceback, and the harness rejection
    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert (s["tool_calls"], s["errors"], s["outcome"]) == (4, 3, "Submitted")  # the sessions view counts the rejection too


def test_without_timestamps_or_instance_id(tmp_path, lake, catalog):
    doc = trajectory(with_times=False)
    del doc["instance_id"]
    f = tmp_path / "case-1.traj.json"
    f.write_text(json.dumps(doc))
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested", res.error
    with Lake(lake) as lk:
        [s] = lk.sessions()
    assert s["session_id"] == "case-1"
    assert str(s["started_at"]).startswith("2024-01-01 00:00:00")


def test_bad_message_names_field(tmp_path, lake, catalog):
    doc = trajectory()
    doc["messages"][3] = {"role": "user", "content": None}
    f = tmp_path / "x.traj.json"
    f.write_text(json.dumps(doc))
    [res] = ingest_files([f], catalog).files
    assert res.status == "failed"
    assert "messages[3].content" in res.error and f"{f}:1:" in res.error
