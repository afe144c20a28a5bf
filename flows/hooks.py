"""Small helpers of the dream flow: session selection from parameters, and state hooks."""

from __future__ import annotations

from datetime import date

from dreaming.dreams import DreamService, Selection
from dreaming.errors import DreamFailure


def dream_selection(session_ids: list[str] | None, since: str | None, day: str | None) -> Selection:
    """Explicit ids, else one day (backfills and scheduled runs), else a window, else all new."""
    from dreaming.cli.common import parse_since

    if session_ids:
        return Selection(session_ids=list(session_ids))
    if day:
        return Selection.for_day(date.fromisoformat(day))
    if since:
        return Selection(since=parse_since(since))
    return Selection(all_new=True)


def on_error(dream_id: str, exc: BaseException, final: bool) -> None:
    """Record a failure on the dream; transient errors stay open while the flow will retry."""
    if isinstance(exc, DreamFailure):
        DreamService().fail(dream_id, exc.type, exc.message)
    elif final:
        DreamService().fail(dream_id, "internal_error", f"{type(exc).__name__}: {exc}")


def _dream_ids_of(flow_run) -> list[str]:
    from dreaming.catalog import Catalog

    cat = Catalog()
    return [d.id for d in cat.list_dreams(statuses=["pending", "running"], include_archived=True)
            if d.flow_run_id == str(flow_run.id)]


def mark_canceled(flow, flow_run, state) -> None:
    """Prefect cancelled the run (UI or `dreams cancel`): the dream becomes canceled."""
    for did in _dream_ids_of(flow_run):
        DreamService().cancel(did)


def mark_crashed(flow, flow_run, state) -> None:
    """The process died (worker killed, OOM): the dream says so; the next run starts afresh."""
    for did in _dream_ids_of(flow_run):
        DreamService().fail(did, "crashed", f"flow run {flow_run.id} crashed: {state.message}")
