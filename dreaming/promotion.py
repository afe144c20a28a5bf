"""Review and promotion: approve, reject, promote (compare-and-swap). History and rollback: dreaming.history.

Promotion moves a store's head inside ONE catalog transaction (``Catalog.tx`` + ``cas_head``), after
every file it needs is already in place, so a crash at any point leaves the head on a complete
version or where it was:

- ``update_existing``: the dream's store head moves ``base_version → candidate``; if the head moved
  since the dream read it, the promotion ends ``conflict`` and nothing else changes.
- ``create_new``: a new store forked from the input (``forked_from`` lineage) whose version 1 is the
  candidate content; the input store is untouched.

The same transaction marks the dream's sessions as dreamt over — for the store whose lineage now
holds what the dream learnt: the dream's own store (``update_existing``), or the fork
(``create_new``; the fork also inherits the input store's watermark up to the base version, and the
input store, which did not change, keeps those sessions as new). A dream that is never promoted
(killed, conflict, gate failure, rejection) consumes nothing. Changes a person rejects (all of them,
or those left out of a partial acceptance) are fingerprinted in the decision's transaction
(dreaming.rejections) so that later dreams, which read those sessions again, do not re-propose them.

Partial acceptance builds a new candidate from the base plus only the accepted changes, gates it
again (mode ``review``), writes it as a new version and promotes that.

**Per change in automatic mode** (``promote_auto``, what ``promote(…, "auto")`` does for a dream nobody
decided yet): the store's review policy (``dreaming.review_policy``) gives every change a verdict. The
routine part is built exactly like a partial acceptance (base + those changes), gated in ``auto`` mode
and promoted at once by the same compare-and-swap, as a new head version; the dream stays
``awaiting_approval`` for the rest, with ``promotion.promoted_version`` (and ``accepted_change_ids``)
saying what is already in. A person's later approval (all of the rest, or ``--change`` some) applies
the accepted rest on top of that version, gates it in ``review`` mode and moves the head from it by
compare-and-swap; a rejection rejects only the rest. Every verdict is written to
``dreams/<id>/review.json`` (rule, detail, whether it was rejected before), every decision per change
to ``change_decisions`` (``dreaming.review_stats``). Decisions are written to a
NEW file ``changeset.reviewed.parquet``; the original changeset is never edited.

This module never imports Prefect: ``review()`` takes a ``resume`` callable so that the CLI can hand
a paused flow run its approval instead of promoting behind the flow's back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dreaming import ids, rejections, review_policy, review_stats
from dreaming.review_surface import held_rules as _held_rules
from dreaming.review_surface import write_review as _write_review
from dreaming.atomic import write_parquet_atomic
from dreaming.catalog import Catalog, store_versions
from dreaming.chaos import crash_point
from dreaming.catalog import stores as stores_table
from dreaming.changeset import apply_changes, read_changeset, write_changeset
from dreaming.errors import BadInput, Conflict, InvalidState, NotFound
from dreaming.models import Change, Dream, Memory, memories_to_table, utcnow
from dreaming.stores import StoreService, check_store_content, version_relpath
from dreaming import notifications  # webhooks on the events below (issue 17)

PROMOTABLE = ("not_requested", "awaiting_approval")
AUTO = "auto"  # decided_by of automatic mode
Resumer = Callable[[str, dict], bool]
"""``resume(flow_run_id, run_input) -> bool``: True if it resumed a PAUSED flow run, else False."""


def changeset_path(catalog: Catalog, dream_id: str, reviewed: bool = False) -> Path:
    name = "changeset.reviewed.parquet" if reviewed else "changeset.parquet"
    return catalog.settings.dreams_dir / dream_id / name


def _check_promotable(d: Dream, action: str = "promote") -> None:
    if d.status != "completed" or d.candidate_version is None:
        raise InvalidState(f"cannot {action} dream {d.id}: it is {d.status}; only completed dreams with a candidate "
                           "version can be promoted")
    if d.promotion.state not in PROMOTABLE:
        extra = f" ({d.promotion.reason})" if d.promotion.reason else ""
        raise InvalidState(f"cannot {action} dream {d.id}: its promotion is {d.promotion.state}{extra}, "
                           "not awaiting approval")


def _load_changes(catalog: Catalog, d: Dream) -> list[Change]:
    path = changeset_path(catalog, d.id)
    if not path.exists():
        return []
    try:
        return read_changeset(path)
    except ValueError as e:
        raise BadInput(f"changeset does not validate: {str(e).splitlines()[0]}", file=str(path)) from None


def _check_change_ids(d: Dream, changes: list[Change], accepted: list[str]) -> None:
    known = {c.change_id for c in changes}
    unknown = [c for c in accepted if c not in known]
    if unknown:
        raise BadInput(f"dream {d.id} has no change {', '.join(unknown)} (see `dreams diff {d.id}`)", field="change")


def _write_reviewed(catalog: Catalog, d: Dream, changes: list[Change], accepted: set[str] | None) -> Path:
    """The changeset with the reviewer's decisions (None = all accepted); a new file."""
    reviewed = [
        c.model_copy(update={"decision": "accepted" if accepted is None or c.change_id in accepted else "rejected"})
        for c in changes
    ]
    return write_changeset(reviewed, changeset_path(catalog, d.id, reviewed=True), catalog.settings.staging_dir)


