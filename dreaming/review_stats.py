"""Learning from review decisions: every decision per change, the rates per kind and reason, learned holds.

Every decision on a dream's change — by the store's review policy (``decided_by = "policy"``) or by a
person — is one row of ``change_decisions`` (store, dream, change, op, kind, decision approved|rejected,
the rule that decided or held it, the reason, who, when), written in the transaction that promotes or
rejects. ``stats`` counts them per change kind (``op:kind``), per rule and per reason
(`dreams review stats`). ``learn`` runs after a person's rejection: a kind that people rejected
``learn_after_rejections`` times in a row (counted since the policy was last edited by a person) moves
to the policy's ``learned_holds`` — it waits for a person from then on, until released with
``dreams store policy STORE --release KEY``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa

from dreaming import review_policy
from dreaming.catalog import change_decisions
from dreaming.models import Change, iso, utcnow

POLICY = "policy"  # decided_by of the policy's own decisions


def record(conn: sa.Connection, store_id: str, dream_id: str, changes: Iterable[Change], decision: str,
           decided_by: str | None, rules: dict[str, str] | None = None, reason: str | None = None) -> int:
    """One row per change but ``keep`` (it changes nothing); a later decision on a change replaces the earlier."""
    rows, now = [], utcnow()
    for c in changes:
        if c.op == "keep":
            continue
        rows.append({"store_id": store_id, "dream_id": dream_id, "change_id": c.change_id, "op": c.op,
                     "kind": review_policy.kind_key(c), "decision": decision,
                     "rule": (rules or {}).get(c.change_id), "reason": reason, "decided_by": decided_by,
                     "decided_at": now})
    if not rows:
        return 0
    t = change_decisions
    conn.execute(t.delete().where((t.c.store_id == store_id) & (t.c.dream_id == dream_id)
                                  & t.c.change_id.in_([r["change_id"] for r in rows])))
    conn.execute(t.insert(), rows)
    return len(rows)


def learn(conn: sa.Connection, catalog, store_id: str, kinds: Iterable[str]) -> list[str]:
    """Move the ``kinds`` that people rejected K times in a row to the store's learned holds; returns them."""
    pol = review_policy.load_in(conn, store_id)
    k = pol.learn_after_rejections
    if k <= 0:
        return []
    t = change_decisions
    learned = []
    for kind in sorted(set(kinds)):
        if kind in pol.learned_holds:
            continue
        q = (sa.select(t.c.decision, t.c.decided_by, t.c.decided_at)
             .where((t.c.store_id == store_id) & (t.c.kind == kind) & (t.c.decided_by != POLICY))
             .order_by(t.c.decided_at.desc()))
        if pol.edited_at is not None:
            q = q.where(t.c.decided_at >= pol.edited_at)
        streak, last = 0, None
        for decision, by, at in conn.execute(q):
            if decision != "rejected":
                break
            streak += 1
            last = last or (by, at)
        if streak >= k:
            by, at = last
            pol.learned_holds[kind] = (f"people rejected it {streak} times in a row (last by {by} on "
                                       f"{iso(at)[:10] if at else '?'}); release: dreams store policy STORE "
                                       f"--release {kind}")
            learned.append(kind)
    if learned:
        review_policy.save(catalog, store_id, pol, conn)
    return learned


def stats(catalog, store_id: str | None = None) -> dict:
    """Counts and rates of the decisions, per kind (``op:kind``), per rule and per reason (people's only)."""
    t = change_decisions
    q = sa.select(t.c.store_id, t.c.kind, t.c.decision, t.c.rule, t.c.reason, t.c.decided_by)
    if store_id is not None:
        q = q.where(t.c.store_id == store_id)
    with catalog.engine.connect() as conn:
        rows = conn.execute(q).all()

    def table(key) -> list[dict]:
        acc: dict[str, dict[str, int]] = defaultdict(lambda: {"approved": 0, "rejected": 0})
        for r in rows:
            name = key(r)
            if name is not None:
                acc[name][r.decision] += 1
        out = []
        for name, n in sorted(acc.items()):
            total = n["approved"] + n["rejected"]
            out.append({"key": name, "approved": n["approved"], "rejected": n["rejected"], "total": total,
                        "approval_rate": round(n["approved"] / total, 3) if total else None,
                        "rejection_rate": round(n["rejected"] / total, 3) if total else None})
        return out

    held: dict[str, str] = {}
    if store_id is not None:
        held = review_policy.load(catalog, store_id).learned_holds
    return {
        "store_id": store_id,
        "decisions": len(rows),
        "by_person": sum(1 for r in rows if r.decided_by != POLICY),
        "by_policy": sum(1 for r in rows if r.decided_by == POLICY),
        "per_kind": table(lambda r: r.kind),
        "per_rule": table(lambda r: r.rule or "-"),
        "per_reason": table(lambda r: (r.reason or "(no reason)") if r.decided_by != POLICY else None),
        "learned_holds": held,
    }


def decisions_of(catalog, store_id: str, dream_id: str) -> dict[str, dict]:
    """change id → its recorded decision (decision, rule, reason, decided_by, decided_at) in this dream."""
    t = change_decisions
    with catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.change_id, t.c.decision, t.c.rule, t.c.reason, t.c.decided_by,
                                      t.c.decided_at)
                            .where((t.c.store_id == store_id) & (t.c.dream_id == dream_id))).mappings().all()
    return {r["change_id"]: dict(r) for r in rows}
