"""`dreams serve | backfill | fleet | reap`: operating dreams day to day (docs/operations.md)."""

from __future__ import annotations

import typer

from dreaming.cli import app, interrupt
from dreaming.cli.common import (JsonOpt, console, err_console, fail, prefect_defaults, print_json, print_list,
                                 print_table)
from dreaming.cli.progress import backfill_progress, fleet_progress

BACKFILL_COLUMNS = ["day", "part", "sessions", "action", "dream_id", "status", "promotion", "changes", "error"]
FLEET_COLUMNS = ["store", "sessions", "dream_id", "status", "promotion", "changes", "seconds", "error"]


def _finish(state, what: str, json_: bool, rows: str, columns: list[str], title: str, failed: str) -> None:
    """Print the summary a backfill/fleet flow returns (as Completed or Failed data) and exit:
    1 when the run itself broke or any of its parts (``failed``: days, stores) failed."""
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        fail(f"{what} run ended {state.type.value}: {state.message}", code=1)
    if json_:
        print_json(summary)
    else:
        print_table(summary[rows], columns, title=title.format(**summary))
        if summary[failed]:
            console.print(f"[red]failed:[/] {', '.join(summary[failed])}")
        for dream_id in summary.get("awaiting_approval") or []:
            console.print(f"awaiting approval: dreams diff {dream_id}, then dreams approve {dream_id}")
    raise typer.Exit(1 if summary[failed] else 0)


@app.command("serve")
def serve(
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many flow runs at once."),
    replace: bool = typer.Option(False, "--replace", help="Delete same-named deployments that a work pool has "
                                 "(from `prefect deploy`) first; without it they are refused (exit 2)."),
) -> None:
    """Run the prefect.yaml deployments on this box with serve() (no work pool or worker needed)."""
    from flows.serve import build_deployments, clear_pool_deployments, serve_all

    deployments = build_deployments()
    for name in clear_pool_deployments(deployments, replace=replace):
        err_console.print(f"deleted the work-pool deployment {name} (--replace)")
    names = [d.name for d in deployments]
    err_console.print(f"serving {', '.join(names)}; open the Prefect UI to see runs (Ctrl-C stops)")
    serve_all(limit=limit)


