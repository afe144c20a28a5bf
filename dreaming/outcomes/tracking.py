"""`dreams outcomes STORE`: does the dream help? Per promoted memory, its pattern's rate before and after.

For each version on the store's head line that has a parent (a promotion, a rollback, an edit), each memory it
added or changed (a new id, or new text), and that memory's pattern (``dreaming.outcomes.patterns``): the
share of the scope's sessions that show the pattern among those started before the version became the head
and among those started after, each with its Wilson interval, and a verdict (``dreaming.outcomes.stats``).
When a version became the head: the promotion's decision time for a dream's version, else the version's
creation time. Also per day: sessions, error rate, correction rate, task success, tool calls per session;
and the scope's most recurring patterns, covered by a memory of the head or not.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

from dreaming.catalog import Catalog
from dreaming.errors import NotFound
from dreaming.history import head_lineage
from dreaming.models import Memory, iso
from dreaming.outcomes import stats
from dreaming.outcomes.patterns import SessionPatterns, direction, memory_patterns
from dreaming.outcomes.scope import ScopeData, _utc, read_scope
from dreaming.policy import Policy
from dreaming.signals import FAILURE_OUTCOMES, SUCCESS_OUTCOMES
from dreaming.stores import StoreService

TOP_PATTERNS = 10


def promotions(catalog: Catalog, store: dict) -> list[dict]:
    """The versions on the head's line after the first, oldest first: {version, parent_version, at, by,
    memories (the version's), changed (memories it added or whose text it changed)}."""
    svc = StoreService(catalog)
    versions = catalog.list_versions(store["id"])
    by_v = {v["version"]: v for v in versions}
    line = head_lineage(catalog, store["id"], versions)
    out, prev = [], None
    for v in line:
        mems = svc.read_version(store["id"], v)
        if prev is not None:
            row = by_v[v]
            by = row["created_by"] or {}
            at = row["created_at"]
            if by.get("type") == "dream":
                try:
                    d = catalog.get_dream(by.get("id"))
                    at = d.promotion.decided_at or at
                except NotFound:
                    pass
            old = {m.memory_id: m.content_sha256 for m in prev}
            changed = [m for m in mems if old.get(m.memory_id) != m.content_sha256]
            out.append({"version": v, "parent_version": row["parent_version"], "at": _utc(at), "by": by,
                        "message": row["message"], "memories": mems, "changed": changed})
        prev = mems
    return out


def _daily(data: ScopeData, sp: SessionPatterns, policy: Policy) -> list[dict]:
    """Per UTC day: sessions, the share with a tool error, with a person's correction, task success among
    the sessions with an outcome, and tool calls per session."""
    corrected = {c["session_id"] for c in data.signals.corrections}
    corrected |= {p["session_id"] for p in data.signals.preferences
                  if p.get("polarity") == "correction" and not p.get("in_task") and p.get("voice", "team") == "team"}
    per: dict[str, list[dict]] = defaultdict(list)
    for s in data.sessions:
        per[data.started[s["session_id"]].date().isoformat()].append(s)
    rows = []
    for day in sorted(per):
        ss = per[day]
        n = len(ss)
        labelled = [s for s in ss if _labelled(s.get("outcome"), policy) is not None]
        ok = sum(1 for s in labelled if _labelled(s["outcome"], policy))
        rows.append({
            "day": day, "sessions": n,
            "error_rate": round(sum(1 for s in ss if sp.failures.get(s["session_id"])) / n, 4),
            "correction_rate": round(sum(1 for s in ss if s["session_id"] in corrected) / n, 4),
            "with_outcome": len(labelled),
            "success_rate": round(ok / len(labelled), 4) if labelled else None,
            "tool_calls_per_session": round(sum(s.get("tool_calls") or 0 for s in ss) / n, 2),
            "errors_per_session": round(sum(s.get("errors") or 0 for s in ss) / n, 2),
        })
    return rows


def _labelled(outcome, policy: Policy) -> bool | None:
    """Task success from a session's outcome (an outcome event, a tau-bench reward, a SWE-bench label): True,
    False, or None when the session has no readable outcome."""
    if outcome is None:
        return None
    o = str(outcome).strip().lower()
    if o in SUCCESS_OUTCOMES:
        return True
    if o in FAILURE_OUTCOMES:
        return False
    try:
        return float(o) >= policy.success_reward
    except ValueError:
        return None


def top_patterns(data: ScopeData, sp: SessionPatterns, covering: dict[str, set[tuple]],
                 memories: list[Memory], sessions: set[str] | None = None, limit: int = TOP_PATTERNS) -> list[dict]:
    """The failures and statements that recur in the most sessions (of ``sessions``, default every session
    of the window), each with whether a memory covers it (its pattern contains the key) and which."""
    sessions = sessions if sessions is not None else {s["session_id"] for s in data.sessions}
    count: Counter = Counter()
    for sid in sessions:
        shown = set(sp.failures.get(sid, set()))
        for ks in sp.corrections.get(sid, []):
            shown |= {k for k in ks if k[0] == "stmt"}
        count.update(shown)
    path = {m.memory_id: m.path for m in memories}
    out = []
    for k, n in sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]:
        by = sorted(path[mid] for mid, keys in covering.items() if k in keys and mid in path)
        out.append({"pattern": sp.label.get(k, str(k)), "kind": "failure" if k[0] == "error" else "correction",
                    "sessions": n, "covered": bool(by), "memory": by[0] if by else None})
    return out


