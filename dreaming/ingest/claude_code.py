"""Claude Code session JSONL (``~/.claude/projects/<project>/<session>.jsonl``).

Each line is one record. Message lines have ``type`` ``user`` / ``assistant``, ``uuid``,
``sessionId``, ``timestamp`` and ``message: {role, content}`` where content is a string or a
list of blocks (``text``, ``thinking``, ``tool_use``, ``tool_result`` with ``is_error``, ``image``).
``system`` lines (``subtype``, ``content``, ``level``) are kept as ``system.message`` (or
``session.error`` when ``level`` is ``error``). The known bookkeeping line types (``summary``,
``file-history-snapshot``, ``queue-operation``, … ``KNOWN_TYPES``) carry no conversation: they
are counted as ignored, per type. A line with a missing or unknown ``type`` is skipped and
reported (file, line, field ``type``): Claude Code adds line types between releases, so refusing
the file would stop ingest at every new release, and dropping it silently would hide data.

Mapping: user text → ``user.message`` (``user.interrupt`` for "[Request interrupted by user…]");
assistant text → ``agent.message``; thinking → ``agent.thinking``; ``tool_use`` →
``agent.tool_use`` (``agent.mcp_tool_use`` for ``mcp__…`` tools); ``tool_result`` →
``agent.tool_result`` / ``agent.mcp_tool_result``, role ``tool``, ``is_error`` as given;
an assistant line with ``isApiErrorMessage`` → ``session.error``.

``event_id``: the line's ``uuid`` for its first block, ``<uuid>#<n>`` for block n > 0. ``raw``: the
whole line on the first event of a line, the block's JSON on the others. A message line without
``uuid``, ``sessionId`` or a readable ``timestamp`` is an error naming file and line.
"""

from __future__ import annotations

from typing import Any

from dreaming.ingest.common import EventRows, Source, dumps, flatten, json_input, parse_ts

FORMAT = "claude-code"

MESSAGE_TYPES = frozenset({"user", "assistant", "system"})
KNOWN_TYPES = MESSAGE_TYPES | frozenset(
    {"summary", "file-history-snapshot", "queue-operation", "x-ai-title", "custom-title", "tag", "progress"}
)
_ID_KEYS = ("uuid", "sessionId", "leafUuid", "messageId", "parentUuid")


def looks_like(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    t = obj.get("type")
    if t not in KNOWN_TYPES:
        return False
    if t in ("user", "assistant"):
        return isinstance(obj.get("message"), dict) and any(k in obj for k in ("uuid", "sessionId", "parentUuid"))
    return any(k in obj for k in _ID_KEYS)


def parse(src: Source, out: EventRows) -> None:
    mcp_ids: set[str] = set()
    for rec in src.records:
        out.mark(rec)
        obj = rec.obj
        if not isinstance(obj, dict):
            raise src.error(f"expected a JSON object per line, got {type(obj).__name__}", rec)
        t = obj.get("type")
        if t not in MESSAGE_TYPES:
            if t in KNOWN_TYPES:
                src.ignore(f"{t} line")  # summary, file-history-snapshot, …: no conversation in them
            elif t is None:
                src.skip(rec, "type", "line has no type (not a Claude Code message line): left out")
            else:
                src.skip(rec, "type", f"unknown line type {str(t)[:60]!r}: left out")
            continue
        uuid = obj.get("uuid")
        if not uuid or not isinstance(uuid, str):
            raise src.error(f"{t} line has no uuid", rec, "uuid")
        sid = obj.get("sessionId")
        if not sid or not isinstance(sid, str):
            raise src.error(f"{t} line has no sessionId", rec, "sessionId")
        ts = parse_ts(obj.get("timestamp"))
        if ts is None:
            raise src.error(f"{t} line has no readable timestamp", rec, "timestamp")
        src.check_time(ts, obj.get("timestamp"), rec, "timestamp")
        raw_line = rec.raw if rec.raw is not None else dumps(obj)

        def emit(n: int, block: Any, etype: str, role: str, _u=uuid, _s=sid, _ts=ts, _r=raw_line, **kw):
            out.add(
                _s,
                _u if n == 0 else f"{_u}#{n}",
                _ts,
                etype,
                role,
                raw=_r if n == 0 else dumps(block),
                **kw,
            )

        if t == "system":
            text = flatten(obj.get("content"))
            is_err = obj.get("level") == "error"
            emit(0, obj, "session.error" if is_err else "system.message", "system", text=text, is_error=is_err)
            continue

        msg = obj.get("message")
        if not isinstance(msg, dict):
            raise src.error(f"{t} line has no message object", rec, "message")
        content = msg.get("content")
        if content is None:
            raise src.error(f"{t} message has no content", rec, "message.content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise src.error("message.content must be a string or a list of blocks", rec, "message.content")
        if not blocks:
            src.skip(rec, "message.content", f"{t} message has no content blocks: no event to ingest")
            continue

        if t == "assistant" and obj.get("isApiErrorMessage"):
            emit(0, obj, "session.error", "system", text=flatten(content), is_error=True)
            continue

        for n, b in enumerate(blocks):
            if not isinstance(b, dict):
                b = {"type": "text", "text": str(b)}
            bt = b.get("type")
            if t == "user":
                if bt == "tool_result":
                    tuid = b.get("tool_use_id")
                    etype = "agent.mcp_tool_result" if tuid in mcp_ids else "agent.tool_result"
                    emit(n, b, etype, "tool", text=flatten(b.get("content")), tool_use_id=tuid,
                         is_error=bool(b.get("is_error")))
                else:
                    text = flatten(b)
                    etype = "user.interrupt" if (text or "").startswith("[Request interrupted by user") else "user.message"
                    emit(n, b, etype, "user", text=text)
            else:  # assistant
                if bt in ("tool_use", "server_tool_use"):
                    name = b.get("name")
                    tuid = b.get("id")
                    is_mcp = isinstance(name, str) and name.startswith("mcp__")
                    if is_mcp and tuid:
                        mcp_ids.add(tuid)
                    tool_input = json_input(b.get("input"))
                    emit(n, b, "agent.mcp_tool_use" if is_mcp else "agent.tool_use", "assistant",
                         tool_name=name, tool_use_id=tuid, tool_input=tool_input, text=tool_input)
                elif bt in ("thinking", "redacted_thinking"):
                    emit(n, b, "agent.thinking", "assistant", text=flatten(b))
                elif bt in ("web_search_tool_result", "tool_result"):
                    emit(n, b, "agent.tool_result", "tool", text=flatten(b), tool_use_id=b.get("tool_use_id"),
                         is_error=bool(b.get("is_error")))
                else:
                    emit(n, b, "agent.message", "assistant", text=flatten(b))
