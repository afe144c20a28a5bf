"""Changesets: the typed list of changes a curator proposes, and how they apply to a store.

``apply_changes(base, changes)`` is the one place that turns a base version plus accepted changes
into a candidate. Curators never write stores; they only propose.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from dreaming import ids
from dreaming.atomic import write_parquet_atomic
from dreaming.errors import InvalidState
from dreaming.models import Change, Memory, changes_from_table, changes_to_table, merge_sources, utcnow

OP_ORDER = {"merge": 0, "supersede": 1, "update": 2, "prune": 3, "add": 4, "keep": 5}


def finalize(changes: list[Change], dream_id: str) -> list[Change]:
    """Give changes their dream id, stable ids and a canonical order (deterministic output).

    Whatever the curator, what a change writes is cleaned here too (``dreaming.safety.sanitize_changes``:
    invisible and bidi characters removed, secrets redacted, in paths, contents and reasons); curators
    call it first to report what they cleaned, so here it is a backstop and a no-op."""
    from dreaming.safety import sanitize_changes

    changes, _ = sanitize_changes(changes)
    out = []
    for c in sorted(changes, key=lambda c: (OP_ORDER[c.op], c.path or "", c.memory_id or "", c.after or "")):
        c = c.model_copy(update={"dream_id": dream_id})
        c.change_id = ids.stable_id(ids.CHANGE, dream_id, c.op, c.memory_id, c.path, c.after, *c.merged_ids)
        out.append(c)
    return out


def counts(changes: list[Change]) -> dict[str, int]:
    out = {op: 0 for op in OP_ORDER}
    for c in changes:
        out[c.op] += 1
    return out


def apply_changes(base: list[Memory], changes: list[Change], now=None) -> list[Memory]:
    """The candidate store: ``base`` with every change whose decision is not 'rejected' applied."""
    now = now or utcnow()
    by_id = {m.memory_id: m.model_copy(deep=True) for m in base}
    removed: set[str] = set()

    def need(mid: str | None, c: Change) -> Memory:
        if mid not in by_id:
            raise InvalidState(f"change {c.change_id} ({c.op}) names unknown memory {mid}")
        return by_id[mid]

    for c in sorted(changes, key=lambda c: OP_ORDER[c.op]):
        if c.decision == "rejected" or c.op == "keep":
            continue
        if c.op == "add":
            mem = Memory(
                memory_id=c.memory_id or ids.stable_id(ids.MEMORY, c.path, c.after),
                path=c.path,
                content=c.after or "",
                kind=c.kind or "insight",
                key=c.key,
                sources=c.evidence,
                support=c.support or 0,
                confidence=c.confidence,
                taint=c.taint or "trusted",
                created_at=now,
                updated_at=now,
            )
            by_id[mem.memory_id] = mem
        elif c.op in ("update", "supersede", "merge"):
            target = need(c.memory_id, c)
            if c.op == "supersede" and c.after is None:
                removed.add(target.memory_id)
                continue
            sources = [target.sources, c.evidence]
            for mid in c.merged_ids:
                sources.append(need(mid, c).sources)
                removed.add(mid)
            new = target.model_copy(
                update={
                    "content": c.after if c.after is not None else target.content,
                    "path": c.path or target.path,
                    "key": c.key if c.key is not None else target.key,
                    "kind": c.kind or target.kind,
                    "sources": merge_sources(*sources),
                    "confidence": c.confidence,
                    "taint": _worst_taint(target.taint, c.taint),
                    "pinned": target.pinned or any(by_id[m].pinned for m in c.merged_ids),
                    "updated_at": now,
                }
            )
            by_id[target.memory_id] = Memory.model_validate(new.model_dump())
        elif c.op == "prune":
            removed.add(need(c.memory_id, c).memory_id)
    return sorted((m for mid, m in by_id.items() if mid not in removed), key=lambda m: (m.path, m.memory_id))


_TAINT_RANK = {"trusted": 0, "user": 1, "tool_output": 2, "untrusted": 3}


def _worst_taint(a: str | None, b: str | None) -> str:
    vals = [t for t in (a, b) if t]
    return max(vals, key=_TAINT_RANK.__getitem__) if vals else "trusted"


def removed_share(base: list[Memory], changes: list[Change]) -> float:
    """Share of base memories a changeset removes or supersedes (the gate caps it)."""
    if not base:
        return 0.0
    base_ids = {m.memory_id for m in base}
    gone = set()
    for c in changes:
        if c.decision == "rejected":
            continue
        gone.update(mid for mid in c.removes() if mid in base_ids)
        if c.op == "supersede" and c.after is not None and c.memory_id in base_ids:
            gone.add(c.memory_id)
    return len(gone) / len(base)


def write_changeset(changes: list[Change], path: Path, staging_dir: Path) -> Path:
    return write_parquet_atomic(changes_to_table(changes), path, staging_dir)


def read_changeset(path: Path) -> list[Change]:
    return changes_from_table(pq.read_table(path))
