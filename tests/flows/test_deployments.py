"""prefect.yaml: the deployments deploy, the scheduler creates runs for the cron ones (guards the
SQLAlchemy 2.1 trap), `serve()` builds the same deployments, and a scheduled run dreams the
previous UTC day of its *scheduled* time."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flows.hooks import scheduled_selection

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _yaml() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def test_prefect_yaml_declares_the_deployments_without_absolute_paths():
    doc = _yaml()
    deps = {d["name"]: d for d in doc["deployments"]}
    assert set(deps) >= {"nightly", "weekly", "adhoc", "backfill"}
    assert deps["nightly"]["schedules"][0]["timezone"] == "UTC" and deps["nightly"]["schedules"][0]["cron"]
    assert deps["weekly"]["schedules"][0]["timezone"] == "UTC"
    assert "schedules" not in deps["adhoc"] and "schedules" not in deps["backfill"]
    assert deps["backfill"]["entrypoint"] == "flows/backfill.py:backfill"
    for name in ("nightly", "weekly"):
        assert deps[name]["entrypoint"] == "flows/dream.py:dream"
        assert deps[name]["parameters"]["output_behavior"] == "update_existing"
    for d in deps.values():
        assert d["work_pool"]["name"] == "local-process"
    # A dream run can pause for approval: a deployment concurrency limit would crash it (Prefect revokes
    # the lease at Paused, the engine's renewal gets 410 Gone); the dream holds its store's writer slot.
    for name, d in deps.items():
        paused = d["entrypoint"] == "flows/dream.py:dream"
        assert ("concurrency_limit" not in d) if paused else d["concurrency_limit"] == 1, name
    pull_dir = doc["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert pull_dir.startswith("{{ $") and "/work" not in PREFECT_YAML.read_text().split("deployments:")[1]


def test_scheduled_window_is_anchored_on_the_scheduled_time_not_the_clock():
    nightly = scheduled_selection(datetime(2026, 11, 3, 2, 30, tzinfo=UTC))
    assert (nightly.since, nightly.until) == (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    late = scheduled_selection(datetime(2026, 11, 3, 23, 59, tzinfo=UTC))  # a very late run: same day
    assert (late.since, late.until) == (nightly.since, nightly.until)
    weekly = scheduled_selection(datetime(2026, 11, 8, 4, 0, tzinfo=UTC), "7d")
    assert (weekly.since, weekly.until) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))
    assert not nightly.all_new and nightly.session_ids is None


@pytest.mark.flow
def test_serve_builds_the_same_deployments_as_prefect_yaml(monkeypatch):
    from flows.serve import build_deployments

    monkeypatch.setenv("DREAMS_STORE", "support-bot")
    built = {d.name: d for d in build_deployments()}
    declared = {d["name"]: d for d in _yaml()["deployments"]}
    assert set(built) == set(declared)
    for name, spec in declared.items():
        b = built[name]
        # a file entrypoint as the path's tail; a module one (`flows.fleet:fleet`) as Prefect writes it (`flows.fleet.fleet`)
        want = spec["entrypoint"] if ".py" in spec["entrypoint"] else spec["entrypoint"].replace(":", ".")
        assert b.entrypoint.replace("\\", "/").endswith(want), (b.entrypoint, spec["entrypoint"])
        assert [s.schedule.cron for s in b.schedules] == [s["cron"] for s in spec.get("schedules", [])]
        assert b.concurrency_limit == spec.get("concurrency_limit")
    assert built["nightly"].parameters["store"] == "support-bot"  # {{ $DREAMS_STORE }} resolved
    assert built["weekly"].parameters["since"] == "7d"


def _api(path: str, body: dict | None = None):
    import httpx
    from prefect.settings import PREFECT_API_URL

    r = httpx.post(f"{PREFECT_API_URL.value()}{path}", json=body or {}, timeout=30)
    assert r.status_code < 300, (path, r.status_code, r.text)  # 503 here = the SQLAlchemy 2.1 trap
    return r.json() if r.content else None


@pytest.mark.flow
def test_deploy_all_and_the_scheduler_creates_runs_then_a_scheduled_run_dreams_the_previous_day(
        prefect_harness, lake, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL

    from dreaming.catalog import Catalog
    from dreaming.stores import StoreService
    from tests.factories import write_sessions

    StoreService(Catalog(lake)).create("nightly-store", scope="acme")
    t = datetime(2026, 11, 1, 10, tzinfo=UTC)
    write_sessions(lake, [{"session_id": f"sesn_{d}_{j}", "start": t + timedelta(days=d, hours=j),
                           "events": [("user", "always use uv, never pip"), ("assistant", "ok")]}
                          for d in range(3) for j in range(2)])

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="local-process", type="process"))
        except ObjectAlreadyExists:
            pass
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "DREAMS_STORE": "nightly-store",
           "DREAMS_PROJECT_DIR": str(ROOT), "DREAMS_HOME": str(lake.home), "PREFECT_LOGGING_LEVEL": "WARNING"}
    out = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    deps = {f"{d['name']}": d for d in _api("/deployments/filter")}
    assert {"nightly", "weekly", "adhoc", "backfill"} <= set(deps)
    nightly = deps["nightly"]
    assert nightly["parameters"]["store"] == "nightly-store"
    # the pull step's {{ $DREAMS_PROJECT_DIR }} is resolved from the deployer's environment
    assert nightly["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
    assert nightly["parameter_openapi_schema"]["properties"]["output_behavior"]["enum"] == [
        "create_new", "update_existing"]
    assert nightly["global_concurrency_limit"] is None  # see test_prefect_yaml_declares_the_deployments…
    assert deps["backfill"]["global_concurrency_limit"]["limit"] == 1

    # The scheduler's insert path (`schedule_runs`): future runs of the cron deployment appear …
    _api(f"/deployments/{nightly['id']}/schedule", {"min_runs": 3})
    count = _api("/flow_runs/count", {"deployments": {"id": {"any_": [nightly["id"]]}},
                                      "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
    assert count >= 3
    runs = _api("/flow_runs/filter", {"deployments": {"id": {"any_": [nightly["id"]]}}})
    assert all(r["auto_scheduled"] for r in runs)
    assert {r["expected_start_time"][11:16] for r in runs} == {"02:30"}
    assert not _api("/flow_runs/filter", {"deployments": {"id": {"any_": [deps["adhoc"]["id"]]}}})

    # … and a past slot (a server-side backfill) run through the deployment dreams the previous UTC day.
    _api(f"/deployments/{nightly['id']}/schedule",
         {"start_time": "2026-11-03T00:00:00Z", "end_time": "2026-11-03T23:00:00Z", "max_runs": 5})
    past = [r for r in _api("/flow_runs/filter", {"deployments": {"id": {"any_": [nightly["id"]]}}})
            if r["expected_start_time"].startswith("2026-11-03")]
    assert len(past) == 1
    run = subprocess.run([PREFECT, "flow-run", "execute", past[0]["id"]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    dreams = Catalog(lake).list_dreams()
    assert len(dreams) == 1
    d = dreams[0]
    assert d.flow_run_id == past[0]["id"]
    assert d.session_ids == ["sesn_1_0", "sesn_1_1"]  # 2026-11-02: the day before the scheduled 11-03 02:30
    assert d.output_behavior["type"] == "update_existing" and d.status == "completed"


@pytest.mark.flow
def test_serve_refuses_or_replaces_same_named_work_pool_deployments(prefect_harness, monkeypatch):
    """`prefect deploy` and `dreams serve` on one server: the served run would start from the deploy's record
    (its storage) — the guard names the clash, and `--replace` deletes the pool's deployments first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    from dreaming.errors import Conflict
    from flows.dream import dream
    from flows.serve import build_deployments, clear_pool_deployments

    monkeypatch.setenv("DREAMS_STORE", "support-bot")
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="local-process", type="process"))
        except ObjectAlreadyExists:
            pass
    dream.from_source(str(ROOT), "flows/dream.py:dream").deploy(
        name="nightly", work_pool_name="local-process", print_next_steps=False)
    with pytest.raises(Conflict, match=r"dream/nightly \(work pool local-process\).*--replace"):
        clear_pool_deployments(build_deployments())
    assert "dream/nightly" in clear_pool_deployments(build_deployments(), replace=True)
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_deployment_by_name("dream/nightly")
    assert clear_pool_deployments(build_deployments()) == []  # nothing left to clash with
