"""A deployment run of prefect.yaml's `adhoc`, served like `dreams serve` does, that pauses for approval
longer than any lease it could hold, then is approved through the UI's path (``resume_flow_run`` with
run input): it must end Completed with the dream promoted, not Crashed (issue #14, finding 2).

Why it used to crash (Prefect 3.8.8): a deployment ``concurrency_limit`` gives the run a lease that
the flow engine renews in a background thread (``flow_engine.py``: ``amaintain_concurrency_lease(
lease_id, 300, raise_on_lease_renewal_failure=True)``, every 0.75 × 300 s); the server's
``ReleaseFlowConcurrencySlots`` revokes that lease when the run leaves Running for Paused; the
engine's next renewal gets 410 Gone and cancels the run: "Crash detected!" ~225 s into a pause.

The 225 s are hard-coded in the engine, so this test shortens the *renewal period* of every lease in
the served processes instead (a test-only ``sitecustomize`` sets ``_RENEWAL_FRACTION``): a run that
still renewed a revoked lease would crash within seconds of pausing. The pause itself lasts longer
than the dream's own writer-slot lease (60 s, the shortest lease the Prefect API grants).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.stores import StoreService
from flows.hooks import WRITER_SLOT_LEASE_S, store_limit_name
from tests.factories import T0, write_sessions

pytestmark = [pytest.mark.flow, pytest.mark.gx]

ROOT = Path(__file__).resolve().parents[2]
RENEWAL_FRACTION = 0.01  # every lease of the served processes renews every 1 % of its duration (3 s for 300 s)
PAUSE_S = WRITER_SLOT_LEASE_S + 5  # longer than the shortest lease the run could hold

SITECUSTOMIZE = f"""\
# test-only (tests/flows/test_paused_deployment_run.py): renew concurrency leases often
import prefect.concurrency._leases as _leases
_leases._RENEWAL_FRACTION = {RENEWAL_FRACTION}
"""


def _serve(tmp_path: Path, env: dict) -> subprocess.Popen:
    """prefect.yaml's deployments served by ``flows.serve.serve_all`` (what `dreams serve --replace` runs: the
    shared test server may hold the same names on a work pool from test_deployments)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**env, "PYTHONPATH": os.pathsep.join([str(probe), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-c", "from flows.serve import serve_all; serve_all(replace=True)"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return (proc.stdout.read() if proc.stdout else "")[-4000:]


def _state(client, flow_run_id):
    return client.read_flow_run(flow_run_id).state


def _wait(client, flow_run_id, until, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = _state(client, flow_run_id)
        if state is not None and until(state):
            return state
        assert state is None or not state.is_final(), f"run ended {state.type.value} ({state.message}) before {what}"
        time.sleep(1)
    raise AssertionError(f"run never {what} in {timeout}s (last state {state})")


def test_deployment_run_paused_past_its_leases_is_approved_from_the_ui(prefect_harness, lake, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    from flows.dream import dream as dream_flow

    store = StoreService(Catalog(lake)).create("paused-adhoc", scope="acme")
    write_sessions(lake, [
        {"session_id": f"sesn_paused_{i}", "start": T0 + timedelta(hours=i),
         "events": [("user", "always use uv, never pip"), ("user", "never push directly to the main branch"),
                    ("assistant", "done")]}
        for i in range(3)
    ])
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "DREAMS_HOME": str(lake.home),
           "DREAMS_STORE": store["name"], "PREFECT_LOGGING_LEVEL": "WARNING"}
    # dream/adhoc as an older prefect.yaml deployed it (concurrency_limit: 1): serving drops that limit. A
    # deployment left on the shared test server by another test (`prefect deploy --all` to a work pool, with
    # its storage) goes first, so this one is only what serve makes of it
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.delete_deployment(client.read_deployment_by_name("dream/adhoc").id)
        except ObjectNotFound:
            pass
    dream_flow.to_deployment(name="adhoc", concurrency_limit=1).apply()
    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name("dream/adhoc").global_concurrency_limit.limit == 1
    served = _serve(tmp_path, env)
    t0 = time.monotonic()
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            while client.read_deployment_by_name("dream/adhoc").global_concurrency_limit is not None:
                assert served.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "dream/adhoc was never served"
                time.sleep(0.5)
            dream_id = ids.new_id(ids.DREAM)
            run = run_deployment("dream/adhoc", timeout=0, parameters={
                "store": store["name"], "require_approval": True, "approval_timeout_s": 900,
                "output_behavior": "update_existing", "dream_id": dream_id})
            _wait(client, run.id, lambda s: s.is_paused(), 240, "paused for approval")

            # While it waits on a person it holds no writer slot: other dreams of the store may run.
            slot = client.read_global_concurrency_limit_by_name(store_limit_name(store["id"]))
            assert (slot.limit, slot.active_slots) == (1, 0)

            paused_at = time.monotonic()
            while time.monotonic() - paused_at < PAUSE_S:  # a coffee break, longer than the leases
                state = _state(client, run.id)
                assert state.is_paused(), f"the paused run became {state.type.value}: {state.message}"
                time.sleep(1)

            # The UI's approval form: POST /flow_runs/{id}/resume with the run input.
            resume_flow_run(run.id, run_input={"approve": True, "note": "approved after a coffee"})
            final = _wait(client, run.id, lambda s: s.is_final(), 120, "finished after resume")
            assert final.is_completed(), f"{final.type.value}: {final.message}"
            assert client.read_global_concurrency_limit_by_name(slot.name).active_slots == 0
    finally:
        log = _stop(served)
        print(log)  # shown when the test fails
    d = Catalog(lake).get_dream(dream_id)
    assert d.flow_run_id == str(run.id), log
    assert d.promotion.state == "promoted" and d.promotion.decided_by == "prefect-ui", (d.promotion, log)
    assert d.promotion.reason == "approved after a coffee"
    assert Catalog(lake).get_store(store["id"])["head_version"] == d.promotion.promoted_version
    print(f"paused {PAUSE_S}s; whole test {time.monotonic() - t0:.0f}s")


def test_writer_slot_is_opt_in_outside_deployments_and_holds_off_a_second_writer(prefect_harness, lake):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.asyncio import concurrency

    from flows.hooks import writer_slot, writer_slot_name

    store = StoreService(Catalog(lake)).create("slot-store", scope="acme")
    assert writer_slot_name("slot-store") is None  # no limit and not a deployment run: nothing to hold
    assert writer_slot_name("no-such-store") is None
    name = store_limit_name(store["id"])
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    assert writer_slot_name(store["id"]) == writer_slot_name("slot-store") == name

    async def main():
        async with writer_slot(name):
            with pytest.raises(TimeoutError):  # a second writer of the store waits
                async with concurrency(name, occupy=1, strict=True, timeout_seconds=2):
                    pass
        async with concurrency(name, occupy=1, strict=True, timeout_seconds=5):
            pass  # released on exit

    asyncio.run(main())