def _usable_gate(d: Dream, version: int, state: str) -> bool:
    g = d.promotion.gate
    if not g or not g.get("success") or g.get("version") != version:
        return False
    # an automatic promotion needs an automatic-mode pass; a person may rely on a review-mode pass
    return g.get("mode") == "auto" or state == "awaiting_approval"


@notifications.notifies("promoted", "gate_failed", "awaiting_approval")
def promote(
    catalog: Catalog,
    dream_id: str,
    decided_by: str,
    accepted_change_ids: list[str] | None = None,
    reason: str | None = None,
    *,
    policy: dict | None = None,
) -> Dream:
    """Promote a completed dream's candidate (or the accepted part of it); returns the dream.

    The returned dream's ``promotion.state`` says what happened: ``promoted``, ``conflict`` (the
    head moved; nothing changed) or ``gate_failed`` (the gate refused; nothing changed). A dream
    already promoted is returned as is (never promoted twice); other states raise InvalidState.
    ``decided_by="auto"`` (automatic mode) leaves a dream that waits for a person as it is.
    A dream nobody decided yet (``not_requested``, approval not required) is promoted per change under
    its store's review policy (``promote_auto``; ``policy`` overrides fields of it) and may end
    ``awaiting_approval`` with its routine part promoted. On a dream partly promoted so, a person's
    approval promotes the rest (or the accepted part of it) on top.
    """
    d = catalog.get_dream(dream_id)
    if d.promotion.state == "promoted":
        return d
    _check_promotable(d)
    if decided_by == AUTO and d.promotion.state == "awaiting_approval":
        return d  # automatic mode never decides what waits for a person
    if d.promotion.promoted_version is not None:
        return _promote_rest(catalog, d, decided_by, accepted_change_ids, reason)
    if d.promotion.state == "not_requested" and accepted_change_ids is None and not d.require_approval:
        return promote_auto(catalog, dream_id, policy, decided_by=decided_by)
    return _promote_whole(catalog, d, decided_by, accepted_change_ids, reason)


