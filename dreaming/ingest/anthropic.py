"""Anthropic Managed Agents session events (notes/dreams-api.md §3.3).

Accepted shapes: a JSON array of events, a ``{"data": [...], "next_page": ...}`` page as
``client.beta.sessions.events.list`` returns it, or JSONL (one event, or one page, per line).

- ``event_id`` is the event's ``id`` (``sevt_…``); ``ts`` is ``processed_at``. An event without
  either is an error naming file and line (queued user events have ``processed_at: null`` and are
  not part of a transcript yet). Stream-only ``event_start`` / ``event_delta`` are skipped.
- Session id: the event's ``session_id``, else the page's ``session_id`` / ``session.id``, else the
  file name without its suffix (``events.list`` does not repeat the session id in each event) —
  reported as a ``repaired`` line. A ``session_id`` that is present but not a non-empty string, or
  a file where some events have a session id and others have none, is refused (naming the line).
- ``processed_at`` outside the plausible range (settings ``min_event_time`` / ``max_future``) is
  refused, naming line and field.
- Every documented type maps (see ``_fields``); unknown types are kept with their type as given,
  the role from their prefix and their ``content`` flattened; ``raw`` always holds the event.
"""

from __future__ import annotations

from typing import Any

from dreaming.ingest.common import EventRows, Source, dumps, flatten, json_input, parse_ts

FORMAT = "anthropic"

STREAM_ONLY = frozenset({"event_start", "event_delta"})

_TOOL_ROLE = frozenset(
    {"agent.tool_result", "agent.mcp_tool_result", "user.tool_result", "user.custom_tool_result"}
)
_PREFIX_ROLE = {"user": "user", "agent": "assistant", "session": "system", "span": "system", "system": "system"}


def role_of(event_type: str) -> str | None:
    if event_type in _TOOL_ROLE:
        return "tool"
    return _PREFIX_ROLE.get(event_type.split(".", 1)[0])


def looks_like(obj: Any) -> bool:
    """Sniff: an event object (dotted ``type`` plus ``id``/``processed_at``) or an events page."""
    if not isinstance(obj, dict):
        return False
    t = obj.get("type")
    if isinstance(t, str) and ("." in t or t in STREAM_ONLY) and ("processed_at" in obj or "id" in obj):
        return True
    data = obj.get("data")
    if isinstance(data, list) and "type" not in obj:
        return not data or looks_like(data[0])
    return False


def _fields(ev: dict) -> dict:
    """Schema columns (besides ids/ts/type/role) for one event."""
    t = ev["type"]
    out: dict[str, Any] = {}
    if t in ("agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use"):
        out["tool_name"] = ev.get("name")
        out["tool_use_id"] = ev.get("id")
        out["tool_input"] = json_input(ev.get("input"))
        out["text"] = out["tool_input"]
    elif t in ("agent.tool_result", "user.tool_result"):
        out["tool_use_id"] = ev.get("tool_use_id")
        out["text"] = flatten(ev.get("content"))
        out["is_error"] = bool(ev.get("is_error"))
    elif t == "agent.mcp_tool_result":
        out["tool_use_id"] = ev.get("mcp_tool_use_id")
        out["text"] = flatten(ev.get("content"))
        out["is_error"] = bool(ev.get("is_error"))
    elif t == "user.custom_tool_result":
        out["tool_use_id"] = ev.get("custom_tool_use_id")
        out["text"] = flatten(ev.get("content"))
        out["is_error"] = bool(ev.get("is_error"))
    elif t == "user.tool_confirmation":
        out["tool_use_id"] = ev.get("tool_use_id")
        out["text"] = " ".join(str(x) for x in (ev.get("result"), ev.get("deny_message")) if x)
    elif t == "user.define_outcome":
        rubric = ev.get("rubric")
        rubric_text = rubric.get("content") if isinstance(rubric, dict) else rubric
        out["text"] = "\n\n".join(str(x) for x in (ev.get("description"), rubric_text) if x)
    elif t == "session.error":
        err = ev.get("error") or {}
        if isinstance(err, dict):
            out["text"] = ": ".join(str(x) for x in (err.get("type"), err.get("message")) if x)
        else:
            out["text"] = str(err)
        out["is_error"] = True
    elif t in ("session.status_idle", "session.thread_status_idle"):
        reason = ev.get("stop_reason")
        out["text"] = reason.get("type") if isinstance(reason, dict) else reason
    elif t == "span.model_request_end":
        out["is_error"] = bool(ev.get("is_error"))
    elif t in ("span.outcome_evaluation_start", "span.outcome_evaluation_ongoing"):
        out["text"] = f"iteration {ev.get('iteration')}" if ev.get("iteration") is not None else None
    elif t == "span.outcome_evaluation_end":
        result = ev.get("result")
        out["outcome"] = None if result is None else str(result)
        out["text"] = ev.get("explanation")
    elif t == "session.thread_created":
        out["text"] = ev.get("agent_name")
    else:  # messages, thread messages, unknown types: whatever content they carry
        if "content" in ev:
            out["text"] = flatten(ev.get("content"))
        elif isinstance(ev.get("text"), str):
            out["text"] = ev["text"]
        if "is_error" in ev:
            out["is_error"] = bool(ev.get("is_error"))
    return out


