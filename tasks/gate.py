"""GATE: Great Expectations on the candidate version and the changeset (thin wrapper).

GX is imported inside ``dreaming.gate`` only when the task runs. A failed gate is deterministic:
the task does not retry and returns the result (the flow ends the run in a "Rejected" state).
"""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dreaming.catalog import Catalog
from dreaming.gate import gate_dream


def _key(dream_id: str, what: str) -> str:
    return "gate-" + re.sub(r"[^a-z0-9]+", "-", dream_id.lower()).strip("-") + f"-{what}"


@task(name="gate", cache_policy=NO_CACHE, retries=0)
def gate_task(dream_id: str, mode: str | None = None, data_docs: bool = False) -> dict:
    """Run the gate suites on a dream; returns the GateResult as a dict plus a one-line ``summary``.

    ``mode``: ``auto`` | ``review`` (default: ``review`` when the dream requires approval).
    """
    result = gate_dream(Catalog(), dream_id, mode=mode, data_docs=data_docs)
    create_markdown_artifact(key=_key(dream_id, "summary"), markdown=result.to_markdown(),
                             description=f"Gate of dream {dream_id}: {result.summary()}")
    create_table_artifact(key=_key(dream_id, "results"), table=result.table_rows(),
                          description=f"Expectation results of dream {dream_id}")
    log = get_run_logger()
    (log.info if result.success else log.warning)("dream %s: %s", dream_id, result.summary())
    return {**result.to_dict(), "summary": result.summary(), "dream_id": dream_id}