def _promote_whole(catalog: Catalog, d: Dream, decided_by: str, accepted_change_ids: list[str] | None,
                   reason: str | None, verdicts: dict | None = None, human: bool | None = None) -> Dream:
    """The dream's candidate (or base + the accepted changes) as the head: gate, then compare-and-swap."""
    from dreaming.gate import gate_dream, run_gate, write_gate

    settings = catalog.settings
    svc = StoreService(catalog)
    human = d.promotion.state == "awaiting_approval" if human is None else human
    behavior = (d.output_behavior or {}).get("type", "create_new")
    changes: list[Change] = _load_changes(catalog, d)
    if accepted_change_ids is not None:
        _check_change_ids(d, changes, accepted_change_ids)
        if set(accepted_change_ids) == {c.change_id for c in changes}:
            accepted_change_ids = None  # everything accepted: the dream's own candidate
    memories: list[Memory] | None = None  # content of the version to promote when not yet written
    version = d.candidate_version

    if accepted_change_ids is not None:
        accepted = set(accepted_change_ids)
        path = _write_reviewed(catalog, d, changes, accepted)
        reviewed = read_changeset(path)
        base = svc.read_version(d.store_id, d.base_version) if d.base_version is not None else []
        try:
            memories = apply_changes(base, reviewed)
        except (InvalidState, ValueError) as e:
            raise InvalidState(f"the accepted changes do not apply on v{d.base_version}: {e}") from None
        result = run_gate(memories, reviewed, base, d.evidence_session_ids, settings, mode="review")
        result.store_id = d.store_id
        write_gate(settings, d.id, result, reviewed=True)
        if not result.success:
            return _finish(catalog, d.id, "gate_failed", decided_by, reason=result.summary(),
                           accepted=accepted_change_ids, gate=result.to_dict())
        if behavior == "update_existing":
            version = svc.write_version(
                d.store_id, memories, d.base_version, {"type": "dream", "id": d.id},
                f"dream {d.id}: {len(accepted)} of {len(changes)} changes accepted by {decided_by}",
            )
            memories = None
        result.version = version if behavior == "update_existing" else None
        gate = result.to_dict()
    else:
        if not _usable_gate(d, d.candidate_version, d.promotion.state):
            result = gate_dream(catalog, d.id, mode="review" if human else "auto")
            if not result.success or (result.needs_review and not human):
                return catalog.get_dream(d.id)  # gate_failed, or escalated: awaiting a person
            gate = result.to_dict()
        else:
            gate = d.promotion.gate
        if human and changes:  # record the person's decision: everything accepted
            _write_reviewed(catalog, d, changes, None)

    accepted_ids = set(accepted_change_ids) if accepted_change_ids is not None else {c.change_id for c in changes}
    decided = _Decided(changes, accepted_ids, decided_by if human else review_stats.POLICY,
                       _held_rules(catalog, d) if human else (verdicts or {}), reason)
    crash_point("promote.before_commit")
    if behavior == "update_existing":
        return _commit_update(catalog, d.id, version, decided_by, reason, accepted_change_ids, gate, decided)
    if memories is None:
        memories = svc.read_version(d.store_id, d.candidate_version)
    return _commit_fork(catalog, d.id, memories, decided_by, reason, accepted_change_ids, gate, decided)


# --- per change: the store's review policy in automatic mode ---------------------------------------


