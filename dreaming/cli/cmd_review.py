"""`dreams approve | reject | rollback | review show | review stats` and `dreams store history` (review
and promotion).

A dream whose flow run is paused waiting for approval gets the decision through Prefect
(``resume_flow_run`` with run input, exactly what the UI form does); otherwise the decision goes
straight through the catalog. Prefect is imported only when there is a flow run to resume.
"""

from __future__ import annotations

import getpass
import time
from typing import TYPE_CHECKING

import typer

from dreaming.cli import app, store_app
from dreaming.cli.common import JsonOpt, console, err_console, print_json, print_list, print_table

if TYPE_CHECKING:  # imported inside the commands: `dreams --help` stays quick
    from dreaming.catalog import Catalog
    from dreaming.promotion import ReviewOutcome

ByOpt = typer.Option(None, "--by", help="Who decides (default: user:<login>).")

review_app = typer.Typer(help="What waits for a person, and what review decisions teach the policy.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return f"user:{getpass.getuser()}"
    except Exception:  # no login name (containers)
        return "user"


def prefect_resumer(flow_run_id: str, run_input: dict) -> bool:
    """Resume ``flow_run_id`` with ``run_input`` if it is PAUSED; False if it is not (or unknown)."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.flow_runs import resume_flow_run
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            # no Prefect server configured: the run lived on an ephemeral API inside its own
            # process, which nobody else can reach; decide through the catalog
            return False
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        if run.state is None or not run.state.is_paused():
            return False
        resume_flow_run(flow_run_id, run_input=run_input)
        return True
    except Exception as e:  # no server, run gone: decide through the catalog instead
        err_console.print(f"[yellow]note:[/] could not resume flow run {flow_run_id} ({type(e).__name__}: {e}); "
                          "deciding through the catalog", highlight=False)
        return False


def _wait_for_decision(catalog: Catalog, dream_id: str, seconds: float):
    deadline = time.monotonic() + seconds
    d = catalog.get_dream(dream_id)
    while d.promotion.state == "awaiting_approval" and time.monotonic() < deadline:
        time.sleep(0.5)
        d = catalog.get_dream(dream_id)
    return d


def _report(catalog: Catalog, out: ReviewOutcome, json_: bool, wait: float) -> None:
    d = out.dream
    if out.action == "resumed":
        d = _wait_for_decision(catalog, d.id, wait) if wait > 0 else d
    if json_:
        print_json(d.to_api())
    else:
        p = d.promotion
        if out.action == "resumed" and p.state == "awaiting_approval":
            console.print(f"resumed flow run {out.flow_run_id}; it will record the decision on {d.id}")
        elif p.state == "promoted":
            console.print(f"{d.id}: promoted to {p.target_store_id} v{p.promoted_version} by {p.decided_by}"
                          + (" (already promoted)" if out.action == "noop" else ""))
        elif p.state == "rejected":
            console.print(f"{d.id}: rejected by {p.decided_by}" + (f": {p.reason}" if p.reason else ""))
        else:
            console.print(f"{d.id}: {p.state}" + (f": {p.reason}" if p.reason else ""))
    if d.promotion.state in ("gate_failed", "conflict"):
        raise typer.Exit(1)


@app.command("approve")
def approve(
    dream: str = typer.Argument(..., help="Dream id."),
    change: list[str] = typer.Option(None, "--change", help="Accept only these change ids (repeatable)."),
    note: str = typer.Option("", "--note", help="Why (kept with the dream)."),
    by: str | None = ByOpt,
    wait: float = typer.Option(30.0, help="Seconds to wait for a resumed flow run to record the decision."),
    json_: bool = JsonOpt,
) -> None:
    """Approve a dream awaiting approval (all changes, or only --change ones) and promote it."""
    from dreaming.catalog import Catalog
    from dreaming.promotion import review

    catalog = Catalog()
    out = review(catalog, dream, approve=True, decided_by=_who(by), change_ids=change or None, note=note or None,
                 resume=prefect_resumer)
    _report(catalog, out, json_, wait)


@app.command("reject")
def reject(
    dream: str = typer.Argument(..., help="Dream id."),
    reason: str = typer.Option("", "--reason", help="Why (kept with the dream)."),
    by: str | None = ByOpt,
    wait: float = typer.Option(30.0, help="Seconds to wait for a resumed flow run to record the decision."),
    json_: bool = JsonOpt,
) -> None:
    """Reject a dream awaiting approval: the store's head stays where it is."""
    from dreaming.catalog import Catalog
    from dreaming.promotion import review

    catalog = Catalog()
    out = review(catalog, dream, approve=False, decided_by=_who(by), note=reason or None, resume=prefect_resumer)
    _report(catalog, out, json_, wait)


@app.command("rollback")
def rollback_(
    store: str = typer.Argument(..., help="Store id or name."),
    to: int = typer.Option(..., "--to", help="The version whose content becomes the new head."),
    by: str | None = ByOpt,
    json_: bool = JsonOpt,
) -> None:
    """Make a new head version with an old version's content (recorded as a rollback; nothing deleted)."""
    from dreaming.catalog import Catalog
    from dreaming.history import rollback

    catalog = Catalog()
    version = rollback(catalog, store, to, _who(by))
    s = catalog.get_store(store)
    if json_:
        print_json({"store_id": s["id"], "name": s["name"], "head_version": s["head_version"], "version": version,
                    "rolled_back_to": to})
    else:
        console.print(f"{s['name']}: new head v{version} with the content of v{to}")


@store_app.command("history")
def history(
    store: str = typer.Argument(..., help="Store id or name."),
    memory: str | None = typer.Option(None, "--memory", help="A memory id or path: its created/modified/deleted."),
    json_: bool = JsonOpt,
) -> None:
    """List a store's versions with actor and message, or one memory's history."""
    from dreaming.catalog import Catalog
    from dreaming.history import memory_history, store_history

    catalog = Catalog()
    if memory:
        rows = memory_history(catalog, store, memory)
        if json_:
            print_list(rows)
            return
        for r in rows:
            r["actor"] = _actor(r["created_by"])
        print_table(rows, ["version", "event", "memory_id", "path", "actor", "message", "created_at"],
                    title=f"history of {memory}")
        return
    rows = store_history(catalog, store)
    if json_:
        print_list(rows)
        return
    for r in rows:
        r["actor"] = _actor(r["created_by"])
        r["head"] = "*" if r["is_head"] else ("" if r["on_head_line"] else "(candidate)")
    print_table(rows, ["version", "head", "parent_version", "actor", "message", "memory_count", "created_at"],
                title=f"versions of {store}")


def _actor(created_by: dict | None) -> str:
    if not created_by:
        return ""
    return created_by.get("type", "") + (f":{created_by['id']}" if created_by.get("id") else "")


@app.command("gate")
def gate(
    dream: str = typer.Argument(..., help="Dream id (a completed dream)."),
    data_docs: bool = typer.Option(False, "--data-docs", help="Also render GX Data Docs HTML under the lake."),
    json_: bool = JsonOpt,
) -> None:
    """Run the Great Expectations gate on a completed dream again, and show which expectation failed."""
    from dreaming.catalog import Catalog
    from dreaming.gate import gate_dream

    result = gate_dream(Catalog(), dream, data_docs=data_docs)
    if json_:
        print_json(result.to_dict())
    else:
        from rich.markdown import Markdown

        console.print(Markdown(result.to_markdown()))
        console.print(result.summary())
        if result.data_docs:
            console.print(f"Data Docs: file://{result.data_docs}")
    raise typer.Exit(0 if result.success else 1)


@review_app.command("show")
def review_show(
    dream: str = typer.Argument(..., help="Dream id."),
    json_: bool = JsonOpt,
) -> None:
    """Per change: promoted / waits / approved / rejected, the policy rule and why, whether people rejected
    it before, and its evidence sessions (what the Prefect review artifact shows)."""
    from dreaming.catalog import Catalog
    from dreaming.review_surface import review_rows

    catalog = Catalog()
    rows = review_rows(catalog, dream)
    if json_:
        print_list(rows)
        return
    d = catalog.get_dream(dream)
    console.print(f"{d.id}: {d.promotion.state}" + (f": {d.promotion.reason}" if d.promotion.reason else ""),
                  highlight=False)
    for r in rows:
        r["evidence"] = ", ".join(r["evidence_sessions"])
    print_table(rows, ["change_id", "op", "kind", "status", "rule", "why", "previously_rejected", "evidence", "text"],
                title=f"changes of {d.id}")


@review_app.command("stats")
def review_stats_(
    store: str | None = typer.Argument(None, help="Store id or name (default: every store)."),
    json_: bool = JsonOpt,
) -> None:
    """Approval and rejection counts and rates per change kind (op:kind), per policy rule and per reason;
    the kinds this store's policy now holds because people kept rejecting them."""
    from dreaming.catalog import Catalog
    from dreaming.review_stats import stats

    catalog = Catalog()
    store_id = catalog.get_store(store)["id"] if store else None
    body = stats(catalog, store_id)
    if json_:
        print_json(body)
        return
    console.print(f"{body['decisions']} decisions ({body['by_person']} by people, {body['by_policy']} by the policy)"
                  + (f" in {store}" if store else ""), highlight=False)
    cols = ["key", "approved", "rejected", "approval_rate", "rejection_rate"]
    print_table(body["per_kind"], cols, title="per change kind (op:kind)")
    print_table(body["per_rule"], cols, title="per policy rule")
    print_table(body["per_reason"], cols, title="per reason (people's decisions)")
    for kind, why in body["learned_holds"].items():
        console.print(f"[yellow]now waits for a person:[/] {kind}: {why}", highlight=False)
