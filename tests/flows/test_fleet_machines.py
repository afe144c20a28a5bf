"""A fleet across machines: a Prefect server on PostgreSQL, a work pool with two workers and a Dask cluster of
two workers, each worker a separate process in its own working directory standing in for a machine. They share
only what machines share: the lake (a directory every machine mounts), the catalog (PostgreSQL) and the Prefect
server. Two fleet runs are started from the deployment: each worker takes one, and each fleet spreads its stores'
dreams over the Dask workers. Everything is real (servers, workers, Dask); only the machines are processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.factories import T0, write_sessions
from tests.pg import fresh_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Procs:
    """Long-running processes of the test, each logging to a file; all stopped at the end."""

    def __init__(self, folder: Path):
        self.folder, self.procs = folder, []

    def start(self, name: str, argv: list[str], env: dict, cwd: Path) -> Path:
        cwd.mkdir(parents=True, exist_ok=True)
        log = self.folder / f"{name}.log"
        fh = open(log, "w")  # noqa: SIM115 - closed with the process
        self.procs.append((subprocess.Popen(argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                            start_new_session=True), fh))
        return log

    def stop(self) -> None:
        for p, _ in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p, fh in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
            fh.close()

    def tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(self.folder.glob("*.log")))


def _wait(what: str, check, procs: _Procs, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{procs.tails()}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run(argv: list[str], env: dict, cwd: Path = ROOT, timeout: int = 180) -> str:
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (argv, out.stdout[-3000:], out.stderr[-3000:])
    return out.stdout


DEPLOY = """
from prefect.deployments.runner import EntrypointType
from flows.fleet import fleet
# a module entrypoint: every machine imports the installed package (no pull step, no per-machine path), and a
# task pickled for Dask refers to ``flows.fleet``, which every Dask worker imports too
fleet.deploy(name="fleet-machines", work_pool_name="machines", job_variables={{"env": {env!r}}},
             entrypoint_type=EntrypointType.MODULE_PATH, build=False, push=False, print_next_steps=False)
"""

RUN = """
import json, sys
from prefect.deployments import run_deployment
runs = [run_deployment("fleet/fleet-machines", parameters={{"scope": scope, "only_new": True}}, timeout=0)
        for scope in {scopes!r}]