@app.command("backfill")
def backfill(
    store: str = typer.Option(..., "--store", help="Store id or name."),
    from_: str = typer.Option(..., "--from", help="First UTC day (YYYY-MM-DD)."),
    to: str = typer.Option(..., "--to", help="Last UTC day (YYYY-MM-DD), included."),
    curator: str = typer.Option("rules", help="rules (offline, default) or claude."),
    model: str | None = typer.Option(None, help="Model for the claude curator."),
    instructions: str | None = typer.Option(None, help="Guidance for every day's dream."),
    output_behavior: str = typer.Option("update_existing", "--output-behavior",
                                        help="update_existing (default) or create_new."),
    require_approval: bool = typer.Option(False, "--require-approval",
                                          help="Each day waits for `dreams approve` instead of promoting."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the days, sessions and dream ids; run nothing."),
    json_: bool = JsonOpt,
) -> None:
    """One dream per day, oldest first, over that day's sessions. Re-running a day changes nothing."""
    if curator not in ("rules", "claude"):
        fail(f"--curator must be rules or claude, got {curator!r}")
    if output_behavior not in ("create_new", "update_existing"):
        fail(f"--output-behavior must be create_new or update_existing, got {output_behavior!r}")
    from dreaming.catalog import Catalog
    from dreaming.ops import plan_backfill

    if dry_run:
        plan = [i.row() for i in plan_backfill(Catalog(), store, from_, to)]
        if json_:
            print_json({"dry_run": True, "days": plan})
        else:
            print_table(plan, ["day", "part", "sessions", "action", "dream_id", "status", "promotion"],
                        title=f"backfill plan for {store} (dry run)")
        return
    catalog = Catalog()
    plan = plan_backfill(catalog, store, from_, to)  # bad store / dates: exit 2 before Prefect starts
    prefect_defaults()
    with interrupt.summary(lambda: backfill_progress(catalog, store, plan)):  # on SIGINT/SIGTERM
        from flows.backfill import backfill as backfill_flow

        state = backfill_flow(store=store, start=from_, end=to, curator=curator, model=model,
                              instructions=instructions, output_behavior=output_behavior,
                              require_approval=require_approval, return_state=True)
    _finish(state, "backfill", json_, "days", BACKFILL_COLUMNS, "backfill of {store}", "failed_days")


@app.command("fleet")
def fleet(
    scope: str | None = typer.Option(None, "--scope", help="Tenant, scope or glob (acme, acme/support, acme/*)."),
    store: list[str] | None = typer.Option(None, "--store", help="A store id or name (repeatable)."),
    all_stores: bool = typer.Option(False, "--all-stores",
                                    help="Every selected store, not only those with new sessions."),
    curator: str = typer.Option("rules", help="rules (offline, default) or claude."),
    output_behavior: str = typer.Option("update_existing", "--output-behavior"),
    require_approval: bool = typer.Option(False, "--require-approval",
                                          help="Record each dream awaiting approval (`dreams approve`)."),
    runner: str = typer.Option("threads", help="threads (default) or dask (needs the `dask` extra)."),
    workers: int = typer.Option(4, min=1, help="Parallel dreams (threads or Dask workers)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the stores that would be dreamt."),
    json_: bool = JsonOpt,
) -> None:
    """Dream every store matching a selector, one dream per store, in parallel."""
    if runner not in ("threads", "dask"):
        fail(f"--runner must be threads or dask, got {runner!r}")
    if not (scope or store or all_stores):
        fail("choose stores: --scope, --store or --all-stores")
    from dreaming.catalog import Catalog
    from dreaming.models import utcnow
    from dreaming.ops import select_fleet_stores

    only_new = not all_stores
    chosen = select_fleet_stores(Catalog(), scope=scope, stores=store, only_new=only_new)
    if not chosen:  # before Prefect starts: a selector that matches nothing is bad input, not a success
        said = " ".join([f"--scope {scope}"] * bool(scope) + [f"--store {s}" for s in store or []]) or "--all-stores"
        if not (only_new and select_fleet_stores(Catalog(), scope=scope, stores=store, only_new=False)):
            fail(f"no store matches {said} (see `dreams store list`)")
        err_console.print(f"no store of {said} has sessions that were not dreamt over; nothing to do "
                          f"(--all-stores dreams them anyway)")
        if json_:
            print_list([]) if dry_run else print_json(
                {"stores": 0, "dry_run": False, "rows": [], "failed": [], "awaiting_approval": []})
        return
    if dry_run:
        rows = [{"store": s["name"], "store_id": s["id"], "scope": s["scope"]} for s in chosen]
        print_list(rows) if json_ else print_table(rows, ["store", "store_id", "scope"], title="fleet (dry run)")
        return
    prefect_defaults()
    started, catalog = utcnow(), Catalog()
    with interrupt.summary(lambda: fleet_progress(catalog, chosen, started)):  # on SIGINT/SIGTERM
        from flows.fleet import fleet_flow

        state = fleet_flow(runner, workers)(scope=scope, stores=store, only_new=only_new, curator=curator,
                                            output_behavior=output_behavior, require_approval=require_approval,
                                            max_concurrency=workers, return_state=True)
    _finish(state, "fleet", json_, "rows", FLEET_COLUMNS, "fleet: {stores} store(s)", "failed")


@app.command("reap")
def reap(
    store: str = typer.Option(..., "--store", help="Store id or name."),
    json_: bool = JsonOpt,
) -> None:
    """Mark failed (`crashed`) the store's dreams left running by a killed run (done at each dream's start too)."""
    from flows.hooks import reap_stale

    reaped = reap_stale(store)
    if json_:
        print_json({"reaped": reaped})
    else:
        console.print(f"{len(reaped)} stale dream(s) marked failed" + (": " + ", ".join(reaped) if reaped else ""))
