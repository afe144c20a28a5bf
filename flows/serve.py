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
from prefect.schedules import Cron, Interval

from dreaming.errors import BadInput
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
    """``flows/dream.py:dream`` → the flow object (imported as a module of this project)."""
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
        out.append(flow.to_deployment(
            name=spec["name"],
            description=spec.get("description"),
            tags=spec.get("tags"),
            parameters=spec.get("parameters") or {},
            schedules=_schedules(spec),
            concurrency_limit=spec.get("concurrency_limit"),
        ))
    return out


def serve_all(limit: int | None = None, path: Path = PREFECT_YAML) -> None:
    """Register the deployments and run their flow runs as subprocesses of this process (blocks).

    Runs from the project root, so that entrypoints resolve like they do for a worker.
    """
    os.chdir(PROJECT_ROOT)
    serve(*build_deployments(path), limit=limit)


if __name__ == "__main__":  # pragma: no cover
    serve_all()
