"""OUTCOMES: after a promotion, the store's before/after figures as the run's ``outcomes-<store>`` artifact.

Informational: the dream is already promoted, so a failure here is logged as a warning and never fails
(or retries) the run. The figures are computed by ``dreaming.outcomes`` (docs/outcomes.md), the same
report as ``dreams outcomes STORE``.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="publish-outcomes", cache_policy=NO_CACHE, retries=0)
def publish_outcomes(store_id: str) -> dict | None:
    """Compute the outcomes of ``store_id`` and publish them as a markdown artifact; the report's verdict
    counts, or None when they could not be computed (logged)."""
    from dreaming.outcomes.artifact import record

    log = get_run_logger()
    try:
        rep = record(store_id)
    except Exception as e:  # noqa: BLE001 - an artifact must not undo a promotion's success
        log.warning("outcomes of store %s not published: %s: %s", store_id, type(e).__name__, e)
        return None
    log.info("outcomes of store %s: %d sessions, verdicts %s", store_id, rep["sessions"], rep["verdicts"])
    return rep["verdicts"]