@notifications.notifies("promoted", "gate_failed", "awaiting_approval")
def promote_auto(catalog: Catalog, dream_id: str, policy: dict | None = None, *, decided_by: str = AUTO) -> Dream:
    """Automatic mode, per change: promote what the store's review policy lets through at once (a new head
    version, gated in ``auto`` mode), leave the rest ``awaiting_approval`` on top of it.

    Nothing held: the whole candidate is promoted as before. Everything held (or the routine part's gate
    asks for a person): the dream waits as a whole. ``policy``: fields overriding the store's policy (the
    flow's ``review_policy`` parameter)."""
    from dreaming.gate import GateResult, gate_dream, run_gate

    d = catalog.get_dream(dream_id)
    if d.promotion.state == "promoted" or d.promotion.promoted_version is not None:
        return d
    _check_promotable(d)
    pol = review_policy.effective(review_policy.load(catalog, d.store_id), policy)  # a bad override: before anything
    # the whole candidate first: a rule nobody may waive (bad rows, secrets, …) ends it gate_failed here
    gate = GateResult.from_dict(d.promotion.gate) if _usable_gate(d, d.candidate_version, "not_requested") \
        and not d.promotion.gate.get("needs_review") else gate_dream(catalog, d.id, mode="auto")
    if not gate.success and not gate.needs_review:
        return catalog.get_dream(d.id)
    changes = _load_changes(catalog, d)
    svc = StoreService(catalog)
    base = svc.read_version(d.store_id, d.base_version) if d.base_version is not None else []
    verdicts = review_policy.decide(changes, base, pol, d.require_approval)
    rules = {v.change_id: v.rule for v in verdicts}
    routine = {v.change_id for v in verdicts if v.promote}
    writes = [c for c in changes if c.change_id in routine and c.op != "keep"]
    held = [c for c in changes if c.change_id not in routine]

    gate_note = f"; the gate of the whole candidate: {gate.summary()}" if gate.needs_review else ""

    def wait(why: str | None = None) -> Dream:
        if why:  # the gate holds what the policy let through: all of it waits
            for v in verdicts:
                if v.promote and v.rule != "keep":
                    v.promote, v.rule, v.detail = False, "gate", why
        text = review_policy.summary(verdicts) + (f"; {why}" if why else gate_note)
        _write_review(catalog, d, changes, verdicts, pol, text)

        def mutate(x: Dream) -> None:
            if x.promotion.state in PROMOTABLE:
                x.promotion.state = "awaiting_approval"
                x.promotion.reason = text
        return catalog.update_dream(d.id, mutate)

    if not held:
        if gate.needs_review:
            return wait(f"the gate asks for a person: {gate.summary()}")
        _write_review(catalog, d, changes, verdicts, pol, review_policy.summary(verdicts))
        return _promote_whole(catalog, d, decided_by, None, None, verdicts=rules, human=False)
    if not writes:
        return wait()
    reviewed = [c.model_copy(update={"decision": "accepted" if c.change_id in routine else "rejected"})
                for c in changes]
    try:
        memories = apply_changes(base, reviewed)
    except (InvalidState, ValueError) as e:
        return wait(f"the routine part does not apply alone ({e})")
    result = run_gate(memories, reviewed, base, d.evidence_session_ids, catalog.settings, mode="auto")
    if not result.success:
        return wait(f"the gate of the routine part asks for a person: {result.summary()}")
    summary = review_policy.summary(verdicts) + gate_note
    _write_review(catalog, d, changes, verdicts, pol, summary)
    behavior = (d.output_behavior or {}).get("type", "create_new")
    reason = f"{summary}; the routine part is promoted, approve the rest: dreams approve {d.id}"
    accepted = [c.change_id for c in changes if c.change_id in routine]
    decided = _Decided(changes, set(accepted), review_stats.POLICY, rules, None, partial=True)
    crash_point("promote.before_commit")
    if behavior == "update_existing":
        version = svc.write_version(d.store_id, memories, d.base_version, {"type": "dream", "id": d.id},
                                    f"dream {d.id}: {len(writes)} routine changes promoted by the review policy")
        result.store_id, result.version = d.store_id, version
        return _commit_update(catalog, d.id, version, decided_by, reason, accepted, result.to_dict(), decided)
    result.store_id = d.store_id
    return _commit_fork(catalog, d.id, memories, decided_by, reason, accepted, result.to_dict(), decided)


def _pending(catalog: Catalog, d: Dream) -> tuple[list[Change], list[Change]]:
    """(all changes, those not promoted yet) of a partly promoted dream."""
    changes = _load_changes(catalog, d)
    done = set(d.promotion.accepted_change_ids or []) if d.promotion.promoted_version is not None else set()
    return changes, [c for c in changes if c.change_id not in done]


def _promote_rest(catalog: Catalog, d: Dream, decided_by: str, accepted_change_ids: list[str] | None,
                  reason: str | None) -> Dream:
    """A person approves what a partly promoted dream left waiting (all, or the accepted ids): applied on
    top of the promoted version, gated in ``review`` mode, the head moved from that version by CAS."""
    from dreaming.gate import run_gate, write_gate

    settings = catalog.settings
    svc = StoreService(catalog)
    changes, pending = _pending(catalog, d)
    if accepted_change_ids is not None:
        _check_change_ids(d, changes, accepted_change_ids)
    pending_ids = {c.change_id for c in pending}
    take = pending_ids if accepted_change_ids is None else pending_ids & set(accepted_change_ids)
    target, on = d.promotion.target_store_id or d.store_id, d.promotion.promoted_version
    base = svc.read_version(target, on)
    reviewed = [c.model_copy(update={"decision": "accepted" if c.change_id in take else "rejected"})
                for c in pending]
    done = list(d.promotion.accepted_change_ids or [])
    _write_reviewed(catalog, d, changes, set(done) | take)
    try:
        memories = apply_changes(base, reviewed)
    except (InvalidState, ValueError) as e:
        raise InvalidState(f"the accepted changes do not apply on v{on} of {target}: {e}") from None
    result = run_gate(memories, reviewed, base, d.evidence_session_ids, settings, mode="review")
    result.store_id = target
    write_gate(settings, d.id, result, reviewed=True)
    if not result.success:
        return _finish(catalog, d.id, "gate_failed", decided_by, reason=result.summary(), gate=result.to_dict())
    decided = _Decided(pending, take, decided_by, _held_rules(catalog, d), reason)
    version = on
    if take - {c.change_id for c in pending if c.op == "keep"}:
        version = svc.write_version(target, memories, on, {"type": "dream", "id": d.id},
                                    f"dream {d.id}: {len(take)} of {len(pending)} waiting changes accepted by "
                                    f"{decided_by}")
    result.version = version
    crash_point("promote.before_commit")
    with catalog.tx() as conn:
        cur = catalog.get_dream(d.id, conn)
        if cur.promotion.state == "promoted":
            return cur
        _check_promotable(cur)
        try:
            if version != on:
                catalog.cas_head(conn, target, on, version)
        except Conflict as e:
            _set_decision(cur, "conflict", decided_by, str(e), None, result.to_dict())
        else:
            _set_decision(cur, "promoted", decided_by, reason, [*done, *sorted(take)], result.to_dict())
            cur.promotion.promoted_version = version
            _note_learned(cur, decided.write(conn, cur, target))
        catalog.save_dream(conn, cur)
        crash_point("promote.in_commit")
    return cur


