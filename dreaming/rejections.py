"""Changes a person rejected on purpose, remembered so that later dreams do not propose them again.

A rejection leaves the dream's sessions available (they were never promoted), so the next dream
reads them again — and would propose the same changes. Each rejected change is recorded per store
with a stable **fingerprint**: the op, its target (the path for an ``add``, else the memory id and
any merged ids), the normalised content (``after``, else ``before``) and the evidence session ids.
``DreamService.curate`` drops a proposed change whose op, target and content match a rejected one
when all of its evidence sessions were already in that rejection's evidence; a change backed by a
session the reviewer never saw is materially new and comes back — and says so: its reason ends with
"previously rejected on <date> by <who> (<reason>); N new sessions since", which `dreams diff`, the
report and the review surface show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from dreaming import ids
from dreaming.catalog import Catalog, rejected_changes
from dreaming.models import Change, iso, utcnow


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


def record(conn: sa.Connection, store_id: str, changes: list[Change], decided_by: str | None,
           reason: str | None = None) -> int:
    """Remember ``changes`` (those a person rejected, and why) for ``store_id``, inside the decision's
    transaction."""
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
                     "change_id": c.change_id, "decided_by": decided_by, "created_at": now,
                     "reason": reason or None})
    if rows:
        conn.execute(rejected_changes.insert(), rows)
    return len(rows)


@dataclass
class Prior:
    """What reviewers already rejected under one key: every evidence session they saw, and the latest
    rejection (when, by whom, why)."""

    sessions: set[str] = field(default_factory=set)
    at: datetime | None = None
    by: str | None = None
    reason: str | None = None

    def note(self, new_sessions: int) -> str:
        why = f" ({self.reason})" if self.reason else ""
        day = iso(self.at)[:10] if self.at else "?"
        return (f"previously rejected on {day} by {self.by or 'a reviewer'}{why}; "
                f"{new_sessions} new session{'' if new_sessions == 1 else 's'} since")


def rejected(catalog: Catalog, store_id: str) -> dict[str, Prior]:
    """key → what a person already saw (and said) when rejecting a change with that key."""
    out: dict[str, Prior] = {}
    t = rejected_changes
    with catalog.engine.connect() as conn:
        for key, sessions, at, by, reason in conn.execute(
                sa.select(t.c.key, t.c.evidence_sessions, t.c.created_at, t.c.decided_by, t.c.reason)
                .where(t.c.store_id == store_id).order_by(t.c.created_at)):
            p = out.setdefault(key, Prior())
            p.sessions.update(sessions)
            p.at, p.by, p.reason = at, by, reason or p.reason
    return out


def drop_rejected(changes: list[Change], seen: dict[str, Prior]) -> tuple[list[Change], list[str]]:
    """``changes`` without those a person rejected before on the same evidence; plus a note per drop. A
    change that comes back with sessions the reviewer never saw keeps its place, and its reason says so."""
    kept, notes = [], []
    for c in changes:
        prior = seen.get(change_key(c))
        if prior is not None:
            fresh = set(evidence_sessions(c)) - prior.sessions
            if not fresh:
                notes.append(f"{c.op} {c.path or c.memory_id}: rejected in review before on the same evidence; "
                             "not proposed again")
                continue
            c = c.model_copy(update={"reason": f"{c.reason} — {prior.note(len(fresh))}".lstrip(" —")})
        kept.append(c)
    return kept, notes
