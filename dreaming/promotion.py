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
again (mode ``review``), writes it as a new version and promotes that. Decisions are written to a
NEW file ``changeset.reviewed.parquet``; the original changeset is never edited.

This module never imports Prefect: ``review()`` takes a ``resume`` callable so that the CLI can hand
a paused flow run its approval instead of promoting behind the flow's back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dreaming import ids, rejections
from dreaming.atomic import write_parquet_atomic
from dreaming.catalog import Catalog, store_versions
from dreaming.chaos import crash_point
from dreaming.catalog import stores as stores_table
from dreaming.changeset import apply_changes, read_changeset, write_changeset
from dreaming.errors import BadInput, Conflict, InvalidState, NotFound
from dreaming.models import Change, Dream, Memory, memories_to_table, utcnow
from dreaming.stores import StoreService, check_store_content, version_relpath

PROMOTABLE = ("not_requested", "awaiting_approval")
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


def promote(
    catalog: Catalog,
    dream_id: str,
    decided_by: str,
    accepted_change_ids: list[str] | None = None,
    reason: str | None = None,
) -> Dream:
    """Promote a completed dream's candidate (or the accepted part of it); returns the dream.

    The returned dream's ``promotion.state`` says what happened: ``promoted``, ``conflict`` (the
    head moved; nothing changed) or ``gate_failed`` (the gate refused; nothing changed). A dream
    already promoted is returned as is (never promoted twice); other states raise InvalidState.
    """
    from dreaming.gate import gate_dream, run_gate, write_gate

    d = catalog.get_dream(dream_id)
    if d.promotion.state == "promoted":
        return d
    _check_promotable(d)
    settings = catalog.settings
    svc = StoreService(catalog)
    human = d.promotion.state == "awaiting_approval"
    behavior = (d.output_behavior or {}).get("type", "create_new")
    changes: list[Change] = []
    if accepted_change_ids is not None:
        changes = _load_changes(catalog, d)
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
        if human:  # record the person's decision: everything accepted
            changes = changes or _load_changes(catalog, d)
            if changes:
                _write_reviewed(catalog, d, changes, None)

    left_out = [c for c in changes if c.change_id not in set(accepted_change_ids)] if accepted_change_ids else []
    crash_point("promote.before_commit")
    if behavior == "update_existing":
        return _commit_update(catalog, d.id, version, decided_by, reason, accepted_change_ids, gate, left_out)
    if memories is None:
        memories = svc.read_version(d.store_id, d.candidate_version)
    return _commit_fork(catalog, d.id, memories, decided_by, reason, accepted_change_ids, gate, left_out)


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


def _commit_update(catalog, dream_id, version, decided_by, reason, accepted, gate, left_out) -> Dream:
    """CAS the dream's store head base → version, mark the dream's sessions dreamt over, remember the
    changes left out of a partial acceptance and record the decision: one transaction."""
    with catalog.tx() as conn:
        d = catalog.get_dream(dream_id, conn)
        if d.promotion.state == "promoted":  # somebody promoted this very dream meanwhile
            return d
        _check_promotable(d)
        try:
            catalog.cas_head(conn, d.store_id, d.base_version, version)
        except Conflict as e:
            _set_decision(d, "conflict", decided_by, str(e), accepted, gate)
        else:
            _set_decision(d, "promoted", decided_by, reason, accepted, gate)
            d.promotion.target_store_id = d.store_id
            d.promotion.promoted_version = version
            d.outputs = [{"type": "memory_store", "memory_store_id": d.store_id}]
            catalog.mark_dreamt(conn, d.store_id, d.session_ids, d.id)
            rejections.record(conn, d.store_id, left_out, decided_by)
        catalog.save_dream(conn, d)
        crash_point("promote.in_commit")
    return d


def _commit_fork(catalog, dream_id, memories, decided_by, reason, accepted, gate, left_out) -> Dream:
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
        if d.promotion.state == "promoted":
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
        rejections.record(conn, d.store_id, left_out, decided_by)
        rejections.record(conn, new_id, left_out, decided_by)
        _set_decision(d, "promoted", decided_by, reason, accepted, gate)
        d.promotion.target_store_id = new_id
        d.promotion.promoted_version = 1
        d.outputs = [{"type": "memory_store", "memory_store_id": new_id}]
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
    changes = _load_changes(catalog, d)
    if changes:
        _write_reviewed(catalog, d, changes, set())
    crash_point("reject.before_commit")
    with catalog.tx() as conn:  # the decision and the fingerprints of what was rejected, together
        cur = catalog.get_dream(dream_id, conn)
        if cur.promotion.state == "rejected":
            return cur
        _check_promotable(cur, "reject")
        _set_decision(cur, "rejected", decided_by, reason or "", None, None)
        rejections.record(conn, cur.store_id, changes, decided_by)
        catalog.save_dream(conn, cur)
    return cur


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
