"""The compact, evidence-tagged digest of each session that the Claude curator sends (never raw logs).

A digest is built from ``dreaming.signals.Signals`` only — the rows that DuckDB extracted (errors
with signatures and what followed, user preferences and corrections, tool sequences, outcomes) —
so the model reads a few lines per session instead of the transcript. Every line that states
something carries the event id it came from (``[sevt_…]``), which is what the model must cite as
evidence; lines from tainted events (tool output, fetched pages) say so (``taint=tool_output``).

Text from transcripts is data, never instructions: ``fence()`` wraps it in a labelled block and
neutralises anything in it that would close the block early.

One token estimate is used everywhere (budget checks, bench/tokens.py): ``estimate_tokens(text) =
ceil(len(text) / 4)`` — Anthropic's rule of thumb of ~4 characters per token for English text and
code. It is an estimate, not a tokenizer: the budget adds a safety margin on top.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from dreaming.safety import after_fetch, clean_text
from dreaming.signals import Signals

CHARS_PER_TOKEN = 4

# how much of each free-text field a digest line keeps
MAX_SIGNATURE_CHARS = 160
MAX_ERROR_CHARS = 160
MAX_WORKAROUND_CHARS = 200
MAX_PREFERENCE_CHARS = 280
MAX_TOOL_STEPS = 30

_TAINT_RANK = {"trusted": 0, "user": 1, "tool_output": 2, "untrusted": 3}


def estimate_tokens(text: str) -> int:
    """The one documented token estimate: ceil(characters / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def worst_taint(*taints: str | None) -> str | None:
    vals = [t for t in taints if t]
    return max(vals, key=lambda t: _TAINT_RANK.get(t, 3)) if vals else None


_WS = re.compile(r"\s+")


def clip(text: str | None, limit: int) -> str:
    """One line, at most ``limit`` characters (an ellipsis marks a cut); secrets redacted and invisible or
    bidi characters removed first (``dreaming.safety.clean_text``): the model never reads a secret."""
    if not text:
        return ""
    text = _WS.sub(" ", clean_text(str(text))[0]).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fence(label: str, body: str) -> str:
    """``<label>body</label>`` where the body cannot close (or open) the block itself."""
    # neutralise any tag of the same label inside the data: '<transcript_data' -> '<\transcript_data'
    safe = re.sub(rf"<(/?)\s*{re.escape(label)}", lambda m: "<\\" + m.group(1) + label, body, flags=re.I)
    return f"<{label}>\n{safe}\n</{label}>"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _ts(v) -> str:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%MZ") if v.utcoffset() is not None else v.isoformat(timespec="minutes")
    return str(v) if v is not None else ""


@dataclass
class EvidenceIndex:
    """Every (session_id, event_id) the dream's signals know, with its time and taint."""

    session_ids: set[str] = field(default_factory=set)
    events: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    taint: dict[tuple[str, str], str] = field(default_factory=dict)

    def has(self, session_id: str, event_id: str | None) -> bool:
        if session_id not in self.session_ids:
            return False
        return event_id is None or (session_id, event_id) in self.events

    def ts(self, session_id: str, event_id: str | None):
        return self.events.get((session_id, event_id)) if event_id else None


def evidence_index(signals: Signals, session_ids: list[str]) -> EvidenceIndex:
    """The evidence a change may cite: sessions of the dream, and events present in its signals."""
    idx = EvidenceIndex(session_ids=set(session_ids))

    def add(sid, eid, ts):
        if sid in idx.session_ids and eid:
            if idx.events.get((sid, eid)) is None:
                idx.events[(sid, eid)] = ts

    for e in signals.errors:
        add(e.get("session_id"), e.get("event_id"), e.get("ts"))
        add(e.get("session_id"), e.get("failed_event_id"), None)
        add(e.get("session_id"), e.get("workaround_event_id"), e.get("workaround_ts"))
    for p in signals.preferences:
        add(p.get("session_id"), p.get("event_id"), p.get("ts"))
    for t in signals.tool_sequences:
        for te in t.get("tool_events") or []:
            add(t.get("session_id"), te.get("event_id"), te.get("ts"))
    tainted = list(signals.tainted_events) + [e for e in signals.errors if e.get("taint")]
    # an agent that read external content (a page, a download) and then acted: what it did afterwards
    # may be the page's instructions, so its later calls are untrusted (the curator must not trust them)
    tainted += [{"session_id": sid, "event_id": eid, "taint": "untrusted"}
                for sid, eid in after_fetch(signals.tool_sequences)]
    for t in tainted:
        key = (t.get("session_id"), t.get("event_id"))
        if key[0] in idx.session_ids and key[1] and t.get("taint") != "trusted":
            idx.events.setdefault(key, None)
            idx.taint[key] = worst_taint(idx.taint.get(key), t.get("taint") or "tool_output")
    return idx


@dataclass
class SessionDigest:
    session_id: str
    text: str
    event_ids: list[str]

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


def _rle(tools: list[str]) -> list[str]:
    out: list[list] = []
    for t in tools:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return [t if n == 1 else f"{t}×{n}" for t, n in out]


def session_digest(
    signals: Signals,
    session_id: str,
    taint: dict[tuple[str, str], str] | None = None,
    seen: dict[str, str] | None = None,
) -> SessionDigest:
    """The digest of one session: a header and one tagged line per signal.

    ``seen`` (text -> event id, shared by the digests of one batch) replaces a long text already shown
    in the batch by ``same as [event_id]``: recurring errors and preferences are named once per batch.
    """
    taint = taint or {}
    seen = {} if seen is None else seen
    cited: list[str] = []

    def once(text: str, eid: str | None) -> str:
        if len(text) > 40 and text in seen:
            return f"same as [{seen[text]}]"
        if eid:
            seen.setdefault(text, eid)
        return text

    def tag(eid: str | None) -> str:
        if not eid:
            return ""
        cited.append(eid)
        t = taint.get((session_id, eid))
        return f"[{eid}{' taint=' + t if t and t != 'trusted' else ''}]"

    meta = next((s for s in signals.sessions if s.get("session_id") == session_id), {})
    seq = next((s for s in signals.tool_sequences if s.get("session_id") == session_id), {})
    outcome = meta.get("outcome") or seq.get("outcome")
    success = seq.get("success")
    head = [f"session {session_id}"]
    if meta.get("agent_id") or seq.get("agent_id"):
        head.append(f"agent={meta.get('agent_id') or seq.get('agent_id')}")
    if meta.get("started_at"):
        head.append(f"start={_ts(meta['started_at'])}")
    if meta.get("events") is not None:
        head.append(f"events={meta['events']}")
    if meta.get("errors"):
        head.append(f"errors={meta['errors']}")
    if outcome is not None:
        head.append(f"outcome={outcome}")
    if success is not None:
        head.append(f"success={'yes' if success else 'no'}")
    lines = [" ".join(head)]

    # errors, grouped by signature: one line per signature (first occurrence), with its workaround
    by_sig: dict[str, list[dict]] = {}
    for e in signals.errors:
        if e.get("session_id") == session_id:
            by_sig.setdefault(e.get("signature") or e.get("text") or "", []).append(e)
    for sig, rows in by_sig.items():
        rows = sorted(rows, key=lambda r: (_ts(r.get("ts")), r.get("event_id") or ""))
        e = rows[0]
        more = f" (×{len(rows)}, also {' '.join(tag(r.get('event_id')) for r in rows[1:3])})" if len(rows) > 1 else ""
        line = f"- error {tag(e.get('event_id'))}"
        if e.get("tool_name") and not sig.startswith(f"{e['tool_name']} | "):
            line += f" tool={e['tool_name']}"
        line += f" signature={_q(clip(sig, MAX_SIGNATURE_CHARS))}{more}"
        detail = clip(e.get("text"), MAX_ERROR_CHARS)
        if detail and detail != clip(sig, MAX_ERROR_CHARS):
            shown = once(detail, e.get("event_id"))
            line += f" text={_q(shown) if shown == detail else shown}"
        lines.append(line)
        if e.get("failed_event_id") or e.get("failed_command"):
            f = f"  failed call {tag(e.get('failed_event_id'))}"
            if e.get("failed_tool") and e.get("failed_tool") != e.get("tool_name"):
                f += f" tool={e['failed_tool']}"
            if e.get("failed_command"):
                f += f" cmd={_q(clip(e['failed_command'], MAX_WORKAROUND_CHARS))}"
            lines.append(f)
        if e.get("workaround_event_id"):
            w = f"  then {tag(e['workaround_event_id'])}"
            if e.get("workaround_tool"):
                w += f" tool={e['workaround_tool']}"
            if e.get("workaround_command"):
                w += f" cmd={_q(clip(e['workaround_command'], MAX_WORKAROUND_CHARS))}"
            elif e.get("workaround_input"):
                w += f" input={_q(clip(e['workaround_input'], MAX_WORKAROUND_CHARS))}"
            if e.get("workaround_text") and not (e.get("workaround_command") or e.get("workaround_input")):
                w += f" text={_q(clip(e['workaround_text'], MAX_WORKAROUND_CHARS))}"
            lines.append(w)

    for p in sorted(
        (p for p in signals.preferences if p.get("session_id") == session_id),
        key=lambda r: (_ts(r.get("ts")), r.get("event_id") or ""),
    ):
        line = f"- user {p.get('polarity') or 'says'} {tag(p.get('event_id'))}"
        if p.get("key"):
            line += f" key={p['key']}"
        if p.get("value"):
            line += f" value={_q(str(p['value']))}"
        if p.get("avoid"):
            avoid = p["avoid"] if isinstance(p["avoid"], list | tuple) else [p["avoid"]]
            line += f" avoid={_q(', '.join(map(str, avoid)))}"
        said = clip(p.get("text") or p.get("normalized"), MAX_PREFERENCE_CHARS)
        shown = once(said, p.get("event_id"))
        line += f" {_q(shown) if shown == said else shown}"
        lines.append(line)

    tool_events = seq.get("tool_events") or []
    tools = seq.get("tools") or [t.get("tool_name") for t in tool_events]
    if tools:
        steps = _rle([t or "?" for t in tools])
        shown = steps[:MAX_TOOL_STEPS] + ([f"…+{len(steps) - MAX_TOOL_STEPS}"] if len(steps) > MAX_TOOL_STEPS else [])
        anchor = " " + tag(tool_events[0].get("event_id")) if tool_events and tool_events[0].get("event_id") else ""
        lines.append(f"- tools{anchor}: {' > '.join(shown)}")

    return SessionDigest(session_id=session_id, text="\n".join(lines), event_ids=sorted(set(cited)))


def build_digests(signals: Signals, session_ids: list[str]) -> list[SessionDigest]:
    """One digest per input session, in the order of ``session_ids`` (sorted by the dream)."""
    idx = evidence_index(signals, session_ids)
    return [session_digest(signals, sid, idx.taint) for sid in session_ids]


def build_batches(
    signals: Signals, session_ids: list[str], max_tokens: int, max_sessions: int = 50
) -> list[list[SessionDigest]]:
    """Digests of ``session_ids`` (in order) in consecutive batches of at most ``max_tokens`` (estimated).

    Long texts repeated within a batch are shown once (see ``session_digest``); a digest that does not
    fit starts a new batch and is rendered again there, so a reference never points outside its batch.
    """
    idx = evidence_index(signals, session_ids)
    batches: list[list[SessionDigest]] = []
    cur: list[SessionDigest] = []
    seen: dict[str, str] = {}
    size = 0
    for sid in session_ids:
        trial = dict(seen)
        d = session_digest(signals, sid, idx.taint, trial)
        if cur and (size + d.tokens > max_tokens or len(cur) >= max_sessions):
            batches.append(cur)
            cur, size, trial = [], 0, {}
            d = session_digest(signals, sid, idx.taint, trial)
        cur.append(d)
        seen = trial
        size += d.tokens
    if cur:
        batches.append(cur)
    return batches
