"""REVIEW: ask for approval, wait for a person's decision in the Prefect UI, or record a rejection."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run

from dreaming import promotion
from dreaming.catalog import Catalog
from dreaming.models import Dream
from tasks.promote import ApprovalInput


@task(name="request-approval", cache_policy=NO_CACHE)
def request_approval_task(dream_id: str) -> Dream:
    """Record that the dream awaits a person's decision (the CLI's `dreams approve` reads this)."""
    return promotion.request_approval(Catalog(), dream_id)


@task(name="reject", cache_policy=NO_CACHE)
def reject_task(dream_id: str, decided_by: str, reason: str | None) -> Dream:
    """Record a rejection: the head stays where it is, the reason is kept on the dream."""
    return promotion.reject(Catalog(), dream_id, decided_by, reason)


async def await_approval(dream: Dream, timeout_s: int, details: str = "") -> ApprovalInput | None:
    """Pause the run with an approval form (approve / reject, a note, optional change ids).

    Returns None without pausing when ``timeout_s`` is 0 (review happens from the CLI), or when
    nobody answered in time (the dream stays awaiting approval; `dreams approve` still works).
    """
    if timeout_s <= 0:
        return None
    description = (
        f"## Dream `{dream.id}`\n\nChanges: {dream.counts}. Candidate v{dream.candidate_version} of "
        f"`{dream.store_id}` (base v{dream.base_version}); the diff is in this run's artifacts.\n\n"
        "Approve to promote, or reject with a note. To accept only some changes, list their ids."
    ) + (f"\n\n{details}" if details else "")  # details: what waits and why (flows/dream.py publish_review)
    try:
        return await apause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description, approve=False),
            timeout=timeout_s,
        )
    except FlowPauseTimeout:
        get_run_logger().warning("nobody reviewed dream %s in %ss; it stays awaiting approval", dream.id, timeout_s)
        return None
