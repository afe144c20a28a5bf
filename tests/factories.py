"""Test data builders: transcript events written straight into a lake as a snapshot file.

``write_sessions(settings, sessions)`` takes a list of sessions, each a dict with
``session_id``, optional ``tenant``/``agent_id``/``start``/``outcome``, and ``events``: a list
of short event specs such as ``("user", "always use uv, never pip")``,
``("tool_use", "bash", {"cmd": "pip install x"})``, ``("tool_result", "Error: ...", True)``,
``("assistant", "done")``; a tool use/result may name its tool-use id as a 4th item, an ``("outcome",
value, meta)`` carries the run's metadata as its raw JSON. Times advance one minute per event from ``start``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from dreaming import ids
from dreaming.atomic import write_parquet_atomic
from dreaming.catalog import Catalog
from dreaming.schema import EVENT_SCHEMA
from dreaming.settings import Settings

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def event_rows(session: dict, snapshot_id: str) -> list[dict]:
    tenant = session.get("tenant", "acme")
    sid = session["session_id"]
    start = session.get("start", T0)
    rows = []
    last_tool_use = None
    for seq, spec in enumerate(session["events"]):
        kind = spec[0]
        row = {
            "tenant": tenant,
            "agent_id": session.get("agent_id", "agent-1"),
            "session_id": sid,
            "seq": seq,
            "event_id": ids.stable_id(ids.EVENT, tenant, sid, seq),
            "ts": start + timedelta(minutes=seq),
            "type": None, "role": None, "text": None, "tool_name": None, "tool_use_id": None,
            "tool_input": None, "is_error": False, "outcome": None,
            "source_format": "anthropic", "snapshot_id": snapshot_id, "raw": json.dumps([str(s) for s in spec]),
        }
        if kind == "user":
            row.update(type="user.message", role="user", text=spec[1])
        elif kind == "assistant":
            row.update(type="agent.message", role="assistant", text=spec[1])
        elif kind == "tool_use":
            last_tool_use = spec[3] if len(spec) > 3 else ids.stable_id("toolu", sid, seq)  # a 4th item: the id
            row.update(type="agent.tool_use", role="assistant", tool_name=spec[1], tool_use_id=last_tool_use,
                       tool_input=json.dumps(spec[2] if len(spec) > 2 else {}),
                       text=json.dumps(spec[2] if len(spec) > 2 else {}))
        elif kind == "tool_result":
            row.update(type="agent.tool_result", role="tool", text=spec[1],
                       tool_use_id=spec[3] if len(spec) > 3 else last_tool_use,
                       is_error=bool(spec[2]) if len(spec) > 2 else False)
        elif kind == "error":
            row.update(type="session.error", role="system", text=spec[1], is_error=True)
        elif kind == "outcome":
            row.update(type="span.outcome_evaluation_end", role="system", outcome=spec[1], text=spec[1])
            if len(spec) > 2:  # the run's metadata (task_id, info.task.user_id …), as adapters keep it
                row["raw"] = json.dumps(spec[2])
        elif kind == "system":
            row.update(type="system.message", role="system", text=spec[1], is_error=bool(spec[2]) if len(spec) > 2 else False)
        else:
            raise ValueError(f"unknown event spec {spec!r}")
        rows.append(row)
    if session.get("outcome") is not None:
        rows[-1]["outcome"] = session["outcome"]
    return rows


def write_sessions(settings: Settings, sessions: list[dict], snapshot_id: str | None = None) -> list[Path]:
    """Write sessions into the lake (one file per tenant/day). Returns the files written."""
    snapshot_id = snapshot_id or ids.new_id(ids.SNAPSHOT)
    by_part: dict[tuple[str, str], list[dict]] = {}
    for s in sessions:
        for r in event_rows(s, snapshot_id):
            by_part.setdefault((r["tenant"], s.get("start", T0).strftime("%Y-%m-%d")), []).append(r)
    out = []
    for (tenant, day), rows in sorted(by_part.items()):
        path = settings.transcripts_dir / f"tenant={tenant}" / f"day={day}" / f"{snapshot_id}.parquet"
        out.append(write_parquet_atomic(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), path, settings.staging_dir))
    # the lake reads only files the catalog registers
    cat = Catalog(settings)
    try:
        cat.register_written(snapshot_id, out, rows=sum(len(r) for r in by_part.values()), sessions=len(sessions))
    finally:
        cat.engine.dispose()
    return out


def with_event_ids(text: str, idx) -> str:
    """A digest's text with its short event tags (``[e12``) shown as the event ids they stand for
    (``dreaming.digest.EvidenceIndex.by_alias``), so a test can read which event a line cites."""
    import re

    real = {a: eid for (_, a), eid in idx.by_alias.items()}
    return re.sub(r"\[(e\d+)\b", lambda m: "[" + real.get(m.group(1), m.group(1)), text)
