"""Small helpers of the dream flow: session selection from parameters, and state hooks."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

from dreaming.dreams import DreamService, Selection
from dreaming.errors import DreamFailure
from dreaming.timewindow import parse_duration, parse_since


def dream_selection(session_ids: list[str] | None, since: str | None, day: str | None) -> Selection:
    """Explicit ids, else one day (backfills and scheduled runs), else a window, else all new.

    A run created by a deployment's schedule (``auto_scheduled``) anchors its window on its
    *scheduled* start time, not on the clock, so a late run or a re-run covers the same sessions:
    the window ends at UTC midnight of the scheduled day; ``since="7d"`` covers the 7 whole UTC
    days before it; no ``since`` covers the previous UTC day (the nightly rule). See
    ``scheduled_selection``.
    """
    if session_ids:
        return Selection(session_ids=list(session_ids))
    if day:
        return Selection.for_day(date.fromisoformat(day))
    sched = scheduled_start()
    if sched is not None and (not since or parse_duration(since) is not None):
        return scheduled_selection(sched, since)
    if since:
        return Selection(since=parse_since(since))
    return Selection(all_new=True)


def scheduled_selection(scheduled: datetime, since: str | None = None) -> Selection:
    """The window of a scheduled run: ``since`` (default 1 day) before UTC midnight of its day.

    Day-sized windows are whole UTC days, so the nightly run scheduled at 2026-11-03 02:30Z reads
    exactly the sessions that ``dreams backfill --from 2026-11-02 --to 2026-11-02`` reads.
    """
    s = scheduled.astimezone(UTC)
    end = datetime(s.year, s.month, s.day, tzinfo=UTC)
    span = parse_duration(since) or timedelta(days=1)
    return Selection(since=end - span, until=end)


def scheduled_start() -> datetime | None:
    """The scheduled start time of the current flow run if a deployment schedule created it."""
    from prefect.runtime import deployment, flow_run

    if not flow_run.id or not deployment.id:
        return None
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run.id)
    except Exception:  # noqa: BLE001 - no API: treat as an ad-hoc run
        return None
    if not run.auto_scheduled:
        return None
    return run.expected_start_time or flow_run.scheduled_start_time


def prefect_run_state(flow_run_id: str) -> str | None:
    """The state type of a flow run (``RUNNING``, ``CRASHED``…), or None when the server has no such run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        return None
    return run.state.type.value if run.state else None


def dream_lease(dream_id: str):
    """Hold the dream's catalog lease while the block runs (a daemon thread renews it)."""
    from dreaming import leases
    from dreaming.catalog import Catalog

    return leases.hold(Catalog(), dream_id)


def reap_stale(store: str, exclude: list[str] | None = None) -> list[str]:
    """Fail (type ``crashed``) ``store``'s dreams left open by dead runs: an expired lease, else a final
    or unknown flow run (before each dream begins, and `dreams reap`)."""
    from dreaming.catalog import Catalog
    from dreaming.errors import NotFound
    from dreaming.ops import reap_stale_dreams
    from dreaming import notifications

    cat = Catalog()
    try:
        store_id = cat.get_store(store)["id"]
    except NotFound:
        return []  # begin() reports the bad store
    return [d.id for d in notifications.emit_each(  # webhooks: a reaped dream failed (dreaming.notifications)
        cat, reap_stale_dreams(cat, store_id, prefect_run_state, exclude=exclude or []), "failed")]


WRITER_SLOT_LEASE_S = 60  # the shortest lease the Prefect API grants: a killed run frees its store within ~1 min


def writer_slot_name(store: str) -> str | None:
    """The store's writer limit (``dreams-store-<id>``, see ``writer_slot``), or None where it has none.

    A deployment run creates the limit (1 slot) when it is missing: dream deployments carry no Prefect
    ``concurrency_limit`` (it crashes a paused run, see ``writer_slot``), so this limit is what keeps one
    writer per store there. Any other run (CLI, Python, a backfill or fleet outside a deployment) holds
    it where it exists: ``prefect gcl create dreams-store-<id> --limit 1`` opts a store in.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.runtime import deployment

    from dreaming.catalog import Catalog
    from dreaming.errors import NotFound

    try:
        name = store_limit_name(Catalog().get_store(store)["id"])
    except NotFound:
        return None  # begin() reports the bad store
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:  # not configured: no limit (and no warning on every run) …
            if not deployment.id:
                return None
            try:  # … except for a deployment run, which always has one
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another run created it first
                pass
    return name


@asynccontextmanager
async def writer_slot(name: str | None):
    """Hold one slot of the store's writer limit ``name`` (from ``writer_slot_name``) for the block.

    The dream holds it while it works (read → gate, then promote or reject), **never while it waits on
    a person**: a paused dream holds no slot and no lease, so a pause lasts its full timeout and other
    dreams of the store may run meanwhile (the approved one then promotes, or ends ``conflict`` when
    the head moved: promotion is a compare-and-swap, so a second writer can never corrupt a store; the
    limit saves the wasted work of a conflict). This replaces Prefect's deployment ``concurrency_limit``,
    whose lease Prefect 3.8.8 revokes when the run goes Paused while the engine keeps renewing it,
    so the run crashed ~225 s into its pause (docs/operations.md). A lease renewal that fails (the API
    away for a minute) does not stop the dream, for the same reason.
    """
    if name is None:
        yield
        return
    from prefect.concurrency.asyncio import concurrency

    async with concurrency(name, occupy=1, strict=True, lease_duration=WRITER_SLOT_LEASE_S,
                           raise_on_lease_renewal_failure=False):
        yield


def store_limit_name(store_id: str) -> str:
    """The name of a store's writer limit: ``dreams-store-<store id, lowercase, dashes>``."""
    return "dreams-store-" + re.sub(r"[^a-z0-9]+", "-", store_id.lower()).strip("-")


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