def _note_learned(d: Dream, learned: list[str]) -> None:
    """Say on the decision which kinds it moved to "wait for a person" in the store's policy."""
    if learned:
        d.promotion.reason = (f"{d.promotion.reason}; " if d.promotion.reason else "") + \
            "now waits for a person in this store's review policy: " + ", ".join(learned) + \
            " (rejected repeatedly; `dreams store policy STORE --release KIND` undoes it)"


@dataclass
class _Decided:
    """The decisions a promotion records in its transaction: per change (``change_decisions``), the
    rejected ones' fingerprints (``rejected_changes``), and what the rejections teach the policy."""

    changes: list[Change]
    accepted: set[str]
    decided_by: str
    rules: dict
    reason: str | None
    partial: bool = False  # the policy's routine part: the rest is not decided yet

    def write(self, conn, d: Dream, *stores: str) -> list[str]:
        ok = [c for c in self.changes if c.change_id in self.accepted]
        review_stats.record(conn, d.store_id, d.id, ok, "approved", self.decided_by, self.rules, self.reason)
        if self.partial:
            return []
        left = [c for c in self.changes if c.change_id not in self.accepted]
        if not left:
            return []
        review_stats.record(conn, d.store_id, d.id, left, "rejected", self.decided_by, self.rules, self.reason)
        for sid in dict.fromkeys([d.store_id, *stores]):
            rejections.record(conn, sid, left, self.decided_by, self.reason)
        return review_stats.learn(conn, None, d.store_id, [review_policy.kind_key(c) for c in left if c.op != "keep"])


def _finish(catalog: Catalog, dream_id: str, state: str, decided_by: str, *, reason=None, accepted=None,
            gate=None) -> Dream:
    def mutate(d: Dream) -> None:
        if d.promotion.state == "promoted":
            return
        _set_decision(d, state, decided_by, reason, accepted, gate)

    return catalog.update_dream(dream_id, mutate)


def _set_decision(d: Dream, state: str, decided_by: str, reason, accepted, gate) -> None:
    p = d.promotion
    p.state = state
    p.decided_by = decided_by
    p.decided_at = utcnow()
    p.reason = reason
    if accepted is not None:
        p.accepted_change_ids = list(accepted)
    if gate is not None:
        p.gate = gate


