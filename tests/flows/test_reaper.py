"""A dream left `running` by a hard-killed run is marked failed ('crashed') when the next dream of
its store begins, and that next dream completes."""

from __future__ import annotations

import pytest

from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.stores import StoreService
from tests.factories import write_sessions

pytestmark = pytest.mark.flow


def test_next_dream_reaps_the_one_a_killed_run_left_running(prefect_harness, lake):
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Running

    from flows.dream import dream, run_dream_to_state

    cat = Catalog(lake)
    StoreService(cat).create("s", scope="acme")
    write_sessions(lake, [{"session_id": f"sesn_{i}", "events": [("user", "always use uv, never pip")]}
                          for i in range(2)])

    with get_client(sync_client=True) as client:  # two earlier runs of the dream flow, as the server saw them
        killed = client.create_flow_run(dream, parameters={"store": "s"}, state=Running())
        alive = client.create_flow_run(dream, parameters={"store": "s"}, state=Running())
        # what the process worker / serve() report when the flow's process dies (SIGKILL, OOM)
        client.set_flow_run_state(killed.id, Crashed(message="process exited with -9"), force=True)
    svc = DreamService(cat)
    left = svc.create("s", Selection(session_ids=["sesn_0"]), flow_run_id=str(killed.id))
    cat.transition(left.id, "running")
    live = svc.create("s", Selection(session_ids=["sesn_1"]), flow_run_id=str(alive.id))
    cat.transition(live.id, "running")

    result = run_dream_to_state(store="s").result()
    assert result["status"] == "completed" and result["promotion"]["state"] == "promoted", result
    old = cat.get_dream(left.id)
    assert old.status == "failed" and old.error.type == "crashed" and "CRASHED" in old.error.message
    assert cat.get_dream(live.id).status == "running"  # a run still alive is left alone
