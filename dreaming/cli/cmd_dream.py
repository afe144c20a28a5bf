"""`dreams run | list | show | diff | cancel | archive`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dreaming.cli import app, interrupt
from dreaming.cli.common import (JsonOpt, console, err_console, fail, parse_since, prefect_defaults, print_json,
                                 print_list, print_table, read_instructions)

if TYPE_CHECKING:  # imported inside the commands: `dreams --help` stays quick
    from dreaming.dreams import Selection
    from dreaming.models import Dream


def _selection(session: list[str] | None, since: str | None, all_: bool) -> Selection:
    from dreaming.dreams import Selection

    given = sum(bool(x) for x in (session, since, all_))
    if given > 1:
        fail("choose one of --session, --since and --all")
    if session:
        return Selection(session_ids=session)
    if since:
        return Selection(since=parse_since(since))
    return Selection(all_new=True)


def run_dream_flow(dream: Dream, *, approval_timeout_s: int = 0) -> Dream:
    """Run the Prefect `dream` flow for an already-recorded dream; returns its final record."""
    prefect_defaults()
    from dreaming.catalog import Catalog
    from flows.dream import run_dream_to_state

    run_dream_to_state(store=dream.store_id, dream_id=dream.id, curator=dream.curator,
                       require_approval=dream.require_approval, approval_timeout_s=approval_timeout_s)
    return Catalog().get_dream(dream.id)


def exit_code(d: Dream) -> int:
    """0 success; 1 a run that ended failed, canceled, gate-failed, rejected or in conflict."""
    if d.status != "completed" or d.promotion.state in ("gate_failed", "rejected", "conflict"):
        return 1
    return 0


def print_outcome(d: Dream) -> None:
    colour = "green" if exit_code(d) == 0 else "red"
    console.print(f"dream [bold]{d.id}[/]: [{colour}]{d.status}[/], promotion [bold]{d.promotion.state}[/]")
    if d.error:
        console.print(f"  error {d.error.type}: {d.error.message}")
    if d.counts:
        console.print("  changes: " + ", ".join(f"{op} {n}" for op, n in d.counts.items() if n))
    if d.candidate_version:
        console.print(f"  candidate: {d.store_id} v{d.candidate_version} (base v{d.base_version})")
    if d.promotion.state == "awaiting_approval":
        console.print(f"  review with `dreams diff {d.id}`, then `dreams approve {d.id}` or `dreams reject {d.id}`")


@app.command("run")
def run(
    store: str = typer.Option(..., "--store", help="Store id or name."),
    session: list[str] | None = typer.Option(None, "--session", help="A session id (repeatable)."),
    since: str | None = typer.Option(None, help="Sessions started within this window (7d, 12h) or since a date."),
    all_: bool = typer.Option(False, "--all", help="All sessions of the store's scope not yet dreamt over (default)."),
    curator: str = typer.Option("rules", help="rules (offline, default) or claude."),
    model: str | None = typer.Option(None, help="Model for the claude curator."),
    instructions: str | None = typer.Option(None, help="Guidance for the dream (≤4,096 characters)."),
    instructions_file: Path | None = typer.Option(None, "--instructions-file", help="Read instructions from a file."),
    output_behavior: str = typer.Option("update_existing", "--output-behavior",
                                        help="update_existing (default: a new version of this store, promoted to it) or create_new (a new store)."),
    require_approval: bool = typer.Option(False, "--require-approval", help="Wait for `dreams approve`."),
    json_: bool = JsonOpt,
) -> None:
    """Run a dream on a store: read → curate → output → gate → promote (or await approval)."""
    from dreaming import leases
    from dreaming.dreams import DreamService
    from dreaming.errors import NothingToDream

    instructions = read_instructions(instructions, instructions_file)
    if curator == "claude":
        from dreaming.catalog import Catalog
        from dreaming.curators.claude import check_credentials

        check_credentials(Catalog().settings)
    svc = DreamService()
    try:
        d = svc.create(store, _selection(session, since, all_), curator=curator, model=model,
                       instructions=instructions, output_behavior=output_behavior, require_approval=require_approval,
                       lease=True)
    except NothingToDream as e:  # a quiet night: said, exit 0, nothing recorded
        if json_:
            print_json({"type": "nothing_to_dream", "store": store, "message": str(e)})
        else:
            err_console.print(str(e), highlight=False)
        raise typer.Exit(0) from None
    left = getattr(svc, "left_over", 0)
    if not json_:
        n = len(d.session_ids)
        err_console.print(f"dreaming over {n} session{'' if n == 1 else 's'} of {store} as {d.id} …")
    if left:  # a dream takes at most max_sessions_per_dream: the rest are not dropped, they wait
        err_console.print(f"{left} more new session{'' if left == 1 else 's'} wait for the next dream (a dream takes at "
                          f"most {svc.settings.max_sessions_per_dream}; DREAMS_MAX_SESSIONS_PER_DREAM); run again, "
                          f"or `dreams backfill`, which splits a day into parts")
    cut_off = [f"dream {d.id} cut off, nothing half-written: it is failed (crashed) by its flow's crash hook, "
               f"or by `dreams reap --store {store}` once its lease expires"]
    with leases.hold(svc.catalog, d.id), interrupt.summary(lambda: cut_off):  # from now on: if this process
        d = run_dream_flow(d)                                                 # dies, `dreams reap` fails it
    if json_:
        print_json(d.to_api())
    else:
        print_outcome(d)
    raise typer.Exit(exit_code(d))


@app.command("list")
def list_(
    store: str | None = typer.Option(None, "--store", help="Only this store's dreams."),
    status: list[str] | None = typer.Option(None, "--status", help="Filter by status (repeatable)."),
    include_archived: bool = typer.Option(False, "--include-archived"),
    limit: int = typer.Option(20, min=1, max=1000),
    json_: bool = JsonOpt,
) -> None:
    """List dreams, newest first (archived ones hidden unless asked)."""
    from dreaming.catalog_read import open_catalog
    from dreaming.schema import DREAM_STATUSES

    bad = sorted(set(status or []) - set(DREAM_STATUSES))
    if bad:
        fail(f"--status {', '.join(bad)}: not a dream status; choose from {', '.join(DREAM_STATUSES)}")
    cat = open_catalog()  # plain sqlite3 reads where it can: no SQLAlchemy
    store_id = cat.get_store(store)["id"] if store else None
    dreams = cat.list_dreams(store_id=store_id, statuses=status, include_archived=include_archived, limit=limit)
    if json_:
        print_list(d.to_api() for d in dreams)
        return
    names = {s["id"]: s["name"] for s in cat.list_stores(include_archived=True)}
    rows = [{"id": d.id, "status": d.status, "store": names.get(d.store_id, d.store_id),
             "sessions": len(d.session_ids),
             "changes": sum(n for op, n in d.counts.items() if op != "keep"), "promotion": d.promotion.state,
             "created_at": d.created_at} for d in dreams]
    print_table(rows, ["id", "status", "store", "sessions", "changes", "promotion", "created_at"], title="dreams")


@app.command("show")
def show(dream: str = typer.Argument(..., help="Dream id."), json_: bool = JsonOpt) -> None:
    """Show one dream (Anthropic's dream object plus ours)."""
    from dreaming.catalog import Catalog

    d = Catalog().get_dream(dream)
    if json_:
        print_json(d.to_api())
    else:
        print_outcome(d)
        console.print(f"  sessions: {len(d.session_ids)} · curator {d.curator} · created {d.created_at:%Y-%m-%d %H:%M:%S}")


@app.command("diff")
def diff(dream: str = typer.Argument(..., help="Dream id."), json_: bool = JsonOpt) -> None:
    """The changes a dream proposes, grouped by op, with reasons and evidence."""
    from rich.text import Text

    from dreaming.dreams import DreamService
    from dreaming.report import diff_rows, render_report

    svc = DreamService()
    d = svc.catalog.get_dream(dream)
    changes = svc.changes(dream)
    if json_:
        print_list(diff_rows(changes))
    else:
        # verbatim: a Markdown renderer would eat `<n>`, `<id>` and turn `__main__` into bold "main"
        console.print(Text(render_report(d, changes)), soft_wrap=True, highlight=False)


@app.command("cancel")
def cancel(dream: str = typer.Argument(..., help="Dream id."), json_: bool = JsonOpt) -> None:
    """Cancel a pending or running dream (and its Prefect flow run)."""
    from dreaming.dreams import DreamService

    d = DreamService().cancel(dream)
    if d.flow_run_id:
        _cancel_flow_run(d.flow_run_id)
    print_json(d.to_api()) if json_ else console.print(f"dream {d.id}: {d.status}")


def _cancel_flow_run(flow_run_id: str) -> None:
    """Best effort: ask Prefect to cancel the run; the dream is already canceled in the catalog."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelling

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
            if run.state and not run.state.is_final():
                client.set_flow_run_state(flow_run_id, Cancelling(), force=True)
    except Exception as e:  # noqa: BLE001 - the catalog already says canceled; steps check it
        err_console.print(f"[yellow]note:[/] could not reach Prefect to cancel flow run {flow_run_id}: {e}")


@app.command("archive")
def archive(dream: str = typer.Argument(..., help="Dream id."), json_: bool = JsonOpt) -> None:
    """Archive a finished dream (hidden from `dreams list`; still readable by id)."""
    from dreaming.dreams import DreamService

    d = DreamService().archive(dream)
    print_json(d.to_api()) if json_ else console.print(f"dream {d.id} archived")
