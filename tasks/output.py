"""OUTPUT: the candidate version, the changeset, the report, and the diff as UI artifacts."""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dreaming.curators.base import CurationResult
from dreaming.dreams import DreamInputs, DreamService
from dreaming.models import Dream
from dreaming.report import diff_rows, render_report


def artifact_key(store_name: str, what: str) -> str:
    """Artifact keys: lowercase letters, digits and dashes; one collection per store."""
    slug = re.sub(r"[^a-z0-9]+", "-", store_name.lower()).strip("-")[:40] or "store"
    return f"dream-{slug}-{what}"


@task(name="output", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def write_output(inputs: DreamInputs, result: CurationResult) -> Dream:
    """Write the candidate store version and changeset (atomic), then publish the diff."""
    svc = DreamService()
    d = svc.output(inputs, result)
    changes = svc.changes(d.id)
    name = inputs.store["name"]
    create_markdown_artifact(key=artifact_key(name, "diff"), markdown=render_report(d, changes, result.notes),
                             description=f"What dream {d.id} proposes for {name}")
    if changes:
        create_table_artifact(key=artifact_key(name, "changes"), table=diff_rows(changes),
                              description=f"Changes of dream {d.id}")
    get_run_logger().info("candidate v%s written: %s", d.candidate_version, d.counts)
    return d
