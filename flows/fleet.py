"""Fleet: dream every store that matches a selector, one dream per store, in parallel.

    select (dreaming.ops.select_fleet_stores) ──▶ dream_store × N on the task runner
                                              ──▶ summary table artifact (one row per store)

Each store's dream is a `dream` subflow run (so each has its own run page and diff artifacts),
started from a task so that the flow's task runner spreads the stores: threads by default
(``ThreadPoolTaskRunner``), a local or remote Dask cluster with ``runner="dask"`` (the optional
``dask`` extra: prefect-dask). A deployed fleet runs on the Dask scheduler named by
``DREAMS_DASK_ADDRESS`` when the worker's environment (or the deployment's ``job_variables.env``) sets
it: the stores of one fleet run spread over Dask workers on several machines (docs/operations.md, "A
fleet across machines"). A global concurrency limit (``dreams-fleet``, created with ``max_concurrency`` slots when missing) bounds how many dreams run at once across all fleet runs.
One store's failure never stops the others; the run ends Failed if any store failed.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.errors import NotFound
from dreaming.ops import outcome_row, select_fleet_stores
from flows.dream import dream as dream_flow  # noqa: F401 - looked up at run time by _dream_flow()

FLEET_LIMIT = "dreams-fleet"
DEFAULT_WORKERS = 4


def ensure_fleet_limit(limit: int, name: str = FLEET_LIMIT) -> None:
    """Create the global concurrency limit if it does not exist (an existing one is left as set)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            except ObjectAlreadyExists:  # another fleet run created it first
                pass


@task(name="dream-store", cache_policy=NO_CACHE, task_run_name="dream-{store[name]}")
def dream_store(store: dict, dream_id: str, options: dict, limit_name: str | None = FLEET_LIMIT) -> dict:
    """One store's dream as a subflow; never raises, so one store cannot stop the others."""
    from prefect.concurrency.sync import concurrency

    from flows.dream import run_dream_to_state  # imported here: see _dream_flow

    t0 = time.perf_counter()
    state = None
    try:
        with concurrency(limit_name, occupy=1, strict=True) if limit_name else nullcontext():
            # the dream holds the store's writer slot itself (flows/hooks.py writer_slot)
            state = run_dream_to_state(_dream_flow(), store=store["id"], dream_id=dream_id, **options)
        error = None
        if state.is_failed() or state.is_crashed() or state.is_cancelled():
            error = state.message or state.type.value
    except Exception as e:  # noqa: BLE001 - reported in the summary row
        error = f"{type(e).__name__}: {e}"
    if state is not None and state.name == "Skipped":  # no session of the selection: nothing recorded
        return outcome_row(store, None, skipped=state.message, seconds=time.perf_counter() - t0)
    try:
        d = Catalog().get_dream(dream_id)
    except NotFound:
        d = None
    # a run that failed after its dream completed (the gate or promotion step raised) is a failed store too:
    # its dream reads "completed, not_requested", and only the run's state says the promotion never ran
    return outcome_row(store, d, error=error, seconds=time.perf_counter() - t0)


def _dream_flow():
    """The dream flow, looked up in its module at call time. A Dask worker receives this task
    pickled by value; a flow pickled along with it would lose the globals its type hints need
    (pydantic: "`DreamModel` is not fully defined"), whereas an import there gets the real one."""
    import flows.fleet as module

    return module.dream_flow


def store_failed(row: dict) -> bool:
    return row["status"] not in ("completed", "skipped") or row["promotion"] in ("gate_failed", "conflict") or bool(row["error"])


def default_task_runner():
    """Threads, or the Dask scheduler at ``DREAMS_DASK_ADDRESS`` (read when the module is imported: in a
    deployment run, the worker's job environment)."""
    address = os.environ.get("DREAMS_DASK_ADDRESS", "").strip()
    if not address:
        return ThreadPoolTaskRunner(max_workers=DEFAULT_WORKERS)
    if __name__ != "flows.fleet":
        # loaded as a script (a file entrypoint, flows/fleet.py:fleet): its flow and tasks pickle by reference
        # to a module no Dask worker can import ("No module named 'fleet'" on the scheduler)
        raise RuntimeError("DREAMS_DASK_ADDRESS needs the fleet deployed with the module entrypoint "
                           "flows.fleet:fleet (docs/operations.md, 'A fleet across machines'), not flows/fleet.py")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(f"DREAMS_DASK_ADDRESS={address} needs the optional extra: pip install 'dreams[dask]'") from e
    return DaskTaskRunner(address=address)


