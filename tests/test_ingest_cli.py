"""`dreams ingest` and `dreams sessions` through the CLI (typer's CliRunner and the installed script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dreaming.cli import app
from dreaming.lake import Lake

runner = CliRunner()


def write_events(path: Path, session: str, n: int, day: str = "2026-11-02", error_at: int | None = None) -> None:
    recs = []
    for i in range(n):
        recs.append({"id": f"sevt_{session}_{i}", "type": "agent.tool_result" if i == error_at else "user.message",
                     "processed_at": f"{day}T10:{i:02d}:00Z", "session_id": session, "is_error": i == error_at,
                     "content": [{"type": "text", "text": f"m{i}"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_ingest_json_and_sessions(tmp_path, lake):
    write_events(tmp_path / "a.jsonl", "sesn_A", 4, error_at=2)
    write_events(tmp_path / "b.jsonl", "sesn_B", 2, day="2026-11-04")
    r = runner.invoke(app, ["ingest", str(tmp_path), "--tenant", "acme", "--agent", "bot", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["totals"] == {"files": 2, "ingested": 2, "skipped": 0, "failed": 0, "sessions": 2, "events": 6,
                             "tool_calls": 0, "errors": 1, "skipped_lines": 0, "repaired_lines": 0,
                             "ignored_records": 0, "redacted": 0}
    assert {f["format"] for f in out["files"]} == {"anthropic"}

    r = runner.invoke(app, ["sessions", "--tenant", "acme", "--json"])
    assert r.exit_code == 0, r.output
    page = json.loads(r.stdout)
    assert set(page) == {"data", "next_page"}  # Anthropic's list shape, like every listing
    rows = page["data"]
    assert [(s["session_id"], s["events"], s["errors"], s["agent_id"]) for s in rows] == [
        ("sesn_A", 4, 1, "bot"), ("sesn_B", 2, 0, "bot")]
    assert rows[0]["started_at"] == "2026-11-02T10:00:00Z" and rows[0]["ended_at"] == "2026-11-02T10:03:00Z"

    r = runner.invoke(app, ["sessions", "--since", "2026-11-03", "--json"])
    assert [s["session_id"] for s in json.loads(r.stdout)["data"]] == ["sesn_B"]
    r = runner.invoke(app, ["sessions", "--tenant", "nobody", "--json"])
    assert json.loads(r.stdout) == {"data": [], "next_page": None}

    # a second run is a no-op, and the plain summary says so
    r = runner.invoke(app, ["ingest", str(tmp_path), "--tenant", "acme", "--agent", "bot"])
    assert r.exit_code == 0
    assert "skipped" in r.stdout and "summary" in r.stdout
    r = runner.invoke(app, ["sessions"])
    assert r.exit_code == 0 and "sesn_A" in r.stdout


def test_failed_file_exits_2_after_ingesting_the_good_ones(tmp_path, lake):
    write_events(tmp_path / "good.jsonl", "sesn_G", 3)
    (tmp_path / "bad.jsonl").write_text('{"id": "sevt_1", "type": "user.message"}\n{"id": ')
    r = runner.invoke(app, ["ingest", str(tmp_path / "good.jsonl"), str(tmp_path / "bad.jsonl"), "--json"])
    assert r.exit_code == 2
    out = json.loads(r.stdout)
    assert [f["status"] for f in out["files"]] == ["ingested", "failed"]
    assert f"{tmp_path / 'bad.jsonl'}:2:" in out["files"][1]["error"]
    r = runner.invoke(app, ["sessions", "--json"])
    assert [s["session_id"] for s in json.loads(r.stdout)["data"]] == ["sesn_G"]


def test_bad_usage_exits_2(tmp_path, lake):
    write_events(tmp_path / "a.jsonl", "sesn_A", 1)
    assert runner.invoke(app, ["ingest", str(tmp_path), "--format", "csv"]).exit_code == 2
    assert runner.invoke(app, ["ingest", str(tmp_path), "--tenant", "a/b"]).exit_code == 2
    assert runner.invoke(app, ["sessions", "--since", "last tuesday"]).exit_code == 2


def test_installed_script_exit_codes(tmp_path, lake):
    """The `dreams` entry point (not CliRunner) must also exit 2 when a file failed."""
    script = Path(sys.executable).parent / "dreams"
    (tmp_path / "bad.json").write_text("[1, 2")
    write_events(tmp_path / "ok.jsonl", "sesn_OK", 2)
    env = {**os.environ, "DREAMS_HOME": str(lake.home)}
    p = subprocess.run([str(script), "ingest", str(tmp_path / "bad.json"), str(tmp_path / "ok.jsonl")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "bad.json:1" in p.stderr.replace("\n", "")
    with Lake(lake) as lk:
        assert [s["session_id"] for s in lk.sessions()] == ["sesn_OK"]
