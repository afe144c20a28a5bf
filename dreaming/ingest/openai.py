"""OpenAI-style chat trajectories: messages with ``tool_calls`` and ``role: tool`` results.

Accepted shapes (JSON or JSONL):
- a list of runs ``{"task_id", "trial", "reward", "info", "traj": [messages]}`` (tau-bench),
- conversations ``{"messages": [...], "id"?, "session_id"?, "reward"?, "outcome"?}``, one per
  file, per array element or per JSONL line,
- a bare list of messages (or one message per JSONL line): one conversation.

Mapping: ``system``/``developer`` → ``system.message``; ``user`` → ``user.message``; an
``assistant`` message → ``agent.message`` (when it has text) then one ``agent.tool_use`` per entry
of ``tool_calls`` (or legacy ``function_call``) with ``tool_input`` = the ``arguments`` JSON;
``tool``/``function`` → ``agent.tool_result`` (role ``tool``), an error when the text starts with
``Error:`` or the message says ``is_error``. A run's ``reward`` (or ``outcome``) becomes a final
``span.outcome_evaluation_end`` event whose ``outcome`` is the value as text (``"1.0"``) and whose
``raw`` holds the run's other fields (``info`` …).

Session id: the conversation's ``session_id`` or ``id``; for tau-bench runs
``stable_id("sesn", task_id, trial, <hash of the first two messages>, <occurrence>)`` where
occurrence counts earlier runs of the file with the same key (so the same run in two exports gets
the same id); a bare message list is one session named after the file; other conversations without
ids get ``stable_id("sesn", <hash of the first two messages>, <occurrence>)``.

Timestamps: a message's ``timestamp`` / ``created_at`` / ``created`` / ``ts`` when present
(carried forward to messages without one). Without any (tau-bench has none) they are synthesised,
deterministically: conversation k of the file starts at 2024-01-01T00:00:00Z + k minutes and
event seq n is + n seconds (``common.SYNTHETIC_BASE``).

``event_id``: the message's ``id`` when it has one, else ``stable_id("sevt", session, seq, <hash of
the message/tool call JSON>)``: stable across re-exports of the same conversation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dreaming import ids
from dreaming.ingest.common import (
    EventRows,
    Record,
    Source,
    dumps,
    flatten,
    json_input,
    parse_ts,
    short_hash,
    synthetic_ts,
)

FORMAT = "openai"

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TS_KEYS = ("timestamp", "created_at", "created", "ts")


def _is_message(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("role") in ROLES and "type" not in obj


def looks_like(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and _is_message(obj[0])
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("traj"), list):
        return True
    msgs = obj.get("messages")
    if isinstance(msgs, list) and "trajectory_format" not in obj and "info" not in obj:
        return not msgs or _is_message(msgs[0])
    return _is_message(obj)


class _Conv:
    __slots__ = ("meta", "messages", "rec", "path", "records")

    def __init__(self, meta: dict | None, messages: list, rec: Record | None, path: str,
                 records: list[Record] | None = None):
        self.meta, self.messages, self.rec, self.path = meta, messages, rec, path
        self.records = records  # one record per message (bare messages as records)


def _conversations(src: Source) -> list[_Conv]:
    convs: list[_Conv] = []
    loose: list[tuple[Any, Record]] = []  # messages that are records themselves
    for rec in src.records:
        obj = rec.obj
        prefix = f"[{rec.index}]" if src.kind == "json" and isinstance(src.doc, list) else ""
        if isinstance(obj, dict) and isinstance(obj.get("traj"), list):
            convs.append(_Conv(obj, obj["traj"], rec, f"{prefix}.traj" if prefix else "traj"))
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            convs.append(_Conv(obj, obj["messages"], rec, f"{prefix}.messages" if prefix else "messages"))
        elif isinstance(obj, list):
            convs.append(_Conv(None, obj, rec, prefix))
        elif isinstance(obj, dict) and "role" in obj:
            loose.append((obj, rec))
        else:
            raise src.error("expected a chat message (with role), a conversation (with messages) "
                            "or a run (with traj)", rec)
    if loose and convs:
        raise src.error("mixes bare messages with conversations", loose[0][1])
    if loose:
        convs.append(_Conv(None, [m for m, _ in loose], None, "", [r for _, r in loose]))
    return convs


def _session_id(src: Source, conv: _Conv, occurrences: dict, single_bare: bool) -> str:
    meta = conv.meta or {}
    for k in ("session_id", "id"):
        v = meta.get(k)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
            return str(v)
    if single_bare:
        return src.stem
    head = short_hash(dumps(conv.messages[:2]))
    key = (meta.get("task_id"), meta.get("trial"), head) if "task_id" in meta else (head,)
    n = occurrences.get(key, 0)
    occurrences[key] = n + 1
    return ids.stable_id(ids.SESSION, *key, n)


def parse(src: Source, out: EventRows) -> None:
    convs = _conversations(src)
    occurrences: dict = {}
    single_bare = len(convs) == 1 and convs[0].meta is None
    for ci, conv in enumerate(convs):
        sid = _session_id(src, conv, occurrences, single_bare)

        def err(msg: str, mi: int, field: str | None = None, _c=conv):
            if _c.records:
                return src.error(msg, _c.records[mi], field)
            path = f"{_c.path}[{mi}]"
            return src.error(msg, _c.rec, f"{path}.{field}" if field else path)

        # timestamps: given ones carried forward; none at all → synthetic
        given: list[datetime | None] = []
        for mi, m in enumerate(conv.messages):
            if not isinstance(m, dict):
                raise err(f"expected a message object, got {type(m).__name__}", mi)
            v = next((m[k] for k in _TS_KEYS if m.get(k) not in (None, "")), None)
            ts = parse_ts(v) if v is not None else None
            if v is not None and ts is None:
                raise err(f"unreadable timestamp {v!r}", mi, "timestamp")
            given.append(ts)
        have_ts = any(t is not None for t in given)
        first = next((t for t in given if t is not None), None)

        last_ts = first

        def add(m: dict, ts: datetime | None, etype: str, erole: str, part_raw: str, first_of_msg: bool,
                _sid=sid, _ci=ci, **kw) -> None:
            seq = out.next_seq(_sid)
            mid = m.get("id") if first_of_msg else None
            eid = mid if isinstance(mid, str) and mid else ids.stable_id(ids.EVENT, _sid, seq, part_raw)
            out.add(_sid, eid, ts or synthetic_ts(_ci, seq), etype, erole, raw=part_raw, **kw)

        for mi, m in enumerate(conv.messages):
            role = m.get("role")
            if role not in ROLES:
                raise err(f"unknown message role {role!r}", mi, "role")
            ts = None
            if have_ts:
                ts = given[mi] or last_ts
                last_ts = ts
            raw = dumps(m)
            if role in ("system", "developer"):
                add(m, ts, "system.message", "system", raw, True, text=flatten(m.get("content")))
            elif role == "user":
                add(m, ts, "user.message", "user", raw, True, text=flatten(m.get("content")))
            elif role == "assistant":
                text = flatten(m.get("content"))
                calls = m.get("tool_calls") or []
                if not isinstance(calls, list):
                    raise err("tool_calls must be a list", mi, "tool_calls")
                if m.get("function_call"):
                    calls = [*calls, {"function": m["function_call"]}]
                first_part = True
                if text or not calls:
                    add(m, ts, "agent.message", "assistant", raw, True, text=text)
                    first_part = False
                for k, call in enumerate(calls):
                    if not isinstance(call, dict):
                        raise err("a tool call must be an object", mi, f"tool_calls[{k}]")
                    fn = call.get("function") if isinstance(call.get("function"), dict) else call
                    name = fn.get("name")
                    if not name:
                        raise err("tool call has no function name", mi, f"tool_calls[{k}].function.name")
                    tool_input = json_input(fn.get("arguments", fn.get("input")))
                    add(m, ts, "agent.tool_use", "assistant", raw if first_part else dumps(call), first_part,
                        tool_name=name, tool_use_id=call.get("id"), tool_input=tool_input, text=tool_input)
                    first_part = False
            else:  # tool / function result
                text = flatten(m.get("content"))
                is_err = bool(m.get("is_error")) or (text or "").lstrip().startswith("Error:")
                add(m, ts, "agent.tool_result", "tool", raw, True, text=text, tool_name=m.get("name"),
                    tool_use_id=m.get("tool_call_id"), is_error=is_err)

        meta = conv.meta or {}
        result = meta.get("reward", meta.get("outcome"))
        if result is not None:
            extra = {k: v for k, v in meta.items() if k not in ("traj", "messages")}
            part_raw = dumps(extra)
            seq = out.next_seq(sid)
            ts = last_ts if have_ts else synthetic_ts(ci, seq)
            label = "reward" if "reward" in meta else "outcome"
            out.add(sid, ids.stable_id(ids.EVENT, sid, "outcome", short_hash(part_raw)), ts,
                    "span.outcome_evaluation_end", "system", text=f"{label} {result}",
                    outcome=str(result), raw=part_raw)
