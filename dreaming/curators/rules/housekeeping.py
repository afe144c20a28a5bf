"""Housekeeping of the base store: redact, prune expired, supersede on a key, merge duplicates, prune stale."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from dreaming.curators.rules.common import _clean, _order_time, _worst, event_time
from dreaming.curators.rules.similarity import _Fp, cluster_duplicates, near_duplicate, norm_text
from dreaming.models import Change, Memory, merge_sources
from dreaming.redaction import redact

# -- housekeeping --
def redact_base(run) -> None:
    """A stored memory that holds a secret (written by hand, or before redaction existed) is updated
    to its redacted content: a version a dream writes never carries a secret."""
    for m in run.live():
        text, kinds = redact(m.content)
        if kinds:
            run.changes.append(Change(
                op="update", memory_id=m.memory_id, path=m.path, kind=m.kind, key=m.key, before=m.content,
                after=text, reason=f"a secret was redacted ({', '.join(kinds)})",
                evidence=run._mem_evidence(m), support=m.support, confidence=m.confidence, taint=m.taint,
            ))

def prune_expired(run) -> None:
    if not run.inp.age_out:
        return
    for m in run.live():
        if m.valid_until is not None and m.valid_until < run.now and not m.pinned:
            run.removed.add(m.memory_id)
            run.changes.append(Change(
                op="prune", memory_id=m.memory_id, path=m.path, kind=m.kind, key=m.key, before=m.content,
                reason=f"expired: valid_until {m.valid_until.isoformat()} is before {run.now.isoformat()}",
                evidence=run._mem_evidence(m), confidence=m.confidence, support=m.support,
            ))

def supersede_by_key(run) -> None:
    groups: dict[str, list[Memory]] = defaultdict(list)
    for m in run.live():
        if m.key:
            groups[m.key].append(m)
    for key in sorted(groups):
        mems = sorted(groups[key], key=_order_time, reverse=True)
        if len(mems) < 2:
            continue
        winner, wfp = mems[0], _Fp(mems[0].content)
        dupes = []
        for loser in mems[1:]:
            if near_duplicate(wfp, _Fp(loser.content), run.policy) is not None:
                dupes.append(loser)  # same value: the merge step folds it into the winner
                continue
            if loser.pinned:
                run.notes.append(f"{loser.path}: contradicted by {winner.path} on key {key} but pinned; kept")
                continue
            run.removed.add(loser.memory_id)
            wt, lt = event_time(winner), event_time(loser)
            run.changes.append(Change(
                op="supersede", memory_id=loser.memory_id, superseded_by=winner.memory_id, path=loser.path,
                kind=loser.kind, key=key, before=loser.content, after=None,
                reason=(f"contradicted on key {key} by {winner.path} ({_clean(winner.content, 80)!r}), "
                        f"whose evidence is newer ({wt.isoformat() if wt else 'n/a'} > "
                        f"{lt.isoformat() if lt else 'n/a'}): latest value by event time wins"),
                evidence=run._mem_evidence(winner, loser), confidence=winner.confidence, support=loser.support,
            ))
        if dupes:
            _merge(run, [winner, *dupes], 1.0, f"same key {key} and same value")

def merge_duplicates(run) -> None:
    mems = run.live()
    if len(mems) < 2:
        return
    groups = cluster_duplicates([m.content for m in mems], run.policy, [m.key for m in mems])
    for idx, score in groups:
        group = [mems[i] for i in idx]
        exact = len({norm_text(m.content) for m in group}) == 1
        _merge(run, group, score, "exact duplicate (same normalised text)" if exact else
                    f"near duplicate (similarity {score:.2f})")

def _merge(run, group: list[Memory], score: float, why: str) -> None:
    group = [m for m in group if run._alive(m.memory_id) == m.memory_id]
    if len(group) < 2:
        return
    survivor = sorted(group, key=lambda m: (not m.pinned, -m.support, -(_order_time(m)[0].timestamp()),
                                            -len(m.content), m.memory_id))[0]
    losers = sorted(m.memory_id for m in group if m is not survivor)
    for mid in losers:
        run.removed.add(mid)
        run.redirect[mid] = survivor.memory_id
    union = merge_sources(*(m.sources for m in group))
    run.changes.append(Change(
        op="merge", memory_id=survivor.memory_id, merged_ids=losers, path=survivor.path, kind=survivor.kind,
        key=survivor.key or next((m.key for m in group if m.key), None), before=survivor.content,
        after=survivor.content,
        reason=f"{why}: {len(losers)} entr{'y' if len(losers) == 1 else 'ies'} folded into {survivor.path} "
               f"({', '.join(run.by_id[i].path for i in losers)})",
        evidence=run._mem_evidence(*group), support=len({s.session_id for s in union}) or survivor.support,
        confidence=max(m.confidence for m in group), taint=_worst(*(m.taint for m in group)),
    ))

def prune_stale(run) -> None:
    if run.policy.stale_after_days <= 0 or not run.inp.age_out:
        return
    cutoff = run.now - timedelta(days=run.policy.stale_after_days)
    for m in run.live():
        if m.pinned or m.memory_id in run.touched or m.memory_id in run.redirect.values():
            continue
        t = event_time(m)
        if t is None:
            if not run.policy.prune_unsourced:
                continue
            t = m.updated_at or m.created_at
        if t is None or t >= cutoff:
            continue
        run.removed.add(m.memory_id)
        run.changes.append(Change(
            op="prune", memory_id=m.memory_id, path=m.path, kind=m.kind, key=m.key, before=m.content,
            reason=f"stale: no supporting event since {t.isoformat()} (more than "
                   f"{run.policy.stale_after_days} days before {run.now.isoformat()})",
            evidence=run._mem_evidence(m), confidence=m.confidence, support=m.support,
        ))
