"""Secrets are redacted at ingest; the originals are kept only on request, outside the lake."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from dreaming.cli import app
from dreaming.fsck import fsck
from dreaming.ingest import ingest_files
from dreaming.lake import Lake

runner = CliRunner()

KEY = "sk-ant-api03-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"
GH = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


def events() -> list[dict]:
    return [
        {"id": "sevt_0", "type": "user.message", "session_id": "sesn_A", "processed_at": "2026-11-02T10:00:00Z",
         "content": [{"type": "text", "text": f"my key is {KEY}, use it"}]},
        {"id": "sevt_1", "type": "agent.tool_use", "session_id": "sesn_A", "processed_at": "2026-11-02T10:01:00Z",
         "name": "bash", "input": {"command": f"git push https://x:{GH}@github.com/o/r"}},
        {"id": "sevt_2", "type": "agent.message", "session_id": "sesn_A", "processed_at": "2026-11-02T10:02:00Z",
         "content": [{"type": "text", "text": "pushed, nothing secret here"}]},
    ]


def write(path) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events()))


def lake_rows(settings) -> list[dict]:
    with Lake(settings) as lk:
        cur = lk.con.execute("select event_id, text, tool_input, raw from events order by seq")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def test_secrets_are_redacted_in_text_tool_input_and_raw(tmp_path, lake, catalog):
    f = tmp_path / "s.jsonl"
    write(f)
    [res] = ingest_files([f], catalog).files
    assert res.status == "ingested"
    assert res.redactions == {"anthropic-key": 2, "github-token": 3}  # per value: text+raw, tool_input+text+raw
    rows = lake_rows(lake)
    dump = json.dumps(rows)
    assert KEY not in dump and GH not in dump
    assert "[REDACTED:anthropic-key]" in rows[0]["text"]
    for r in rows:  # still valid JSON where JSON belongs
        json.loads(r["raw"])
        if r["tool_input"]:
            assert "[REDACTED:github-token]" in json.loads(r["tool_input"])["command"]
    assert rows[2]["text"] == "pushed, nothing secret here"
    assert res.originals is None and not lake.originals_dir.exists()
    for p in lake.home.rglob("*.parquet"):  # nothing on disk holds the secret
        assert KEY.encode() not in p.read_bytes()


def test_event_ids_do_not_depend_on_redaction(tmp_path, lake, catalog):
    f = tmp_path / "s.jsonl"
    write(f)
    ingest_files([f], catalog)
    assert [r["event_id"] for r in lake_rows(lake)] == ["sevt_0", "sevt_1", "sevt_2"]


def test_keep_secrets_writes_a_registered_sidecar_the_lake_never_reads(tmp_path, lake, catalog):
    f = tmp_path / "s.jsonl"
    write(f)
    r = runner.invoke(app, ["ingest", str(f), "--keep-secrets", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["redactions"] == {"anthropic-key": 2, "github-token": 3} and out["totals"]["redacted"] == 5
    side = lake.home / out["files"][0]["originals"]
    assert side.is_relative_to(lake.originals_dir) and side.is_file()
    t = pq.read_table(side).to_pylist()
    assert [x["event_id"] for x in t] == ["sevt_0", "sevt_1"]
    assert KEY in t[0]["text"] and GH in t[1]["tool_input"]
    assert KEY not in json.dumps(lake_rows(lake), default=str)  # the lake is still redacted
    assert catalog.original_files() == [side.relative_to(lake.home).as_posix()]
    assert not fsck(lake, catalog).quarantined  # registered: fsck leaves it alone


def test_plain_summary_counts_redactions(tmp_path, lake):
    f = tmp_path / "s.jsonl"
    write(f)
    r = runner.invoke(app, ["ingest", str(f)])
    assert r.exit_code == 0
    assert "redacted 5 secret(s): anthropic-key 2, github-token 3" in " ".join(r.output.split())
