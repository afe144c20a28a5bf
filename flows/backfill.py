"""Backfill: one dream per UTC day, oldest first, each over that day's sessions.

    plan (dreaming.ops.plan_backfill) ──▶ for each day: dream(store, day, dream_id=stable(store, day))
                                      ──▶ summary table artifact (one row per day)

Idempotent: a day's dream id is derived from (store, day), so running a day again finds the
same dream: its candidate and changeset are reused (same bytes) and it is never promoted twice.
Only a day whose dream failed or was canceled gets a fresh attempt. A failed day is reported and
the next days go on; the run ends Failed (with the summary as its result) if any day failed.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed

from dreaming.catalog import Catalog
from dreaming.errors import NotFound
from dreaming.ops import BackfillDay, fill_outcome, plan_backfill
from flows.dream import dream as dream_flow
from flows.dream import run_dream_to_state
from tasks.output import artifact_key

FAILED_OUTCOMES = ("gate_failed", "conflict")


def day_failed(item: BackfillDay) -> bool:
    """A day failed when its dream did not complete or its promotion was refused by the gate/CAS."""
    if item.action == "skip":
        return False
    return item.status != "completed" or item.promotion in FAILED_OUTCOMES


@flow(name="backfill", log_prints=True)
def backfill(
    store: str,
    start: str,
    end: str,
    curator: Literal["rules", "claude"] = "rules",
    model: str | None = None,
    instructions: str | None = None,
    output_behavior: Literal["create_new", "update_existing"] = "update_existing",
    require_approval: bool = False,
    dry_run: bool = False,
) -> dict:
    """Dream ``store`` once per UTC day from ``start`` to ``end`` (YYYY-MM-DD, both included).

    A backfill never waits on a person: a day whose dream needs review (asked for, or the gate wants one)
    is recorded ``awaiting_approval`` and the backfill moves on; the summary lists what waits, for
    ``dreams approve``."""
    log = get_run_logger()
    cat = Catalog()
    plan = plan_backfill(cat, store, start, end)
    store_row = cat.get_store(store)
    if not dry_run:
        for item in plan:
            if item.action in ("skip", "done"):
                log.info("%s: %s (%d sessions)", item.day, item.action, item.sessions)
                continue
            state = run_dream_to_state(  # the dream holds the store's writer slot itself (flows/hooks.py)
                dream_flow, store=store_row["id"], dream_id=item.dream_id, curator=curator,
                **({"session_ids": item.session_ids} if item.session_ids else {"day": item.day}),
                model=model, instructions=instructions, output_behavior=output_behavior,
                require_approval=require_approval, approval_timeout_s=0,  # never pause: see docstring
            )
            try:
                fill_outcome(item, cat.get_dream(item.dream_id))
            except NotFound:
                item.status = "failed"
            if state.is_failed() or state.is_crashed() or state.is_cancelled():
                item.error = item.error or (state.message or state.type.value)
            log.info("%s: %s / %s", item.day, item.status, item.promotion)
    rows = [i.row() for i in plan]
    failed = [i for i in plan if not dry_run and day_failed(i)]
    waiting = [i.dream_id for i in plan if i.promotion == "awaiting_approval"]
    summary = {"store": store_row["name"], "store_id": store_row["id"], "start": plan[0].day, "end": plan[-1].day,
               "dry_run": dry_run, "days": rows, "failed_days": [i.day for i in failed], "awaiting_approval": waiting}
    create_table_artifact(
        key=artifact_key(store_row["name"], "backfill"), table=rows,
        description=f"Backfill of {store_row['name']} {plan[0].day}..{plan[-1].day}"
        + (f": {len(failed)} day(s) failed" if failed else ""),
    )
    if failed:
        why = "; ".join(f"{i.day}: {i.error or i.promotion or i.status}" for i in failed)
        return Failed(message=f"{len(failed)} of {len(plan)} days failed ({why})", data=summary)
    return Completed(message=f"{len(plan)} days" + (f", {len(waiting)} awaiting approval" if waiting else ""),
                     data=summary)
