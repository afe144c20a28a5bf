"""CURATE: the curator (offline rules, or Claude) proposes a typed changeset with evidence."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreaming.curators.base import CurationResult
from dreaming.dreams import DreamInputs, DreamService
from tasks.retry import retry_transient


@task(
    name="curate",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,  # LLM 429/529/5xx/timeouts; never a deterministic failure
)
def curate(inputs: DreamInputs) -> CurationResult:
    """Propose changes; model calls that fail transiently are retried by Prefect with backoff."""
    result = DreamService().curate(inputs)
    log = get_run_logger()
    log.info("curator %s proposed %d changes", inputs.dream.curator, len(result.changes))
    for note in result.notes:
        log.warning(note)
    return result
