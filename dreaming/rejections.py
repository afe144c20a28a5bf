"""Changes a person rejected on purpose, remembered so that later dreams do not propose them again.

A rejection leaves the dream's sessions available (they were never promoted), so the next dream
reads them again — and would propose the same changes. Each rejected change is recorded per store
with a stable **fingerprint**: the op, its target (the path for an ``add``, else the memory id and
any merged ids), the normalised content (``after``, else ``before``) and the evidence session ids.
``DreamService.curate`` drops a proposed change whose op, target and content match a rejected one
when all of its evidence sessions were already in that rejection's evidence; a change backed by a
session the reviewer never saw is materially new and comes back.
"""

from __future__ import annotations

import json
from collections import defaultdict

import sqlalchemy as sa

from dreaming import ids
from dreaming.catalog import Catalog, rejected_changes
from dreaming.models import Change, utcnow


def _norm(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def change_key(c: Change) -> str:
    """op + target + normalised content: what the change does, whatever its evidence."""
    target = c.path if c.op == "add" else c.memory_id
    content = c.after if c.after is not None else c.before
    return ids.sha256_text(json.dumps([c.op, target or "", sorted(c.merged_ids), _norm(content)]))


def evidence_sessions(c: Change) -> list[str]:
    return sorted({s.session_id for s in c.evidence})


def fingerprint(c: Change) -> str:
    """The stable fingerprint of a change: its key plus its evidence session ids."""
    return ids.sha256_text(json.dumps([change_key(c), evidence_sessions(c)]))


def record(conn: sa.Connection, store_id: str, changes: list[Change], decided_by: str | None) -> int:
    """Remember ``changes`` (those a person rejected) for ``store_id``, inside the decision's transaction."""
    have = set(conn.execute(sa.select(rejected_changes.c.fingerprint)
                            .where(rejected_changes.c.store_id == store_id)).scalars())
    rows, now = [], utcnow()
    for c in changes:
        if c.op == "keep":
            continue
        fp = fingerprint(c)
        if fp in have:
            continue
        have.add(fp)
        rows.append({"store_id": store_id, "fingerprint": fp, "key": change_key(c),
                     "evidence_sessions": evidence_sessions(c), "dream_id": c.dream_id,
                     "change_id": c.change_id, "decided_by": decided_by, "created_at": now})
    if rows:
        conn.execute(rejected_changes.insert(), rows)
    return len(rows)


def rejected(catalog: Catalog, store_id: str) -> dict[str, set[str]]:
    """key → every evidence session id a person already saw when rejecting a change with that key."""
    out: dict[str, set[str]] = defaultdict(set)
    with catalog.engine.connect() as conn:
        for key, sessions in conn.execute(sa.select(rejected_changes.c.key, rejected_changes.c.evidence_sessions)
                                          .where(rejected_changes.c.store_id == store_id)):
            out[key].update(sessions)
    return dict(out)


def drop_rejected(changes: list[Change], seen: dict[str, set[str]]) -> tuple[list[Change], list[str]]:
    """``changes`` without those a person rejected before on the same evidence; plus a note per drop."""
    kept, notes = [], []
    for c in changes:
        prior = seen.get(change_key(c))
        if prior is not None and set(evidence_sessions(c)) <= prior:
            notes.append(f"{c.op} {c.path or c.memory_id}: rejected in review before on the same evidence; "
                         "not proposed again")
            continue
        kept.append(c)
    return kept, notes
