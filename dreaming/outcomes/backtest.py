"""`dreams backtest --store S --split DATE`: replay history without running an agent.

The store's scope sessions started before the split are dreamt over into a scratch store that lives only in
memory: the curator the dream would use (``dreaming.curators.get_curator``, default the offline rules) gets
the same ``CurationInput`` a dream's read step builds — an empty base, the sessions before the split as input,
their signals — and its changes are applied with ``changeset.apply_changes``, as a dream's output is. Nothing
is written: not the store, not the catalog, not the lake. Then, on the sessions started at or after the split:

- a **failure** is a tool error of a session, one per session and error group (the mistakes miner's group);
- a **correction** is a statement by a person of the team (a preference sentence outside the task text, or
  the words after a rejected call), one per statement;
- either is **covered** when a scratch memory's pattern contains it (``dreaming.outcomes.patterns``: the same
  keys a dream groups by), else **new**.

The cost to load is the scratch store's text in tokens, estimated as ``ceil(characters / 4)`` (the estimate
``dreams eval`` uses; no tokenizer is installed offline). ``--every 7d``: splits every 7 days from the first
session's day, to show coverage grow as history accumulates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dreaming.catalog import Catalog
from dreaming.changeset import apply_changes, finalize
from dreaming.curators import get_curator
from dreaming.curators.base import CurationInput
from dreaming.errors import BadInput
from dreaming.evaluation.realdata import tokens
from dreaming.models import iso
from dreaming.outcomes.patterns import SessionPatterns, memory_patterns
from dreaming.outcomes.scope import ScopeData, _utc, only_sessions, read_scope
from dreaming.outcomes.tracking import top_patterns
from dreaming.policy import Policy

SCRATCH_DREAM = "drm_backtest"


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def scratch_dream(store: dict, data: ScopeData, before: list[str], split: datetime, *, curator: str = "rules",
                  policy: Policy | None = None):
    """The memories a dream over ``before`` (an empty base) would write, and its notes; nothing is recorded."""
    policy = policy or Policy()
    signals = only_sessions(data.signals, set(before))
    inp = CurationInput(dream_id=SCRATCH_DREAM, store=store, base=[], session_ids=sorted(before), signals=signals,
                        instructions=None, policy=policy, now=split, age_out=True)
    result = get_curator(curator).curate(inp)
    changes = finalize(result.changes, SCRATCH_DREAM)
    return apply_changes([], changes, now=split), result.notes


def one_split(store: dict, data: ScopeData, sp: SessionPatterns, split: datetime, *, curator: str = "rules",
              policy: Policy | None = None) -> dict:
    split = _utc(split)
    before = [s["session_id"] for s in data.sessions if data.started[s["session_id"]] < split]
    after = [s["session_id"] for s in data.sessions if data.started[s["session_id"]] >= split]
    memories, _ = scratch_dream(store, data, before, split, curator=curator, policy=policy) if before else ([], [])
    covering = memory_patterns(sp, memories)
    every = set().union(*covering.values()) if covering else set()
    fail_cov = fail_new = corr_cov = corr_new = 0
    for sid in after:
        for k in sp.failures.get(sid, ()):
            if k in every:
                fail_cov += 1
            else:
                fail_new += 1
        for ks in sp.corrections.get(sid, []):
            if ks & every:
                corr_cov += 1
            else:
                corr_new += 1
    per_memory = [{"path": m.path, "kind": m.kind, "tokens": tokens(m.content), "patterned": m.memory_id in covering}
                  for m in sorted(memories, key=lambda m: m.path)]
    return {
        "split": iso(split), "sessions_before": len(before), "sessions_after": len(after),
        "memories": len(memories), "tokens": sum(r["tokens"] for r in per_memory),
        "failures": {"covered": fail_cov, "new": fail_new, "coverage": _share(fail_cov, fail_cov + fail_new)},
        "corrections": {"covered": corr_cov, "new": corr_new, "coverage": _share(corr_cov, corr_cov + corr_new)},
        "memory_list": per_memory,
        "top_patterns": top_patterns(data, sp, covering, memories, sessions=set(after)),
    }


def rolling_splits(first: datetime, last: datetime, every: timedelta) -> list[datetime]:
    """Splits ``every`` apart up to the last session's start, counted from the first session's day (midnight
    UTC), the first one after the first session: a 7-day step from that midnight, a 30-minute step from the
    last half hour before the first session."""
    if every <= timedelta(0):
        raise BadInput("--every must be a positive duration", field="every")
    day = datetime(first.year, first.month, first.day, tzinfo=UTC)
    out, t = [], day + ((first - day) // every) * every + every
    while t <= last:
        out.append(t)
        t += every
    return out


def backtest(store_ref: str, *, split: datetime | None = None, every: timedelta | None = None,
             since: datetime | None = None, curator: str = "rules", catalog: Catalog | None = None,
             policy: Policy | None = None) -> dict:
    """The backtest report: one row per split (``split``, or rolling splits ``every``)."""
    if (split is None) == (every is None):
        raise BadInput("give --split DATE or --every DURATION (one of them)", field="split")
    from dreaming.curators import CURATORS

    if curator not in CURATORS:
        raise BadInput(f"unknown curator {curator!r}; choose one of {', '.join(sorted(CURATORS))}", field="curator")
    catalog = catalog or Catalog()
    policy = policy or Policy()
    store = catalog.get_store(store_ref)
    data = read_scope(catalog.settings, store, since=_utc(since), policy=policy)
    sp = SessionPatterns(data.signals, policy)
    if split is not None:
        splits = [_utc(split)]
    elif data.sessions:
        starts = sorted(data.started.values())
        splits = rolling_splits(starts[0], starts[-1], every)
    else:
        splits = []
    rows = [one_split(store, data, sp, t, curator=curator, policy=policy) for t in splits]
    return {"store": {"id": store["id"], "name": store["name"], "scope": store["scope"]}, "curator": curator,
            "sessions": len(data.sessions), "since": iso(_utc(since)), "token_estimate": "ceil(chars / 4)",
            "splits": rows}
