"""dreaming.ops without Prefect: backfill plans and ids, fleet selection, the stale-dream reaper."""

from datetime import UTC, date, datetime, timedelta

import pytest

from dreaming.dreams import DreamService, Selection
from dreaming.errors import BadInput, NotFound
from dreaming.ops import (
    backfill_dream_id,
    days_between,
    plan_backfill,
    reap_stale_dreams,
    scope_matches,
    select_fleet_stores,
)
from dreaming.stores import StoreService
from tests.factories import write_sessions

D1 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _day_sessions(lake, days=3, tenant="acme"):
    write_sessions(lake, [
        {"session_id": f"sesn_{tenant}_{i}_{j}", "tenant": tenant, "start": D1 + timedelta(days=i, hours=j),
         "events": [("user", f"day {i} session {j}")]}
        for i in range(days) for j in range(2)
    ])


def test_days_between_inclusive_ordered_and_bad_input():
    assert days_between("2026-11-02", "2026-11-04") == [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]
    with pytest.raises(BadInput, match="'to'"):
        days_between("2026-11-04", "2026-11-02")
    with pytest.raises(BadInput, match="'from'"):
        days_between("11/02/2026", "2026-11-02")
    with pytest.raises(BadInput, match="at most"):
        days_between("2020-01-01", "2026-01-01")


def test_backfill_ids_are_stable_per_store_and_day_and_move_on_after_failure(lake, catalog):
    s = StoreService(catalog).create("s", scope="acme")
    _day_sessions(lake, days=1)
    a = backfill_dream_id(catalog, s["id"], date(2026, 11, 2))
    assert a == backfill_dream_id(catalog, s["id"], date(2026, 11, 2))
    assert a != backfill_dream_id(catalog, s["id"], date(2026, 11, 3))
    other = StoreService(catalog).create("t", scope="acme")
    assert a != backfill_dream_id(catalog, other["id"], date(2026, 11, 2))
    svc = DreamService(catalog)
    svc.create("s", Selection.for_day("2026-11-02"), dream_id=a)
    assert backfill_dream_id(catalog, s["id"], date(2026, 11, 2)) == a  # pending: resume it
    svc.fail(a, "internal_error", "boom")
    b = backfill_dream_id(catalog, s["id"], date(2026, 11, 2))
    assert b != a  # a failed day gets a fresh attempt …
    assert b == backfill_dream_id(catalog, s["id"], date(2026, 11, 2))  # … that is itself stable


def test_plan_counts_sessions_per_utc_day_in_scope(lake, catalog):
    StoreService(catalog).create("s", scope="acme")
    _day_sessions(lake, days=2)
    _day_sessions(lake, days=3, tenant="globex")  # other tenant: not counted
    plan = plan_backfill(catalog, "s", "2026-11-01", "2026-11-04")
    assert [(p.day, p.sessions, p.action) for p in plan] == [
        ("2026-11-01", 0, "skip"), ("2026-11-02", 2, "run"), ("2026-11-03", 2, "run"), ("2026-11-04", 0, "skip")]
    assert len({p.dream_id for p in plan}) == 4
    with pytest.raises(NotFound):
        plan_backfill(catalog, "nope", "2026-11-01", "2026-11-02")


def test_scope_matching():
    assert scope_matches("acme", "acme") and scope_matches("acme/support", "acme")
    assert not scope_matches("acmex/support", "acme")
    assert scope_matches("acme/support-eu", "acme/support-*") and not scope_matches("acme/sales", "acme/support-*")
    assert not scope_matches("acme", "acme/support")


def test_fleet_selection_by_scope_names_and_new_sessions(lake, catalog):
    st = StoreService(catalog)
    a = st.create("a", scope="acme/agent-1")
    st.create("b", scope="acme/agent-2")
    st.create("g", scope="globex")
    write_sessions(lake, [{"session_id": "s1", "tenant": "acme", "agent_id": "agent-1", "events": [("user", "x")]}])
    assert [s["name"] for s in select_fleet_stores(catalog, scope="acme")] == ["a", "b"]
    assert [s["name"] for s in select_fleet_stores(catalog, stores=["g", a["id"]])] == ["a", "g"]
    assert [s["name"] for s in select_fleet_stores(catalog, only_new=True)] == ["a"]
    with catalog.tx() as conn:
        catalog.mark_dreamt(conn, a["id"], ["s1"], "drm_x")
    assert select_fleet_stores(catalog, only_new=True) == []
    with pytest.raises(NotFound, match="'zzz'"):
        select_fleet_stores(catalog, stores=["zzz"])


def test_reaper_fails_only_dreams_of_dead_or_unknown_runs(lake, catalog):
    write_sessions(lake, [{"session_id": "x", "events": [("user", "hi")]}])
    StoreService(catalog).create("s", scope="acme")
    StoreService(catalog).create("t", scope="acme")
    svc = DreamService(catalog)

    def mk(run_id, store="s", status="running"):
        d = svc.create(store, Selection(session_ids=["x"]), flow_run_id=run_id)
        if status == "running":
            catalog.transition(d.id, "running")
        return d.id

    dead, crashed, alive, paused, unknown = mk("r-dead"), mk("r-crash"), mk("r-alive"), mk("r-paused"), mk("r-gone")
    fresh_orphan = mk(None, status="pending")
    other_store = mk("r-dead", store="t")
    done = mk("r-dead")
    catalog.transition(done, "failed")
    excluded = mk("r-dead")
    states = {"r-dead": "COMPLETED", "r-crash": "CRASHED", "r-alive": "RUNNING", "r-paused": "PAUSED"}
    store_id = catalog.get_store("s")["id"]
    reaped = reap_stale_dreams(catalog, store_id, states.get, exclude=[excluded])
    assert sorted(d.id for d in reaped) == sorted([dead, crashed, unknown])
    for did in (dead, crashed, unknown):
        d = catalog.get_dream(did)
        assert d.status == "failed" and d.error.type == "crashed" and d.ended_at is not None
    assert "CRASHED" in catalog.get_dream(crashed).error.message
    for did in (alive, paused, fresh_orphan, other_store, excluded):
        assert catalog.get_dream(did).status in ("running", "pending")
    # an orphan without a flow run is reaped once past the grace period
    later = datetime.now(UTC) + timedelta(hours=1)
    assert [d.id for d in reap_stale_dreams(catalog, store_id, states.get, exclude=[excluded], now=later)] == [
        fresh_orphan]

    def down(_):
        raise ConnectionError("api down")

    assert reap_stale_dreams(catalog, store_id, down, exclude=[]) == []  # cannot tell: touch nothing
    assert catalog.get_dream(excluded).status == "running"


def test_cli_backfill_dry_run_and_bad_input(lake, catalog):
    import json

    from typer.testing import CliRunner

    from dreaming.cli import app

    StoreService(catalog).create("s", scope="acme")
    _day_sessions(lake, days=2)
    r = CliRunner().invoke(app, ["backfill", "--store", "s", "--from", "2026-11-02", "--to", "2026-11-04",
                                 "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert [(d["day"], d["sessions"], d["action"]) for d in out["days"]] == [
        ("2026-11-02", 2, "run"), ("2026-11-03", 2, "run"), ("2026-11-04", 0, "skip")]
    assert catalog.list_dreams() == []  # a dry run records nothing
    r = CliRunner().invoke(app, ["fleet", "--scope", "acme", "--dry-run", "--json"])
    assert r.exit_code == 0 and [s["store"] for s in json.loads(r.output)["data"]] == ["s"]
    r = CliRunner().invoke(app, ["fleet", "--runner", "ray", "--scope", "acme"])
    assert r.exit_code == 2
