"""READ: the store's base version plus the signals of the dream's sessions."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreaming.dreams import DreamInputs, DreamService, Selection
from dreaming.errors import NothingToDream
from dreaming.models import Dream
from tasks.retry import retry_transient


@task(name="begin", cache_policy=NO_CACHE)
def begin(store: str, selection: Selection, dream_id: str | None, flow_run_id: str | None,
          **options) -> Dream | str:
    """Create the dream record (pending), or return the existing one when a run resumes it. A selection
    without sessions records nothing: the reason is returned instead (the flow ends ``Skipped``)."""
    svc = DreamService()
    try:
        d = svc.create(store, selection, dream_id=dream_id, flow_run_id=flow_run_id, lease=True, **options)
    except NothingToDream as e:
        get_run_logger().info("%s", e)
        return str(e)
    if flow_run_id and d.flow_run_id != flow_run_id:
        d = svc.catalog.update_dream(d.id, lambda x: setattr(x, "flow_run_id", flow_run_id))
    get_run_logger().info("dream %s over %d sessions of store %s (%s)", d.id, len(d.session_ids), store, d.status)
    return d


@task(name="read", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_transient)
def read_inputs(dream_id: str) -> DreamInputs:
    """Read the base version (immutable) and extract signals from the sessions with DuckDB."""
    inputs = DreamService().read(dream_id)
    s = inputs.signals
    get_run_logger().info(
        "read v%s: %d memories; %d sessions → %d errors, %d preference statements, %d tool sequences",
        inputs.dream.base_version, len(inputs.base), len(inputs.sessions), len(s.errors), len(s.preferences),
        len(s.tool_sequences),
    )
    return inputs