print(json.dumps([str(r.id) for r in runs]))
"""


@pytest.mark.flow
@pytest.mark.timeout(TIMEOUT_S + 120)
def test_two_workers_run_fleets_on_a_dask_cluster_across_machines(tmp_path, monkeypatch):
    from dreaming.catalog import Catalog
    from dreaming.settings import get_settings
    from dreaming.stores import StoreService

    procs = _Procs(tmp_path)
    with fresh_database() as catalog_url, fresh_database() as prefect_db:
        import sqlalchemy as sa

        server_db = sa.engine.make_url(prefect_db).set(drivername="postgresql+asyncpg")
        api = f"http://127.0.0.1:{_free_port()}/api"
        lake = tmp_path / "shared-lake"  # the mount every machine has
        common = {**{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DREAMS_"))},
                  "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "DREAMS_HOME": str(lake), "DREAMS_CATALOG_URL": catalog_url, "DREAMS_LOCAL_PREFECT_URL": ""}
        try:
            port = api.rsplit(":", 1)[1].split("/")[0]
            procs.start("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                           port, "--no-ui"],
                        {**common, "PREFECT_HOME": str(tmp_path / "server-home"),
                         "PREFECT_API_DATABASE_CONNECTION_URL": server_db.render_as_string(hide_password=False)},
                        tmp_path / "server")
            _wait("the Prefect server on PostgreSQL", lambda: _healthy(api), procs)

            # stores and sessions: two tenants, two stores each, in the shared lake and catalog
            monkeypatch.setenv("DREAMS_HOME", str(lake))
            monkeypatch.setenv("DREAMS_CATALOG_URL", catalog_url)
            settings = get_settings()
            cat = Catalog(settings)
            sessions = []
            for t, tenant in enumerate(("north", "south")):
                for a in range(2):
                    StoreService(cat).create(f"{tenant}-{a}", scope=f"{tenant}/agent-{a}")
                    sessions += [{"session_id": f"{tenant}_{a}_{i}", "tenant": tenant, "agent_id": f"agent-{a}",
                                  "start": T0 + timedelta(hours=i),
                                  "events": [("user", "always use uv, never pip"), ("assistant", "ok")]}
                                 for i in range(2)]
            write_sessions(settings, sessions)
            cat.engine.dispose()

            # every machine has the project installed (the Dask scheduler unpickles the task graph too): nothing
            # is imported from a working directory
            machine_env = {**common, "PREFECT_WORKER_QUERY_SECONDS": "2"}
            sched = f"tcp://127.0.0.1:{_free_port()}"
            procs.start("dask-scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                           sched.rsplit(":", 1)[1], "--no-dashboard"], machine_env,
                        tmp_path / "scheduler")
            for m in ("m1", "m2"):
                procs.start(f"dask-worker-{m}", [str(BIN / "dask"), "worker", sched, "--name", m, "--nworkers", "1",
                                                 "--nthreads", "1", "--no-dashboard"], machine_env, tmp_path / m)
            from distributed import Client

            with Client(sched, timeout=60) as client:
                client.wait_for_workers(2, timeout=120)

            _run([str(BIN / "prefect"), "work-pool", "create", "machines", "--type", "process"], common)
            job_env = {"DREAMS_DASK_ADDRESS": sched, "DREAMS_HOME": str(lake), "DREAMS_CATALOG_URL": catalog_url}
            _run([sys.executable, "-c", DEPLOY.format(root=str(ROOT), env=job_env)], common)
            logs = {m: procs.start(f"worker-{m}", [str(BIN / "prefect"), "worker", "start", "--pool", "machines",
                                                   "--name", f"worker-{m}", "--limit", "1"],
                                   machine_env, tmp_path / m) for m in ("m1", "m2")}
            run_ids = json.loads(_run([sys.executable, "-c", RUN.format(scopes=["north", "south"])], common))

            def finished():
                r = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"id": {"any_": run_ids}}}, timeout=10)
                runs = r.json()
                done = [x for x in runs if x["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
                return runs if len(done) == len(run_ids) else None

            runs = _wait("both fleet runs", finished, procs, timeout=TIMEOUT_S)
            assert {x["state"]["type"] for x in runs} == {"COMPLETED"}, procs.tails()

            # each worker (machine) took one of the two fleet runs (both may try one; the server aborts the second)
            def took_by(log: Path) -> set[str]:
                text = log.read_text()
                return {rid for rid in run_ids if f"submitting flow run '{rid}'" in text
                        and f"Aborted submission of flow run '{rid}'" not in text}

            took = {m: took_by(log) for m, log in logs.items()}
            assert sorted(len(v) for v in took.values()) == [1, 1] and took["m1"] != took["m2"], (took, procs.tails())

            # the four dreams ran on the Dask workers of both machines
            with Client(sched, timeout=60) as client:
                executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
            assert sum(executed.values()) == 4 and min(executed.values()) >= 1, executed

            cat = Catalog(get_settings())
            try:
                dreams = cat.list_dreams()
                assert len(dreams) == 4, [d.store_id for d in dreams]
                assert {d.status for d in dreams} == {"completed"}
                assert {d.promotion.state for d in dreams} == {"promoted"}
                names = {s["id"]: s["name"] for s in cat.list_stores()}
                assert sorted(names[d.store_id] for d in dreams) == ["north-0", "north-1", "south-0", "south-1"]
                assert all(len(d.session_ids) == 2 for d in dreams)
            finally:
                cat.engine.dispose()
        finally:
            procs.stop()


def test_the_fleet_runs_on_the_dask_scheduler_its_environment_names(monkeypatch):
    """DREAMS_DASK_ADDRESS picks the task runner when the module is imported; a fleet loaded as a script (the file
    entrypoint) is refused with the way out, instead of Dask's "No module named 'fleet'" on the scheduler."""
    import importlib.util

    from prefect_dask import DaskTaskRunner

    import flows.fleet as module

    monkeypatch.setenv("DREAMS_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    runner = module.default_task_runner()
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://127.0.0.1:8786"
    spec = importlib.util.spec_from_file_location("fleet", ROOT / "flows" / "fleet.py")
    with pytest.raises(RuntimeError, match="module entrypoint flows.fleet:fleet"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    monkeypatch.delenv("DREAMS_DASK_ADDRESS")
    assert type(module.default_task_runner()).__name__ == "ThreadPoolTaskRunner"