def workflow_memories(memories: list[Memory]) -> dict[str, set[str]]:
    """{workflow key: the sessions its memories cite}: what the lean read matches in SQL."""
    out: dict[str, set[str]] = {}
    for m in memories:
        if m.kind == "workflow" and m.key and m.key.startswith("workflow:"):
            out.setdefault(m.key, set()).update(s.session_id for s in m.sources)
    return out


def outcomes(store_ref: str, *, since: datetime | None = None, catalog: Catalog | None = None,
             policy: Policy | None = None, min_after: int = stats.MIN_AFTER, now: datetime | None = None) -> dict:
    """The outcomes report of one store (see the module docstring); plain data, JSON-ready."""
    catalog = catalog or Catalog()
    policy = policy or Policy()
    store = catalog.get_store(store_ref)
    proms = promotions(catalog, store)
    cited = {s.session_id for p in proms for m in p["changed"] for s in m.sources}
    head = StoreService(catalog).read_version(store["id"], store["head_version"])
    data = read_scope(catalog.settings, store, since=_utc(since), extra_session_ids=cited, policy=policy,
                      workflows=workflow_memories([m for p in proms for m in p["changed"]] + head))
    sp = SessionPatterns(data.signals, policy, data.workflow_shown)
    window = [s["session_id"] for s in data.sessions]
    entries = []
    for p in proms:
        pats = memory_patterns(sp, p["changed"])
        before = {s for s in window if data.started[s] < p["at"]}
        after = {s for s in window if data.started[s] >= p["at"]}
        for m in p["changed"]:
            keys = pats.get(m.memory_id)
            entry = {"version": p["version"], "promoted_at": iso(p["at"]), "memory_id": m.memory_id, "path": m.path,
                     "kind": m.kind, "direction": direction(m.kind)}
            if not keys:
                entries.append({**entry, "pattern": None, "before": None, "after": None, "verdict": None,
                                "why": "no pattern: the sessions it cites show no error, statement or sequence"})
                continue
            showing = sp.showing(keys)
            rb = stats.rate(len(showing & before), len(before))
            ra = stats.rate(len(showing & after), len(after))
            v, why = stats.verdict(rb, ra, direction(m.kind), min_after)
            entries.append({**entry, "pattern": sp.describe(keys, m), "before": rb.to_dict(), "after": ra.to_dict(),
                            "verdict": v, "why": why})
    covering = memory_patterns(sp, head)
    return {
        "store": {"id": store["id"], "name": store["name"], "scope": store["scope"],
                  "head_version": store["head_version"]},
        "since": iso(_utc(since)), "generated_at": iso(now or datetime.now(UTC)), "sessions": len(window),
        "min_after": min_after, "confidence": stats.CONFIDENCE, "interval": "wilson",
        "promotions": [{"version": p["version"], "at": iso(p["at"]), "by": p["by"], "message": p["message"],
                        "changed": len(p["changed"])} for p in proms],
        "memories": entries,
        "verdicts": dict(Counter(e["verdict"] for e in entries if e["verdict"])),
        "daily": _daily(data, sp, policy),
        "top_patterns": top_patterns(data, sp, covering, head),
    }