def _commit_update(catalog, dream_id, version, decided_by, reason, accepted, gate, decided: _Decided) -> Dream:
    """CAS the dream's store head base → version, mark the dream's sessions dreamt over, record the
    decision per change (and the changes left out of a partial acceptance): one transaction. The
    policy's routine part (``decided.partial``) leaves the dream awaiting approval for the rest."""
    with catalog.tx() as conn:
        d = catalog.get_dream(dream_id, conn)
        if d.promotion.state == "promoted" or (decided.partial and d.promotion.promoted_version is not None):
            return d  # somebody promoted this very dream meanwhile
        _check_promotable(d)
        try:
            catalog.cas_head(conn, d.store_id, d.base_version, version)
        except Conflict as e:
            _set_decision(d, "conflict", decided_by, str(e), accepted, gate)
        else:
            _set_decision(d, "awaiting_approval" if decided.partial else "promoted", decided_by, reason, accepted,
                          gate)
            if decided.partial:
                d.promotion.decided_by = d.promotion.decided_at = None
            d.promotion.target_store_id = d.store_id
            d.promotion.promoted_version = version
            d.outputs = [{"type": "memory_store", "memory_store_id": d.store_id}]
            catalog.mark_dreamt(conn, d.store_id, d.session_ids, d.id)
            _note_learned(d, decided.write(conn, d))
        catalog.save_dream(conn, d)
        crash_point("promote.in_commit")
    return d


def _commit_fork(catalog, dream_id, memories, decided_by, reason, accepted, gate, decided: _Decided) -> Dream:
    """Write the new store's v1 file, then insert store + version + watermark + decision in one
    transaction. The fork continues the lineage: it gets the input store's watermark up to the base
    version plus this dream's sessions; the input store's watermark does not move."""
    settings = catalog.settings
    d = catalog.get_dream(dream_id)
    src = catalog.get_store(d.store_id)
    new_id = ids.stable_id(ids.STORE, "fork", d.id)  # deterministic: a retried promotion reuses it
    check_store_content(memories)
    rel = version_relpath(new_id, 1)
    final = settings.home / rel
    ordered = sorted(memories, key=lambda m: (m.path, m.memory_id))
    write_parquet_atomic(memories_to_table(ordered), final, settings.staging_dir)
    crash_point("promote.fork_file_written")
    sha = ids.sha256_file(final)
    now = utcnow()
    name = f"{src['name']}-{d.id[-8:].lower()}"
    with catalog.tx() as conn:
        d = catalog.get_dream(dream_id, conn)
        if d.promotion.state == "promoted" or (decided.partial and d.promotion.promoted_version is not None):
            return d
        _check_promotable(d)
        taken = conn.execute(stores_table.select().where(stores_table.c.name == name)).first()
        catalog.insert_store(
            conn,
            {
                "id": new_id,
                "name": name if taken is None else f"{name}-{new_id[-6:].lower()}",
                "description": src["description"],
                "metadata": src["metadata"],
                "scope": src["scope"],
                "head_version": None,
                "forked_from": {"store_id": src["id"], "version": d.base_version, "dream_id": d.id},
                "created_at": now,
                "updated_at": now,
            },
        )
        conn.execute(
            store_versions.insert().values(
                store_id=new_id, version=1, state="ready", parent_version=None,
                created_by={"type": "dream", "id": d.id},
                message=f"dream {d.id}: forked from {src['name']} v{d.base_version}",
                path=rel, file_sha256=sha, memory_count=len(ordered), created_at=now,
            )
        )
        catalog.cas_head(conn, new_id, None, 1)
        for did, sids in _inherited_watermark(catalog, conn, src["id"], d.base_version).items():
            catalog.mark_dreamt(conn, new_id, sids, did)
        catalog.mark_dreamt(conn, new_id, d.session_ids, d.id)
        learned = decided.write(conn, d, new_id)
        _set_decision(d, "awaiting_approval" if decided.partial else "promoted", decided_by, reason, accepted, gate)
        if decided.partial:
            d.promotion.decided_by = d.promotion.decided_at = None
        d.promotion.target_store_id = new_id
        d.promotion.promoted_version = 1
        d.outputs = [{"type": "memory_store", "memory_store_id": new_id}]
        _note_learned(d, learned)
        catalog.save_dream(conn, d)
        crash_point("promote.in_commit")
    return d


