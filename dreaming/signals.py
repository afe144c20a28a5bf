"""Signals: what both curators read, extracted with DuckDB SQL over the selected sessions.

``extract_signals(lake, session_ids, policy) -> Signals``. Each field is a list of plain dicts
(documented below) so that a curator, a digest for Claude, or a test can read them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Signals:
    # one row per error event: session_id, agent_id, event_id, ts, tool_name, text, signature
    # (normalised: ids, numbers, paths and quoted values masked), and the workaround that followed:
    # workaround_event_id, workaround_ts, workaround_tool, workaround_input, workaround_text (nullable)
    errors: list[dict] = field(default_factory=list)
    # one row per preference/correction statement by a user: session_id, event_id, ts, text,
    # normalized, polarity ('always'|'never'|'prefer'|'correction'), key (slot guess, nullable)
    preferences: list[dict] = field(default_factory=list)
    # one row per session: session_id, agent_id, outcome, success (bool|None), tools (list[str]),
    # tool_events (list of {event_id, ts, tool_name})
    tool_sequences: list[dict] = field(default_factory=list)
    # one row per session: session_id, agent_id, tenant, started_at, ended_at, events, errors, outcome
    sessions: list[dict] = field(default_factory=list)
    # one row per event that carries tainted content (tool output / fetched pages): session_id,
    # event_id, taint
    tainted_events: list[dict] = field(default_factory=list)