def _iter_events(src: Source):
    """(event, record, field path, page session id) for every event of the file."""
    for rec in src.records:
        obj = rec.obj
        if isinstance(obj, dict) and isinstance(obj.get("data"), list) and "type" not in obj:
            page_sid = _usable_sid(src, obj, "session_id", rec, "session_id")
            if page_sid is None and isinstance(obj.get("session"), dict):
                page_sid = _usable_sid(src, obj["session"], "id", rec, "session.id")
            if not obj["data"]:
                src.ignore("events page without events")
            for i, ev in enumerate(obj["data"]):
                yield ev, rec, f"data[{i}]", page_sid
        else:
            yield obj, rec, None, None


def _usable_sid(src: Source, holder: dict, key: str, rec, field: str):
    """``holder[key]`` when it is a usable session id, None when absent; BadInput when unusable."""
    v = holder.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise src.error(f"session_id must be a non-empty string, got {v!r:.60}", rec, field)
    return v


def parse(src: Source, out: EventRows) -> None:
    named = 0  # events with a session id (their own or their page's)
    unnamed: list = []  # records of events without one
    for ev, rec, path, page_sid in _iter_events(src):
        out.mark(rec)
        where = (lambda f, _p=path: f"{_p}.{f}" if _p else f)  # noqa: E731
        if not isinstance(ev, dict):
            raise src.error(f"expected an event object, got {type(ev).__name__}", rec, path)
        t = ev.get("type")
        if not isinstance(t, str) or not t:
            raise src.error("event has no type", rec, where("type"))
        if t in STREAM_ONLY:
            src.ignore(f"stream-only {t}")
            continue
        eid = ev.get("id")
        if not eid or not isinstance(eid, str):
            raise src.error(f"{t} event has no id (session events need an id)", rec, where("id"))
        ts = parse_ts(ev.get("processed_at"))
        if ts is None:
            what = "no" if ev.get("processed_at") in (None, "") else "an unreadable"
            raise src.error(f"{t} event {eid} has {what} processed_at timestamp", rec, where("processed_at"))
        src.check_time(ts, ev.get("processed_at"), rec, where("processed_at"))
        sid = _usable_sid(src, ev, "session_id", rec, where("session_id")) or page_sid
        if sid is None:
            if named:
                raise src.error(f"{t} event {eid} has no session_id while earlier events of this file have one",
                                rec, where("session_id"))
            unnamed.append((rec, where("session_id")))
            sid = src.stem
        else:
            named += 1
            if unnamed:
                r0, f0 = unnamed[0]
                raise src.error("event has no session_id while later events of this file have one", r0, f0)
        raw = rec.raw if (rec.raw is not None and path is None) else dumps(ev)
        f = _fields(ev)
        out.add(
            sid,
            eid,
            ts,
            t,
            role_of(t),
            text=f.get("text"),
            tool_name=f.get("tool_name"),
            tool_use_id=f.get("tool_use_id"),
            tool_input=f.get("tool_input"),
            is_error=f.get("is_error", False),
            outcome=f.get("outcome"),
            raw=raw,
        )
    if unnamed:
        r0, f0 = unnamed[0]
        src.repair(r0, f0, f"no session_id in this file's {len(unnamed)} events: they form one session named "
                           f"after the file, {src.stem!r}", len(unnamed))