@flow(name="fleet", log_prints=True, task_runner=default_task_runner())
def fleet(
    scope: str | None = None,
    stores: list[str] | None = None,
    only_new: bool = True,
    since: str | None = None,
    day: str | None = None,
    curator: Literal["rules", "claude"] = "rules",
    model: str | None = None,
    instructions: str | None = None,
    output_behavior: Literal["create_new", "update_existing"] = "update_existing",
    require_approval: bool = False,
    max_concurrency: int = DEFAULT_WORKERS,
    dry_run: bool = False,
) -> dict:
    """Dream every store matching ``scope`` (tenant, scope or glob) and/or ``stores`` (ids or names).

    ``only_new`` keeps only stores with sessions not yet dreamt over. A fleet never waits on a person: a
    dream that needs review (``require_approval``, or the gate wants one) records `awaiting_approval` and
    returns (review with `dreams approve`); the summary lists what waits.
    """
    log = get_run_logger()
    chosen = select_fleet_stores(Catalog(), scope=scope, stores=stores, only_new=only_new)
    log.info("fleet: %d store(s) selected", len(chosen))
    if dry_run or not chosen:
        rows = [outcome_row(s, None) | {"status": "selected" if dry_run else "none"} for s in chosen]
        return {"stores": len(chosen), "dry_run": dry_run, "rows": rows, "failed": []}
    ensure_fleet_limit(max_concurrency)
    options = {"since": since, "day": day, "curator": curator, "model": model, "instructions": instructions,
               "output_behavior": output_behavior, "require_approval": require_approval,
               "approval_timeout_s": 0}  # never pause a worker on a person
    # A retried fleet run resumes the same dreams (ids derive from this flow run and the store).
    futures = [dream_store.submit(s, ids.stable_id(ids.DREAM, "fleet", flow_run.id, s["id"]), options)
               for s in chosen]
    rows = [f.result() for f in futures]
    failed = [r for r in rows if store_failed(r)]
    create_table_artifact(key="fleet-summary", table=rows,
                          description=f"Fleet: {len(rows) - len(failed)} of {len(rows)} stores dreamt"
                          + (f", {len(failed)} failed" if failed else ""))
    waiting = [r["dream_id"] for r in rows if r.get("promotion") == "awaiting_approval" and r.get("dream_id")]
    summary = {"stores": len(rows), "dry_run": False, "rows": rows, "failed": [r["store"] for r in failed],
               "awaiting_approval": waiting}
    if failed:
        why = "; ".join(f"{r['store']}: {r['error'] or r['promotion'] or r['status']}" for r in failed)
        return Failed(message=f"{len(failed)} of {len(rows)} stores failed ({why})", data=summary)
    return Completed(message=f"{len(rows)} stores dreamt" + (f", {len(waiting)} awaiting approval" if waiting else ""),
                     data=summary)


def fleet_flow(runner: Literal["threads", "dask"] = "threads", workers: int = DEFAULT_WORKERS,
               dask_address: str | None = None):
    """The fleet flow on the chosen task runner: threads, or Dask (a local cluster of ``workers``
    processes, or an existing scheduler at ``dask_address``)."""
    if runner == "threads":
        return fleet.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    if runner != "dask":
        raise ValueError(f"runner must be threads or dask, got {runner!r}")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        raise RuntimeError("the dask runner needs the optional extra: pip install 'dreams[dask]'") from e
    if dask_address:
        return fleet.with_options(task_runner=DaskTaskRunner(address=dask_address))
    return fleet.with_options(task_runner=DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "processes": True, "threads_per_worker": 1,
                        "dashboard_address": None}))
