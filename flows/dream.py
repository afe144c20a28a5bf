"""The dream: read → curate → output → gate → (review) → promote.

    store @ base version + sessions ──READ──▶ signals (DuckDB)
                                    ──CURATE──▶ typed changeset with evidence (rules | Claude)
                                    ──OUTPUT──▶ candidate version (unpromoted) + diff artifacts
                                    ──GATE────▶ Great Expectations on candidate + changeset
                                    ──REVIEW──▶ per change: the store's review policy promotes the
                                                routine part at once; a person approves the rest
                                                (or everything, with require_approval) in the UI / CLI
                                    ──PROMOTE─▶ compare-and-swap of the store's head

Each step is a thin task over dreaming.dreams / dreaming.gate / dreaming.promotion. A retried
run resumes the same dream (its id derives from the flow run) and never promotes twice. While the
dream runs (read → output) this process renews its lease in the catalog (dreaming.leases), so a
dream whose process was killed is reaped even when Prefect still says RUNNING. It also holds its
store's writer slot while it works (read → gate, then promote/reject) and never while it is paused for
a person, so an approval can wait its full ``approval_timeout_s`` (flows/hooks.py ``writer_slot``).

The flow is ``async`` only so that Prefect runs it on its async engine, which does not wait for
the heartbeat thread at the end of a run (the sync engine joins it, ~1 s per dream); the steps
are ordinary synchronous tasks. From synchronous code, run it with ``run_dream_to_state``.
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import SyncClientContext
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, State

from dreaming import ids
from dreaming.dreams import DreamCanceled, Selection
from dreaming.models import Dream
from dreaming.errors import DreamFailure
from dreaming import notifications
from flows.hooks import (dream_lease, dream_selection, mark_canceled, mark_crashed, on_error, reap_stale,
                         writer_slot, writer_slot_name)
from tasks.curate import curate
from tasks.gate import gate_task
from tasks.outcomes import publish_outcomes
from tasks.output import write_output
from tasks.promote import promote_task
from tasks.review import await_approval, reject_task, request_approval_task
from tasks.read import begin, read_inputs


@task(name="promote-per-change", cache_policy=NO_CACHE, retries=0)
def promote_auto_task(dream_id: str, review_policy: dict | None = None) -> Dream:
    """Automatic mode under the store's review policy (``review_policy``: fields overriding it): the routine
    changes promote at once, the rest waits (dreaming.promotion.promote_auto)."""
    from dreaming.catalog import Catalog
    from dreaming.promotion import promote_auto

    d = promote_auto(Catalog(), dream_id, review_policy)
    get_run_logger().info("dream %s: promotion %s%s", dream_id, d.promotion.state,
                          f" ({d.promotion.reason})" if d.promotion.reason else "")
    return d


@task(name="review-surface", cache_policy=NO_CACHE, retries=0)
def publish_review(dream_id: str) -> str:
    """The awaiting-approval artifact (``review-<dream>``): per change why it waits (the policy's rule),
    whether people rejected it before, and its evidence; returns the markdown (also the form's text)."""
    from dreaming.catalog import Catalog
    from dreaming.review_surface import review_markdown

    md = review_markdown(Catalog(), dream_id)
    key = "review-" + "".join(ch if ch.isalnum() else "-" for ch in dream_id.lower()).strip("-")
    create_markdown_artifact(key=key, markdown=md, description=f"What waits for a person in dream {dream_id}",
                             _sync=True)  # a sync task of the async flow: else a coroutine nobody awaits
    return md


@flow(name="dream", retries=1, retry_delay_seconds=10, log_prints=True,
      on_cancellation=[mark_canceled], on_crashed=[mark_crashed])
async def dream(
    store: str,
    session_ids: list[str] | None = None,
    since: str | None = None,
    day: str | None = None,
    curator: Literal["rules", "claude"] = "rules",
    model: str | None = None,
    instructions: str | None = None,
    output_behavior: Literal["create_new", "update_existing"] = "update_existing",
    require_approval: bool = False,
    approval_timeout_s: int = 3600,
    dream_id: str | None = None,
    webhooks: list[str] | None = None,  # this deployment's webhook URLs (dreaming.notifications)
    review_policy: dict | None = None,  # fields overriding the store's review policy (dreaming.review_policy)
    outcomes: bool = True,  # after a promotion, publish the store's outcomes artifact (tasks/outcomes.py)
) -> dict:
    """Consolidate one memory store from its sessions (all not yet dreamt over, unless narrowed).

    ``approval_timeout_s=0`` records the dream as awaiting approval and returns at once, for
    review from the CLI (`dreams approve`); otherwise the run pauses with an approval form.
    ``review_policy``: fields overriding the store's review policy for this run (docs/review.md), e.g.
    ``{"default": "wait"}`` or ``{"min_confidence": 0.8}``; a deployment parameter like any other.
    ``outcomes``: after a promotion, the store's before/after figures become the run's ``outcomes-<store>``
    artifact (docs/outcomes.md); off for stores where that read is not worth a nightly run.
    """

    def promoted(d: Dream) -> dict:
        if outcomes and d.promotion.state == "promoted":  # what the memory did so far, where people look
            publish_outcomes(d.promotion.target_store_id or d.store_id)
        return d.to_api()

    with SyncClientContext.get_or_create():  # one API client for all the (synchronous) steps
        log = get_run_logger()
        selection: Selection = dream_selection(session_ids, since, day)
        dream_id = dream_id or ids.stable_id(ids.DREAM, flow_run.id)  # a retried run resumes the same dream
        notifications.subscribe(None, dream_id, webhooks)             # the deployment's webhooks, kept with it
        slot = writer_slot_name(store)                                 # one writer per store (flows/hooks.py)
        d = None
        try:
            async with writer_slot(slot):                        # held while it works, not while paused
                reap_stale(store, exclude=[dream_id])            # dreams left running by killed runs
                d = begin(store, selection, dream_id, str(flow_run.id),
                          curator=curator, model=model, instructions=instructions,
                          output_behavior=output_behavior, require_approval=require_approval)
                if isinstance(d, str):                           # no session to dream over: nothing recorded
                    d, why = None, d
                    return Completed(name="Skipped", message=why)
                if d.status != "completed":
                    with dream_lease(d.id):                      # renewed while it runs; reaped if we die
                        inputs = read_inputs(d.id)               # READ
                        result = curate(inputs)                  # CURATE
                        d = write_output(inputs, result)         # OUTPUT
                if d.promotion.state == "promoted":
                    return d.to_api()                            # a resumed run never promotes twice
                gate = gate_task(d.id)                           # GATE
                if not gate["success"]:
                    notifications.emit(None, d.id, "gate_failed")  # webhooks (docs/review.md)
                    return Completed(name="Rejected", message=gate["summary"])
                if not require_approval:                         # REVIEW per change, by the store's policy
                    d = promote_auto_task(d.id, review_policy)   # PROMOTE what is routine, at once
                    log.info("dream %s: promotion %s", d.id, d.promotion.state)
                    if d.promotion.state != "awaiting_approval":
                        return promoted(d)
                request_approval_task(d.id)
                details = publish_review(d.id)
            # Waiting on a person: no writer slot and no lease held, so the pause lasts its full timeout.
            decision = await await_approval(d, approval_timeout_s, details)
            if decision is None:
                why = d.promotion.reason or gate["summary"]
                return Completed(name="AwaitingApproval", message=f"{why}; `dreams approve {d.id}`")
            who = decision.decided_by or "prefect-ui"
            async with writer_slot(slot):
                if not decision.approve:
                    reject_task(d.id, decided_by=who, reason=decision.note)
                    return Completed(name="Rejected", message=f"rejected in review: {decision.note}")
                d = promote_task(d.id, decided_by=who, accepted_change_ids=decision.change_ids or None,
                                 reason=decision.note)
            log.info("dream %s: promotion %s", d.id, d.promotion.state)
            return promoted(d)
        except DreamCanceled:
            return Cancelled(message=f"dream {dream_id} was canceled")
        except DreamFailure as e:
            if d is not None:
                on_error(d.id, e, final=True)
            raise
        except Exception as e:
            if d is not None:
                on_error(d.id, e, final=flow_run.run_count > 1)
            raise


def run_dream_to_state(dream_flow: Any = dream, **params) -> State:
    """Run the dream flow from synchronous code (the CLI, a backfill day, a fleet thread) and
    return its final state. It runs on an event loop of the calling thread, so dreams in several
    threads run side by side, and a call inside a flow run becomes its subflow run. Where this
    thread already runs a loop (a notebook cell), it runs on a helper thread, with this context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(dream_flow(**params, return_state=True))
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dream") as pool:
        return pool.submit(ctx.run, asyncio.run, dream_flow(**params, return_state=True)).result()
