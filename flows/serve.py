"""`dreams serve`: the prefect.yaml deployments on one box through ``serve()`` (no pool, no worker).

The deployments are read from prefect.yaml itself (names, entrypoints, parameters, schedules,
tags, concurrency limits), so the two ways to run can never drift apart. ``{{ $VAR }}`` in the
parameters is resolved from the environment, as `prefect deploy` does.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import yaml
from prefect import serve
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron, Interval

from dreaming.errors import BadInput, Conflict
from dreaming.settings import PROJECT_ROOT

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def read_prefect_yaml(path: Path = PREFECT_YAML) -> list[dict]:
    """The ``deployments`` of prefect.yaml, with ``{{ $VAR }}`` placeholders resolved from the env."""
    from prefect.utilities.templating import apply_values

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise BadInput(f"cannot read deployments: {e}", file=str(path)) from None
    deployments = (doc or {}).get("deployments") or []
    if not deployments:
        raise BadInput("no deployments declared", file=str(path), field="deployments")
    return apply_values(deployments, dict(os.environ), remove_notset=False)


def load_entrypoint(entrypoint: str):
    """``flows/dream.py:dream`` or ``flows.fleet:fleet`` → the flow object (imported as a module of this project)."""
    file, _, attr = entrypoint.partition(":")
    module = file.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), attr)


def _schedules(spec: dict) -> list:
    out = []
    for s in spec.get("schedules") or []:
        kw = {"timezone": s.get("timezone", "UTC"), "active": s.get("active", True)}
        if "cron" in s:
            out.append(Cron(s["cron"], **kw))
        elif "interval" in s:
            out.append(Interval(s["interval"], **kw))
        else:
            raise BadInput(f"deployment {spec['name']}: only cron and interval schedules are served",
                           file=str(PREFECT_YAML), field="schedules")
    return out


def build_deployments(path: Path = PREFECT_YAML) -> list:
    """``RunnerDeployment`` objects equal to prefect.yaml's deployments (work pool aside)."""
    out = []
    for spec in read_prefect_yaml(path):
        flow = load_entrypoint(spec["entrypoint"])
        module_path = ".py" not in spec["entrypoint"]  # `flows.fleet:fleet`: served by import, as deployed
        out.append(flow.to_deployment(
            name=spec["name"],
            entrypoint_type=EntrypointType.MODULE_PATH if module_path else EntrypointType.FILE_PATH,
            description=spec.get("description"),
            tags=spec.get("tags"),
            parameters=spec.get("parameters") or {},
            schedules=_schedules(spec),
            concurrency_limit=spec.get("concurrency_limit"),
        ))
    return out


def pool_deployments(deployments: list) -> list[dict]:
    """Which of ``deployments`` the server already has on a work pool under the same name (``prefect deploy``).
    Serving over one would keep the pool's record (its storage, its pull step): a served run could then be
    started from the deploy's storage instead of this checkout."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = []
    with get_client(sync_client=True) as client:
        for d in deployments:
            name = f"{d.flow_name}/{d.name}"
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                found.append({"name": name, "id": existing.id, "work_pool": existing.work_pool_name})
    return found


def clear_pool_deployments(deployments: list, replace: bool = False) -> list[str]:
    """Refuse (``Conflict``) to serve deployments that a work pool already has under the same names, or with
    ``replace`` delete those first. Returns the names deleted."""
    found = pool_deployments(deployments)
    if not found:
        return []
    if not replace:
        names = ", ".join(f"{f['name']} (work pool {f['work_pool']})" for f in found)
        raise Conflict(f"the Prefect server already has {names} from `prefect deploy`: use one way per server, "
                       f"the worker or `dreams serve --replace` (which deletes those deployments first)")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for f in found:
            client.delete_deployment(f["id"])
    return [f["name"] for f in found]


def serve_all(limit: int | None = None, path: Path = PREFECT_YAML, replace: bool = False) -> None:
    """Register the deployments and run their flow runs as subprocesses of this process (blocks).

    Runs from the project root, so that entrypoints resolve like they do for a worker. Deployments of
    the same names on a work pool are refused, or deleted first with ``replace``.
    """
    os.chdir(PROJECT_ROOT)
    deployments = build_deployments(path)
    clear_pool_deployments(deployments, replace=replace)
    serve(*deployments, limit=limit)


if __name__ == "__main__":  # pragma: no cover
    serve_all()
