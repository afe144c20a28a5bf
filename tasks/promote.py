"""PROMOTE: compare-and-swap of the store's head (thin wrapper), and the approval form's input."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput

from dreaming.catalog import Catalog
from dreaming.models import Dream
from dreaming.promotion import promote


class ApprovalInput(RunInput):
    """The approval form shown on a paused dream run (and what `dreams approve` sends)."""

    approve: bool
    note: str = ""
    change_ids: list[str] = []
    decided_by: str = ""  # filled in by `dreams approve/reject`; empty when answered in the UI


@task(name="promote", cache_policy=NO_CACHE, retries=0)
def promote_task(
    dream_id: str,
    decided_by: str,
    accepted_change_ids: list[str] | None = None,
    reason: str | None = None,
) -> Dream:
    """Promote the dream (or only the accepted changes); the dream's promotion.state says how it ended
    (promoted | conflict | gate_failed). Never promotes twice; a crash leaves the head unmoved."""
    d = promote(Catalog(), dream_id, decided_by, accepted_change_ids, reason)
    get_run_logger().info("dream %s: promotion %s%s", dream_id, d.promotion.state,
                          f" ({d.promotion.reason})" if d.promotion.reason else "")
    return d
