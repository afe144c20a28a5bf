"""A person's corrections: a rejected or interrupted tool call and what the person said next.

A rejection is a control signal, not a tool quirk (``failures.USER_REJECTION``); what matters is the
person's next message, which usually says what to do instead ("no, don't mock the database in these
tests"). ``corrections`` pairs each rejection with the next message the person wrote in that session
(within ``WINDOW`` events), reminders and command echoes stripped.
"""

from __future__ import annotations

import re

from dreaming.signals import failures
from dreaming.signals.patterns import NOT_PERSON_RE

WINDOW = 12
_NOT_PERSON = re.compile(NOT_PERSON_RE)
_INTERRUPT = re.compile(r"(?i)interrupted by (?:the )?user|\[request interrupted")


def person_text(text: str | None) -> str | None:
    """A person's turn without what a client inserted into it; None when nothing of the person is left."""
    cleaned = _NOT_PERSON.sub(" ", text or "").strip()
    return cleaned or None


def corrections(errors: list[dict], user_messages: list[dict], contexts: dict[str, dict]) -> list[dict]:
    by_session: dict[str, list[dict]] = {}
    for m in user_messages:
        by_session.setdefault(m["session_id"], []).append(m)
    out = []
    for e in errors:
        if e.get("failure_class") != failures.USER_REJECTION:
            continue
        sid = e["session_id"]
        nxt = next((m for m in by_session.get(sid, []) if e["seq"] < m["seq"] <= e["seq"] + WINDOW
                    and person_text(m["text"]) and not _INTERRUPT.search(m["text"] or "")), None)
        ctx = contexts.get(sid, {})
        out.append({
            "session_id": sid, "event_id": nxt["event_id"] if nxt else e["event_id"], "ts": nxt["ts"] if nxt else e["ts"],
            "kind": "interrupt" if _INTERRUPT.search(e.get("text") or "") else "rejection",
            "text": person_text(nxt["text"])[:1000] if nxt else None, "tool": e.get("failed_tool"),
            "command": e.get("failed_command"), "rejected_event_id": e.get("failed_event_id") or e["event_id"],
            "voice": ctx.get("voice", "team"), "context": ctx.get("context", "session:" + sid),
        })
    return out
