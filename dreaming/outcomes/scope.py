"""Reading a store's scope from the lake for `outcomes` and `backtest`: its sessions and their signals.

Only the store's sessions are read, through the catalog's session index (``Lake.sessions`` then
``Lake.scoped``): never the whole lake. The signals are the dream's own (``extract_signals``), so a pattern
is found exactly where a dream finds it; `outcomes` asks for the pattern rows only (``workflows=``: the lean
read of ``dreaming.outcomes.keys``, the same SQL over only the events and columns the patterns need).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from dreaming.lake import Lake
from dreaming.outcomes.keys import pattern_signals
from dreaming.policy import Policy
from dreaming.settings import Settings
from dreaming.signals import Signals, extract_signals
from dreaming.stores import Scope


@dataclass
class ScopeData:
    sessions: list[dict]  # the scope's sessions in the window, oldest first
    signals: Signals  # their signals, and those of the extra sessions asked for (memories' sources)
    tenant: str
    started: dict[str, datetime] = field(default_factory=dict)  # session id -> start (UTC)
    workflow_shown: dict[str, set[str]] | None = None  # the lean read: workflow key -> sessions that show it


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC))


def read_scope(settings: Settings, store: dict, *, since: datetime | None = None, until: datetime | None = None,
               extra_session_ids: set[str] | None = None, policy: Policy | None = None,
               workflows: dict[str, set[str]] | None = None) -> ScopeData:
    """The sessions of ``store``'s scope started in [since, until) and their signals; ``extra_session_ids``
    (sessions a memory cites, maybe before ``since``) are read for their signals too. With ``workflows``
    ({workflow key: the sessions its memory cites}, maybe empty) only the pattern rows are read
    (``keys.pattern_signals``) and ``workflow_shown`` says which sessions show each workflow key."""
    scope = Scope.parse(store["scope"])
    with Lake(settings) as lake:
        sessions = lake.sessions(tenant=scope.tenant, agent=scope.agent, since=since, until=until)
        sessions = [s for s in sessions if not scope.agent or s.get("agent_id") == scope.agent]
        wanted = sorted({s["session_id"] for s in sessions} | set(extra_session_ids or ()))
        if not wanted:
            return ScopeData([], Signals(), scope.tenant)
        with lake.scoped(wanted, tenant=scope.tenant) as sc:
            if workflows is None:
                signals, shown = extract_signals(sc, wanted, policy or Policy(), tenant=scope.tenant), None
            else:
                signals, shown = pattern_signals(sc, wanted, policy or Policy(), tenant=scope.tenant,
                                                 workflows=workflows)
    started = {s["session_id"]: _utc(s["started_at"]) for s in sessions}
    return ScopeData(sessions, signals, scope.tenant, started, shown)


def only_sessions(signals: Signals, keep: set[str]) -> Signals:
    """The part of ``signals`` about the sessions ``keep`` (every field is rows keyed by session)."""
    return Signals(**{f.name: [r for r in getattr(signals, f.name) if r.get("session_id") in keep]
                      for f in fields(Signals)})
