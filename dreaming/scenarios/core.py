"""Format-neutral sessions, the two transcript writers, and the scenario folder writer.

A scenario builder (see ``demo.py``) produces ``Sess`` objects made of ``Ev`` steps plus a starting
store (``{relative path: file text}``) and a truth manifest. This module turns them into files:

- ``anthropic``: Anthropic Managed Agents session events, JSONL, one event per line, as
  ``client.beta.sessions.events.list(order="asc")`` returns them, plus ``session_id``;
- ``claude-code``: Claude Code session JSONL (``type``/``uuid``/``parentUuid``/``message`` lines).

Everything is derived from the seed: ids are hashes of (scenario, seed, session, step), times are
computed from the scenario's base date, never from the clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dreaming import ids
from dreaming.errors import BadInput

FORMATS = ("anthropic", "claude-code")


@dataclass
class Ev:
    """One step of a session, independent of the output format.

    ``kind``: ``user`` | ``assistant`` | ``tool_use`` | ``tool_result`` | ``error`` (session.error)
    | ``outcome`` (span.outcome_evaluation_end; Anthropic only, skipped for Claude Code).
    A ``tool_result`` answers the latest ``tool_use``. ``gap_s``: seconds since the previous step.
    ``tag`` marks planted steps (e.g. ``mistake:pip:error``) so truth can cite their event ids.
    """

    kind: str
    text: str = ""
    tool: str | None = None
    input: dict | None = None
    is_error: bool = False
    gap_s: int = 20
    tag: str | None = None


@dataclass
class Sess:
    session_id: str
    tenant: str
    agent: str
    fmt: str
    start: datetime
    events: list[Ev]
    batch: int = 1  # export batch: files are named b<batch>-<session>.jsonl (ingestion order)
    success: bool = True
    tags: list[str] = field(default_factory=list)
    cwd: str = "/home/dev/app"
    branch: str = "main"

    def times(self) -> list[datetime]:
        out, t = [], self.start
        for i, e in enumerate(self.events):
            if i:
                t = t + timedelta(seconds=e.gap_s)
            out.append(t)
        return out


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def det_uuid(*parts: object) -> str:
    """A UUID4-shaped id derived from ``parts`` (Claude Code uses UUIDs for sessions and lines)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:16]
    return str(uuid.UUID(bytes=h, version=4))


def det_token(prefix: str, *parts: object, length: int = 24) -> str:
    """``toolu_01...``-style id from a hash of ``parts``."""
    return prefix + ids.stable_id("x", *parts)[2:][:length]


# --- writers ------------------------------------------------------------------------------------


def anthropic_lines(s: Sess, salt: str) -> tuple[list[str], list[str]]:
    """JSONL lines of one session as Anthropic session events; returns (lines, event ids)."""
    lines, eids = [], []
    times = s.times()
    last_tool_use = None
    outc = det_token("outc_", salt, s.session_id, "outcome")

    def emit(obj: dict) -> None:
        lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        eids.append(obj["id"])

    for seq, (e, t) in enumerate(zip(s.events, times, strict=True)):
        eid = ids.stable_id(ids.EVENT, salt, s.session_id, seq)
        base = {"id": eid, "session_id": s.session_id, "processed_at": rfc3339(t)}
        if e.kind == "user":
            emit({**base, "type": "user.message", "content": [{"type": "text", "text": e.text}]})
        elif e.kind == "assistant":
            emit({**base, "type": "agent.message", "content": [{"type": "text", "text": e.text}]})
        elif e.kind == "tool_use":
            last_tool_use = eid
            emit({**base, "type": "agent.tool_use", "name": e.tool, "input": e.input or {},
                  "evaluated_permission": "allow"})
        elif e.kind == "tool_result":
            emit({**base, "type": "agent.tool_result", "tool_use_id": last_tool_use,
                  "content": [{"type": "text", "text": e.text}], "is_error": e.is_error})
        elif e.kind == "error":
            emit({**base, "type": "session.error",
                  "error": {"type": e.tool or "model_overloaded_error", "message": e.text,
                            "retry_status": {"type": "retrying"}}})
        elif e.kind == "outcome":
            emit({**base, "type": "span.outcome_evaluation_end",
                  "outcome_evaluation_start_id": ids.stable_id(ids.EVENT, salt, s.session_id, "eval-start"),
                  "outcome_id": outc, "iteration": 0, "result": e.text,
                  "explanation": "The rubric's criteria are met." if e.text == "satisfied"
                  else "The task was not completed: the final state does not meet the rubric.",
                  "usage": {"input_tokens": 1200 + 37 * seq, "output_tokens": 96}})
        else:
            raise ValueError(f"unknown step kind {e.kind!r}")
    if s.events:
        t_end = times[-1] + timedelta(seconds=2)
        emit({"id": ids.stable_id(ids.EVENT, salt, s.session_id, "idle"), "session_id": s.session_id,
              "processed_at": rfc3339(t_end), "type": "session.status_idle", "stop_reason": {"type": "end_turn"}})
    return lines, eids


