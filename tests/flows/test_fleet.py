"""The fleet flow: one dream per selected store in parallel; one broken store does not stop the others."""

from __future__ import annotations

import pytest

from dreaming.catalog import Catalog
from dreaming.stores import StoreService
from tests.factories import write_sessions

pytestmark = pytest.mark.flow


@pytest.fixture
def fast_dream(monkeypatch):
    import flows.fleet as ff

    monkeypatch.setattr(ff, "dream_flow", ff.dream_flow.with_options(retry_delay_seconds=0))
    return ff


def test_fleet_over_five_stores_with_one_broken_finishes_the_other_four(prefect_harness, lake, fast_dream):
    cat = Catalog(lake)
    st = StoreService(cat)
    stores = [st.create(f"agent-{i}", scope=f"acme/agent-{i}") for i in range(5)]
    st.create("elsewhere", scope="globex")  # not selected by scope=acme
    write_sessions(lake, [
        {"session_id": f"sesn_{i}_{j}", "agent_id": f"agent-{i}",
         "events": [("user", "always use uv, never pip"), ("assistant", "ok")]}
        for i in range(5) for j in range(2)
    ])
    broken = stores[2]
    # break one store: its head version file is gone
    (lake.home / cat.get_version(broken["id"], broken["head_version"])["path"]).unlink()

    state = fast_dream.fleet(scope="acme", max_concurrency=3, return_state=True)
    assert state.is_failed()
    summary = state.result(raise_on_failure=False)
    rows = {r["store"]: r for r in summary["rows"]}
    assert set(rows) == {f"agent-{i}" for i in range(5)}
    assert summary["failed"] == ["agent-2"]
    assert rows["agent-2"]["status"] == "failed" and rows["agent-2"]["error"]
    for i in (0, 1, 3, 4):
        r = rows[f"agent-{i}"]
        assert (r["status"], r["promotion"], r["sessions"]) == ("completed", "promoted", 2), r
        d = cat.get_dream(r["dream_id"])
        assert d.session_ids == [f"sesn_{i}_0", f"sesn_{i}_1"]
        assert cat.get_store(r["store_id"])["head_version"] == d.promotion.promoted_version

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("dreams-fleet").limit >= 1
    arts = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json={
        "artifacts": {"key": {"any_": ["fleet-summary"]}},
        "flow_runs": {"id": {"any_": [str(state.state_details.flow_run_id)]}}}).json()
    assert len(arts) == 1 and "agent-2" in str(arts[0]["data"]) and "agent-4" in str(arts[0]["data"])

    # only stores with new sessions: the four dreamt stores have none left; the broken one still has
    again = fast_dream.fleet(scope="acme", dry_run=True)
    assert [r["store"] for r in again["rows"]] == ["agent-2"]


def test_fleet_command_prints_the_summary_and_exits_1_naming_the_failed_store(prefect_harness, lake, fast_dream):
    from typer.testing import CliRunner

    from dreaming.cli import app

    cat = Catalog(lake)
    st = StoreService(cat)
    stores = [st.create(f"bot-{i}", scope=f"initech/bot-{i}") for i in range(2)]
    write_sessions(lake, [{"session_id": f"sesn_b{i}", "tenant": "initech", "agent_id": f"bot-{i}",
                           "events": [("user", "always use uv, never pip")]} for i in range(2)])
    (lake.home / cat.get_version(stores[1]["id"], stores[1]["head_version"])["path"]).unlink()

    r = CliRunner().invoke(app, ["fleet", "--scope", "initech", "--workers", "2"])
    assert r.exit_code == 1, r.output
    assert "fleet: 2 store(s)" in r.output and "failed: bot-1" in r.output

    r = CliRunner().invoke(app, ["fleet", "--scope", "initech", "--workers", "2", "--json"])
    assert r.exit_code == 1, r.output  # bot-1 still fails; bot-0 has nothing new
    assert '"failed": [' in r.output and "bot-1" in r.output


def test_a_store_with_no_session_in_the_window_is_skipped_not_failed(prefect_harness, lake, fast_dream):
    from datetime import timedelta

    from tests.factories import T0

    cat = Catalog(lake)
    for name in ("a", "b"):
        StoreService(cat).create(name, scope=f"acme/{name}")
    write_sessions(lake, [
        {"session_id": "sesn_a", "agent_id": "a", "start": T0, "events": [("user", "hello"), ("assistant", "hi")]},
        {"session_id": "sesn_b", "agent_id": "b", "start": T0 + timedelta(days=1),
         "events": [("user", "hello"), ("assistant", "hi")]},
    ])
    state = fast_dream.fleet(scope="acme", day=T0.date().isoformat(), return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    rows = {r["store"]: r for r in summary["rows"]}
    assert rows["a"]["status"] == "completed" and rows["a"]["sessions"] == 1
    assert rows["b"]["status"] == "skipped" and rows["b"]["dream_id"] is None
    assert rows["b"]["note"].startswith("nothing to dream: no session of store b's scope acme/b since 2026-11-02")
    assert summary["failed"] == [] and [d.store_id for d in cat.list_dreams()] == [rows["a"]["store_id"]]
