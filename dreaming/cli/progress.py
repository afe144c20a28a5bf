"""What a backfill or a fleet had done when a signal cut it off (printed by dreaming.cli.interrupt).

Read from the catalog, not from the flow (which may be anywhere when the signal lands): each dream of the
plan is finished, cut off while running, or not started. A cut-off dream is not lost: it keeps its
lease until the lease expires, then the reaper fails it (``crashed``) and a re-run of the backfill resumes
that day; nothing half-written is ever placed (files are staged and renamed, catalog rows come last).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dreaming.catalog import Catalog
    from dreaming.models import Dream
    from dreaming.ops import BackfillDay

OPEN = ("pending", "running")


def _dream(catalog: Catalog, dream_id: str) -> Dream | None:
    from dreaming.errors import NotFound

    try:
        return catalog.get_dream(dream_id)
    except NotFound:
        return None


def _cut_off(d: Dream) -> bool:
    """Running when the signal came: still open, or ended by it (Prefect's crash hook fails the dream)."""
    from dreaming.cli.interrupt import received_at

    at = received_at()
    return d.status in OPEN or (at is not None and d.ended_at is not None and d.ended_at >= at)


def _outcome(d: Dream) -> str:
    return d.status if d.status in OPEN else f"{d.status}, promotion {d.promotion.state}"


def _lines(what: str, done: list[str], cut: list[str], left: list[str], reap: str) -> list[str]:
    out = [f"{what}: {len(done)} finished, {len(cut)} cut off, {len(left)} not started"]
    out += [f"  finished: {x}" for x in done]
    out += [f"  cut off: {x}" for x in cut]
    if cut:
        out.append(f"    a cut-off dream wrote nothing half-way; one still running is failed by `{reap}` once "
                   "its lease expires")
    if left:
        out.append(f"  not started: {', '.join(left)}")
    return out


def backfill_progress(catalog: Catalog, store: str, plan: list[BackfillDay]) -> list[str]:
    """Lines for a backfill of ``store`` planned as ``plan`` (made before it started)."""
    done, cut, left, before = [], [], [], 0
    for item in plan:
        label = item.day + (f" part {item.part}" if item.part else "")
        if item.action in ("skip", "done"):
            before += 1
            continue
        d = _dream(catalog, item.dream_id)
        untouched = d is not None and item.action == "resume" and (d.status, d.promotion.state) == (
            item.status, item.promotion)  # a dream to resume that this run did not reach
        if d is None or d.status == "pending" or (untouched and d.status not in OPEN):
            left.append(label)
        elif _cut_off(d):
            cut.append(f"{label} ({d.id}: {_outcome(d)})")
        else:
            done.append(f"{label} ({d.id}: {_outcome(d)})")
    lines = _lines(f"backfill of {store}", done, cut, left, f"dreams reap --store {store}")
    if before:
        lines.append(f"  {before} day(s) had nothing to do (no sessions, or already done)")
    if left or cut:
        lines.append("  run the same `dreams backfill` again to finish (finished days are not dreamt twice)")
    return lines


def fleet_progress(catalog: Catalog, stores: list[dict], started: datetime) -> list[str]:
    """Lines for a fleet over ``stores`` that started at ``started`` (dreams created since then)."""
    done, cut, left = [], [], []
    for s in stores:
        mine = [d for d in catalog.list_dreams(store_id=s["id"], include_archived=True, limit=5)
                if d.created_at >= started]
        if not mine:
            left.append(s["name"])
        elif _cut_off(mine[0]):
            cut.append(f"{s['name']} ({mine[0].id}: {_outcome(mine[0])})")
        else:
            done.append(f"{s['name']} ({mine[0].id}: {_outcome(mine[0])})")
    reap = "dreams reap --store STORE"
    return _lines(f"fleet of {len(stores)} store(s)", done, cut, left, reap)