def claude_code_lines(s: Sess, salt: str) -> tuple[list[str], list[str]]:
    """JSONL lines of one session as Claude Code writes them; returns (lines, line uuids).

    Consecutive assistant steps (text, tool_use) each get their own line, as Claude Code does;
    tool results are ``user`` lines whose content is a ``tool_result`` block.
    """
    lines, uuids = [], []
    times = s.times()
    parent = None
    last_tool = None
    for seq, (e, t) in enumerate(zip(s.events, times, strict=True)):
        if e.kind in ("outcome", "error"):
            continue  # Claude Code has no outcome or session-error lines
        u = det_uuid(salt, s.session_id, seq)
        common = {"parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": s.cwd,
                  "sessionId": s.session_id, "version": "2.0.31", "gitBranch": s.branch}
        if e.kind == "user":
            obj = {**common, "type": "user", "message": {"role": "user", "content": [{"type": "text", "text": e.text}]},
                   "uuid": u, "timestamp": rfc3339(t)}
        elif e.kind == "tool_result":
            obj = {**common, "type": "user",
                   "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": last_tool,
                                                            "content": e.text, "is_error": e.is_error}]},
                   "uuid": u, "timestamp": rfc3339(t)}
        elif e.kind in ("assistant", "tool_use"):
            if e.kind == "tool_use":
                last_tool = det_token("toolu_01", salt, s.session_id, seq)
                block = {"type": "tool_use", "id": last_tool, "name": e.tool, "input": e.input or {}}
            else:
                block = {"type": "text", "text": e.text}
            obj = {**common, "type": "assistant",
                   "message": {"id": det_token("msg_01", salt, s.session_id, seq), "type": "message",
                               "role": "assistant", "model": "claude-sonnet-4-5-20250929", "content": [block],
                               "stop_reason": "tool_use" if e.kind == "tool_use" else "end_turn",
                               "usage": {"input_tokens": 4 + seq, "output_tokens": 40 + 3 * seq}},
                   "requestId": det_token("req_011", salt, s.session_id, seq), "uuid": u, "timestamp": rfc3339(t)}
        else:
            raise ValueError(f"unknown step kind {e.kind!r}")
        lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        uuids.append(u)
        parent = u
    return lines, uuids


WRITERS = {"anthropic": anthropic_lines, "claude-code": claude_code_lines}


def step_event_ids(s: Sess, salt: str) -> list[str | None]:
    """The event id each step becomes in its format (None for steps the format drops)."""
    if s.fmt == "anthropic":
        return [ids.stable_id(ids.EVENT, salt, s.session_id, i) for i in range(len(s.events))]
    return [None if e.kind in ("outcome", "error") else det_uuid(salt, s.session_id, i)
            for i, e in enumerate(s.events)]


def session_relpath(s: Sess) -> str:
    """``<tenant>/<format>/<agent>/b<batch>-<session>.jsonl`` (per-tenant folders for ingest)."""
    return f"{s.tenant}/{s.fmt}/{s.agent}/b{s.batch}-{s.session_id}.jsonl"


def write_tree(out_dir: Path, files: dict[str, str], overwrite: bool) -> None:
    """Write ``{relpath: text}`` into ``out_dir`` all at once: a staging folder, then rename."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise BadInput("scenario folder exists and is not empty (pass overwrite=True)", file=str(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    try:
        for rel, text in files.items():
            p = stage / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(stage, out_dir)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