def _inherited_watermark(catalog: Catalog, conn, store_id: str, base_version: int | None) -> dict[str, list[str]]:
    """The sessions of ``store_id``'s watermark that its version ``base_version`` holds: all of them but
    those of dreams promoted into it at a version outside ``base_version``'s ancestry."""
    rows = conn.execute(sa.select(store_versions.c.version, store_versions.c.parent_version)
                        .where(store_versions.c.store_id == store_id)).all()
    parent = {v: p for v, p in rows}
    ancestry, cur = set(), base_version
    while cur is not None and cur not in ancestry:
        ancestry.add(cur)
        cur = parent.get(cur)
    out: dict[str, list[str]] = {}
    for sid, did in catalog.dreamt_rows(conn, store_id):
        out.setdefault(did, []).append(sid)
    for did in list(out):
        try:
            p = catalog.get_dream(did, conn).promotion
        except NotFound:
            continue
        if p.target_store_id == store_id and p.promoted_version not in ancestry:
            del out[did]
    return out


def reject(catalog: Catalog, dream_id: str, decided_by: str, reason: str | None) -> Dream:
    """Reject a dream's promotion: the head stays where it is; who, when and why are recorded."""
    d = catalog.get_dream(dream_id)
    if d.promotion.state == "rejected":
        return d
    _check_promotable(d, "reject")
    changes, pending = _pending(catalog, d)  # a partly promoted dream: only what waits is rejected
    done = set(d.promotion.accepted_change_ids or []) if d.promotion.promoted_version is not None else set()
    if changes:
        _write_reviewed(catalog, d, changes, done)
    decided = _Decided(pending, set(), decided_by, _held_rules(catalog, d), reason or None)
    crash_point("reject.before_commit")
    with catalog.tx() as conn:  # the decision and the fingerprints of what was rejected, together
        cur = catalog.get_dream(dream_id, conn)
        if cur.promotion.state == "rejected":
            return cur
        _check_promotable(cur, "reject")
        _set_decision(cur, "rejected", decided_by, reason or "", None, None)
        stores = [cur.promotion.target_store_id] if cur.promotion.target_store_id else []
        _note_learned(cur, decided.write(conn, cur, *stores))
        catalog.save_dream(conn, cur)
    return cur


@notifications.notifies("awaiting_approval")
def request_approval(catalog: Catalog, dream_id: str) -> Dream:
    """Mark a gated, completed dream as waiting for a person (before the flow pauses)."""

    def mutate(d: Dream) -> None:
        if d.promotion.state == "awaiting_approval":
            return
        _check_promotable(d, "request approval for")
        if d.promotion.gate and not d.promotion.gate.get("success"):
            raise InvalidState(f"dream {d.id} failed its gate; there is nothing to approve")
        d.promotion.state = "awaiting_approval"

    return catalog.update_dream(dream_id, mutate)


# --- the decision entry point for people (CLI, UI via the flow) ------------------------------------


@dataclass
class ReviewOutcome:
    action: str  # resumed | promoted | conflict | gate_failed | rejected | noop
    dream: Dream
    flow_run_id: str | None = None


def review(
    catalog: Catalog,
    dream_id: str,
    *,
    approve: bool,
    decided_by: str,
    change_ids: list[str] | None = None,
    note: str | None = None,
    resume: Resumer | None = None,
) -> ReviewOutcome:
    """A person's decision on a dream.

    If the dream's flow run is paused waiting for approval, hand it the decision through
    ``resume(flow_run_id, run_input)`` (the flow then promotes or rejects, as the UI form would);
    otherwise promote or reject directly through the catalog. Deciding on a dream that is not
    awaiting approval (or otherwise promotable) raises InvalidState; repeating the decision already
    taken is a no-op.
    """
    d = catalog.get_dream(dream_id)
    if approve and d.promotion.state == "promoted":
        return ReviewOutcome("noop", d)
    if not approve and d.promotion.state == "rejected":
        return ReviewOutcome("noop", d)
    _check_promotable(d, "approve" if approve else "reject")
    if approve and change_ids:
        _check_change_ids(d, _load_changes(catalog, d), change_ids)
    if d.flow_run_id and resume is not None:
        run_input = {"approve": approve, "note": note or "", "change_ids": list(change_ids or []),
                     "decided_by": decided_by}
        if resume(d.flow_run_id, run_input):
            return ReviewOutcome("resumed", d, d.flow_run_id)
    if approve:
        d = promote(catalog, dream_id, decided_by, change_ids or None, reason=note)
        return ReviewOutcome(d.promotion.state, d)
    d = reject(catalog, dream_id, decided_by, note)
    return ReviewOutcome("rejected", d)
