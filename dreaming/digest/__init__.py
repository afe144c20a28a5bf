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

Per session the digest carries (docs/claude.md, "What is sent"): the outcome (``success`` yes/no/unknown
and the raw ``outcome`` label), the task key (``context``: trials of one task share it) and the person
(``voice``); the task (the first request); each error with its failure class, the failed call, what the
agent did next, the arguments that changed and the fix; the person's rejections, interrupts and
corrections; preference statements; the tool sequence; and the agent's concluding message. The
``contexts`` and ``corrections`` fields of ``Signals`` and the ``failure_class`` / ``fix`` / ``changed``
columns of its errors are read with defaults, so a digest is built from signals with or without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dreaming.digest.session import SessionDigest, contexts_of, session_digest, task_event
from dreaming.digest.text import (  # noqa: F401 - re-exported: the limits and helpers callers import
    MAX_CORRECTIONS,
    MAX_TASK_CHARS,
    estimate_tokens,
    fence,
    worst_taint,
)
from dreaming.safety import after_fetch
from dreaming.signals import Signals


@dataclass
class EvidenceIndex:
    """Every (session_id, event_id) the dream's signals know, with its time and taint."""

    session_ids: set[str] = field(default_factory=set)
    events: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    taint: dict[tuple[str, str], str] = field(default_factory=dict)
    # the short tag a digest shows for an event (``e1``, ``e2``…, unique in the dream) and back
    alias: dict[tuple[str, str], str] = field(default_factory=dict)
    by_alias: dict[tuple[str, str], str] = field(default_factory=dict)

    def resolve(self, session_id: str, event_id: str | None) -> str | None:
        """The event id that ``event_id`` names in ``session_id``: a digest's short tag, or the id itself."""
        if event_id is None:
            return None
        return self.by_alias.get((session_id, event_id.strip("[]")), event_id)

    def has(self, session_id: str, event_id: str | None) -> bool:
        if session_id not in self.session_ids:
            return False
        return event_id is None or (session_id, self.resolve(session_id, event_id)) in self.events

    def ts(self, session_id: str, event_id: str | None):
        return self.events.get((session_id, self.resolve(session_id, event_id))) if event_id else None

    def taint_of(self, session_id: str, event_id: str | None) -> str | None:
        return self.taint.get((session_id, self.resolve(session_id, event_id)))


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
        add(e.get("session_id"), e.get("fix_event_id"), e.get("fix_ts"))
    for p in signals.preferences:
        add(p.get("session_id"), p.get("event_id"), p.get("ts"))
    for c in getattr(signals, "corrections", None) or []:
        add(c.get("session_id"), c.get("event_id"), c.get("ts"))
        add(c.get("session_id"), c.get("rejected_event_id"), None)
    for sid, c in contexts_of(signals).items():
        m = task_event(signals, sid, c.get("first_request"))
        if m is not None:
            add(sid, m.get("event_id"), m.get("ts"))
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
    # short tags, in the dream's session order, then by event time and id: stable for the same inputs
    order = {sid: i for i, sid in enumerate(session_ids)}
    keys = sorted(idx.events, key=lambda k: (order.get(k[0], len(order)), k[0], _when(idx.events[k]), k[1]))
    for n, key in enumerate(keys, 1):
        idx.alias[key] = f"e{n}"
        idx.by_alias[(key[0], f"e{n}")] = key[1]
    return idx


def _when(ts) -> str:
    return ts.isoformat() if hasattr(ts, "isoformat") else str(ts or "")


def build_digests(signals: Signals, session_ids: list[str]) -> list[SessionDigest]:
    """One digest per input session, in the order of ``session_ids`` (sorted by the dream)."""
    idx = evidence_index(signals, session_ids)
    return [session_digest(signals, sid, idx.taint, alias=idx.alias) for sid in session_ids]


def by_context(signals: Signals, session_ids: list[str]) -> list[str]:
    """``session_ids`` with the sessions of one context (``Signals.contexts``) moved next to the first of them."""
    ctx = contexts_of(signals)
    groups: dict[str, list[str]] = {}
    for sid in session_ids:
        groups.setdefault((ctx.get(sid) or {}).get("context") or f"session:{sid}", []).append(sid)
    return [sid for group in groups.values() for sid in group]


def build_batches(
    signals: Signals, session_ids: list[str], max_tokens: int, max_sessions: int = 100
) -> list[list[SessionDigest]]:
    """Digests of ``session_ids`` in consecutive batches of at most ``max_tokens`` (estimated), in order,
    except that sessions of one context (trials of one task) follow the first of them (``by_context``), so
    that a batch can contrast the failed and the successful trials.

    Long texts repeated within a batch are shown once (see ``session_digest``); a digest that does not
    fit starts a new batch and is rendered again there, so a reference never points outside its batch.
    """
    idx = evidence_index(signals, session_ids)
    batches: list[list[SessionDigest]] = []
    cur: list[SessionDigest] = []
    seen: dict[str, str] = {}
    size = 0
    for sid in by_context(signals, session_ids):
        trial = dict(seen)
        d = session_digest(signals, sid, idx.taint, trial, idx.alias)
        if cur and (size + d.tokens > max_tokens or len(cur) >= max_sessions):
            batches.append(cur)
            cur, size, trial = [], 0, {}
            d = session_digest(signals, sid, idx.taint, trial, idx.alias)
        cur.append(d)
        seen = trial
        size += d.tokens
    if cur:
        batches.append(cur)
    return batches
