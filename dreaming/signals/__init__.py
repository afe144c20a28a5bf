"""Signals: what both curators read, extracted with DuckDB SQL over the selected sessions.

``extract_signals(con, session_ids, policy, tenant=T) -> Signals`` where ``con`` is a DuckDB
connection on which :class:`dreaming.lake.Lake` defined the ``events`` and ``sessions`` views (a
``Lake`` itself is accepted too). Sessions are selected by (tenant, session id): two tenants may
use the same session ids, and one tenant's dream never reads another's events. Each field is a
list of plain dicts (documented below) so that a curator, a digest for Claude, or a test can read
them directly.

All per-event work (error detection and classification, signature masking, pairing calls with their
results, preference statements, tool sequences, outcomes, tasks and persons) is SQL in
``dreaming.signals.queries``; shell commands are read with a real grammar (``dreaming.signals.shell``,
a DuckDB function). Python post-processes the small result: slot keys of preference statements, the fix
that followed a tool error (``dreaming.signals.fixes``) and a person's corrections
(``dreaming.signals.people``). The rules are documented in docs/curation.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from dreaming.errors import BadInput
from dreaming.policy import Policy
from dreaming.signals import failures, fixes, people, queries, shell
from dreaming.signals.patterns import (  # noqa: F401 - re-exported: the vocabulary other modules read
    FAILURE_OUTCOMES, INJECTION_RE, SHELL_TOOLS, SUCCESS_OUTCOMES,
)
from dreaming.signals.slots import SLOTS, slot_of  # noqa: F401 - re-exported


@dataclass
class Signals:
    # one row per error event: session_id, agent_id, event_id, ts, seq, type, tool_name, text, signature
    # (normalised: ids, hex, uuids, numbers, paths, urls and quoted values masked; lowercase), message (the
    # masked error line, case kept), injection (the text carries a prompt-injection phrase), taint, the call
    # that failed (failed_event_id, failed_tool, failed_command), and the workaround that followed:
    # workaround_event_id, workaround_ts, workaround_tool, workaround_input, workaround_command,
    # workaround_text (all None when no successful call followed within policy.workaround_max_gap); line (the
    # error line unmasked), failure_class (dreaming.signals.failures), failed_input, failed_seq, and the fix a
    # later call made (dreaming.signals.fixes): fix (an instruction, or None), fix_key (what the fix was, for
    # counting), changed (argument names that differ), fix_event_id, fix_ts
    errors: list[dict] = field(default_factory=list)
    # one row per preference/correction statement by a user: session_id, agent_id, event_id, ts, text,
    # normalized, polarity ('always'|'never'|'prefer'|'correction'), key (slot guess, nullable),
    # value (the preferred option for that slot, nullable), avoid (options the statement rejects),
    # injection (the message carries a prompt-injection phrase: never mined)
    preferences: list[dict] = field(default_factory=list)
    # one row per session: session_id, agent_id, outcome, success (bool|None), tools (list[str]),
    # tool_events (list of {event_id, ts, tool_name, failed}); tools are labelled ``bash:<program>`` for
    # shell tools so that sequences of one generic shell tool still say something
    tool_sequences: list[dict] = field(default_factory=list)
    # one row per session: session_id, agent_id, tenant, started_at, ended_at, events, errors, outcome
    sessions: list[dict] = field(default_factory=list)
    # one row per event that carries tainted content (tool output / fetched pages): session_id,
    # event_id, taint
    tainted_events: list[dict] = field(default_factory=list)
    # one row per user message: session_id, event_id, ts, seq, text (at most 4,000 characters); what
    # dreaming.safety reads to flag injections, also one split across two messages
    user_messages: list[dict] = field(default_factory=list)
    # one row per session: session_id, context (the task: trials of one task and re-exported copies of one
    # conversation share it), voice (who the person is: 'team' unless the data names a user or a task persona),
    # first_request, conclusion (the agent's last message), outcome, success
    contexts: list[dict] = field(default_factory=list)
    # one row per tool call of the sessions that have a tool error: session_id, seq, event_id, ts, label,
    # command, tool_input, failed (what a fix is derived from)
    calls: list[dict] = field(default_factory=list)
    # one row per shell call that runs tests (dreaming.signals.failures.TEST_RE): session_id, event_id, ts,
    # label, command, failed
    test_runs: list[dict] = field(default_factory=list)
    # one row per correction by a person: session_id, event_id, ts, kind ('rejection'|'interrupt'), text (the
    # person's next words, or None), tool, command (the rejected call), rejected_event_id, voice, context
    corrections: list[dict] = field(default_factory=list)

    def context_of(self, session_id: str) -> dict:
        idx = getattr(self, "_ctx_idx", None)
        if idx is None:
            idx = {c["session_id"]: c for c in self.contexts}
            object.__setattr__(self, "_ctx_idx", idx)
        return idx.get(session_id) or {"session_id": session_id, "context": "session:" + session_id, "voice": "team"}

    def taint_of(self, session_id: str, event_id: str | None) -> str | None:
        """The taint of one event ('tool_output'), or None when the event is not tainted."""
        idx = getattr(self, "_taint_idx", None)
        if idx is None:
            idx = {(t["session_id"], t["event_id"]): t["taint"] for t in self.tainted_events}
            object.__setattr__(self, "_taint_idx", idx)
        return idx.get((session_id, event_id))


def _selection(con: duckdb.DuckDBPyConnection, session_ids: list[str], tenant: str | None) -> pa.Table:
    """The (tenant, session_id) pairs to read. Without a tenant, each id must belong to one tenant."""
    ids_ = sorted(set(session_ids))
    if tenant is not None:
        return pa.table({"tenant": pa.array([tenant] * len(ids_), pa.string()), "session_id": pa.array(ids_, pa.string())})
    rows = con.execute(
        "SELECT DISTINCT tenant, session_id FROM sessions WHERE list_contains(?, session_id) ORDER BY ALL", [ids_]
    ).fetchall()
    owners: dict[str, list[str]] = {}
    for t, sid in rows:
        owners.setdefault(sid, []).append(t)
    shared = sorted(sid for sid, ts in owners.items() if len(ts) > 1)
    if shared:
        raise BadInput(f"session ids {', '.join(shared[:5])} exist in several tenants; name the tenant", field="tenant")
    return pa.table({"tenant": pa.array([t for t, _ in rows], pa.string()),
                     "session_id": pa.array([sid for _, sid in rows], pa.string())})


TEMPLATE_SHARE = 0.5


def _without_templates(preferences: list[dict], n_sessions: int, user_messages: list[dict]) -> list[dict]:
    """Drop sentences of the task text that most sessions open with, around task text that differs: a harness's
    prompt template (mini-swe-agent's instructions), not a person's words. A person does not type the same
    sentence into half their tasks next to different requests (a person who opens every session with just
    "always use uv" is still a person)."""
    first: dict[str, str] = {}
    for m in user_messages:
        first.setdefault(m["session_id"], m["text"] or "")
    opened: dict[str, set[str]] = {}
    for p in preferences:
        if p.get("in_task"):
            opened.setdefault(p["normalized"], set()).add(p["session_id"])
    floor = max(4, TEMPLATE_SHARE * n_sessions)
    template = {t for t, ss in opened.items() if len(ss) >= floor and len({first.get(s, "") for s in ss}) > 1}
    return [p for p in preferences if not (p.get("in_task") and p["normalized"] in template)]


def extract_signals(con, session_ids: list[str], policy: Policy | None = None, *, tenant: str | None = None) -> Signals:
    """Signals of ``tenant``'s sessions ``session_ids`` (unknown ids are simply absent from the result).

    Every dream passes its store's tenant. Without one (tests, notebooks), an id that two tenants
    use is refused rather than read from both.
    """
    policy = policy or Policy()
    if hasattr(con, "con") and not isinstance(con, duckdb.DuckDBPyConnection):  # a Lake
        con = con.con
    shell.register(con)
    suffix = uuid.uuid4().hex[:10]
    sel, ev, uses = f"_sig_sel_{suffix}", f"_sig_ev_{suffix}", f"_sig_uses_{suffix}"
    con.register(sel, _selection(con, session_ids, tenant))
    try:
        queries.prepare(con, sel, ev)
        queries.uses(con, ev, uses)
        errors = queries.errors(con, ev, uses, policy.workaround_max_gap)
        with_tool_errors = {e["session_id"] for e in errors if e["failure_class"] == failures.TOOL_ERROR}
        calls = queries.calls(con, uses, sorted(with_tool_errors))
        contexts = queries.contexts(con, ev)
        test_runs = queries.test_runs(con, uses)
        preferences = queries.preferences(con, ev, policy.max_preference_chars)
        sessions = queries.sessions(con, sel)
        tool_sequences = queries.tool_sequences(con, ev, uses, policy.success_reward)
        tainted = queries.tainted(con, ev)
        user_messages = queries.user_messages(con, ev)
    finally:
        for t in (ev, uses):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        con.unregister(sel)
    success = {t["session_id"]: t["success"] for t in tool_sequences}
    by_session = {c["session_id"]: c for c in contexts}
    for c in contexts:
        c["success"] = c.pop("labelled_success") if c.get("labelled_success") is not None else success.get(c["session_id"])
    preferences = _without_templates(preferences, len(contexts), user_messages)
    for p in preferences:
        p.update(slot_of(p["normalized"]))
        ctx = by_session.get(p["session_id"], {})
        p["voice"], p["context"] = ctx.get("voice", "team"), ctx.get("context", "session:" + p["session_id"])
    fixes.annotate(errors, calls)
    return Signals(errors=errors, preferences=preferences, tool_sequences=tool_sequences, sessions=sessions,
                   tainted_events=tainted, user_messages=user_messages, contexts=contexts, calls=calls,
                   test_runs=test_runs,
                   corrections=people.corrections(errors, user_messages, by_session))
