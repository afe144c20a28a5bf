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
_TS_KEY_SET = frozenset(_TS_KEYS)


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
    for k in ("task_id", "trial"):  # parts of the session id: scalars only
        if isinstance(meta.get(k), (list, dict)):
            raise src.error(f"{k} must be a string or a number, got {type(meta[k]).__name__}", conv.rec,
                            f"{conv.path.rsplit('.', 1)[0]}.{k}" if "." in conv.path else k)
    head = short_hash(dumps(conv.messages[:2]))
    key = (meta.get("task_id"), meta.get("trial"), head) if "task_id" in meta else (head,)
    n = occurrences.get(key, 0)
    occurrences[key] = n + 1
    return ids.stable_id(ids.SESSION, *key, n)


def _message_id(m: dict) -> str | None:
    mid = m.get("id")
    return mid if isinstance(mid, str) and mid else None


def parse(src: Source, out: EventRows) -> None:
    convs = _conversations(src)
    occurrences: dict = {}
    single_bare = len(convs) == 1 and convs[0].meta is None
    add, next_seq = out.add, out.next_seq  # every message passes through here: keep the loop lean
    for ci, conv in enumerate(convs):
        if conv.rec is not None:
            out.mark(conv.rec)
        sid = _session_id(src, conv, occurrences, single_bare)

        def err(msg: str, mi: int, field: str | None = None, _c=conv):
            if _c.records:
                return src.error(msg, _c.records[mi], field)
            path = f"{_c.path}[{mi}]"
            return src.error(msg, _c.rec, f"{path}.{field}" if field else path)

        msgs = conv.messages
        bad = next((mi for mi, m in enumerate(msgs) if not isinstance(m, dict)), None)
        if bad is not None:
            raise err(f"expected a message object, got {type(msgs[bad]).__name__}", bad)
        # timestamps: given ones carried forward; none at all (tau-bench) → synthetic
        given: list[datetime | None] = [None] * len(msgs)
        for mi, m in enumerate(msgs):
            if _TS_KEY_SET.isdisjoint(m):
                continue
            v = next((m[k] for k in _TS_KEYS if m.get(k) not in (None, "")), None)
            ts = parse_ts(v) if v is not None else None
            if v is not None and ts is None:
                raise err(f"unreadable timestamp {v!r}", mi, "timestamp")
            if ts is not None and (problem := src.time_problem(ts, v)):
                raise err(problem, mi, next(k for k in _TS_KEYS if m.get(k) not in (None, "")))
            given[mi] = ts
        last_ts = next((t for t in given if t is not None), None)
        have_ts = last_ts is not None

        for mi, m in enumerate(msgs):
            if conv.records:
                out.mark(conv.records[mi])
            role = m.get("role")
            if role not in ROLES:
                raise err(f"unknown message role {role!r}", mi, "role")
            if have_ts:
                ts = given[mi] or last_ts
                last_ts = ts
            else:
                ts = synthetic_ts(ci, next_seq(sid))  # the seq the next event of this session gets
            raw = dumps(m)
            if role == "user":
                add(sid, _message_id(m), ts, "user.message", "user", text=flatten(m.get("content")), raw=raw,
                    id_key=raw)
            elif role == "assistant":
                text = flatten(m.get("content"))
                calls = m.get("tool_calls") or []
                if not isinstance(calls, list):
                    raise err("tool_calls must be a list", mi, "tool_calls")
                if m.get("function_call"):
                    calls = [*calls, {"function": m["function_call"]}]
                mid = _message_id(m)  # the message's id goes to its first event
                part_raw = raw
                if text or not calls:
                    add(sid, mid, ts, "agent.message", "assistant", text=text, raw=raw, id_key=raw)
                    mid, part_raw = None, None
                for k, call in enumerate(calls):
                    if not isinstance(call, dict):
                        raise err("a tool call must be an object", mi, f"tool_calls[{k}]")
                    fn = call.get("function") if isinstance(call.get("function"), dict) else call
                    name = fn.get("name")
                    if not name:
                        raise err("tool call has no function name", mi, f"tool_calls[{k}].function.name")
                    tool_input = json_input(fn.get("arguments", fn.get("input")))
                    part_raw = part_raw or dumps(call)
                    if not have_ts:
                        ts = synthetic_ts(ci, next_seq(sid))
                    add(sid, mid, ts, "agent.tool_use", "assistant", tool_name=name, tool_use_id=call.get("id"),
                        tool_input=tool_input, text=tool_input, raw=part_raw, id_key=part_raw)
                    mid, part_raw = None, None
            elif role in ("system", "developer"):
                add(sid, _message_id(m), ts, "system.message", "system", text=flatten(m.get("content")), raw=raw,
                    id_key=raw)
            else:  # tool / function result
                text = flatten(m.get("content"))
                is_err = bool(m.get("is_error")) or (text or "").lstrip().startswith("Error:")
                add(sid, _message_id(m), ts, "agent.tool_result", "tool", text=text, tool_name=m.get("name"),
                    tool_use_id=m.get("tool_call_id"), is_error=is_err, raw=raw, id_key=raw)

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
