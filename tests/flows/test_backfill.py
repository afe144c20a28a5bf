"""The backfill flow: one dream per day, oldest first; idempotent; a failed day does not stop the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.ops import backfill_dream_id
from dreaming.stores import StoreService
from tests.factories import write_sessions

pytestmark = pytest.mark.flow

DAY0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]


def _lake_with_three_days(lake) -> dict:
    store = StoreService(Catalog(lake)).create("backfilled", scope="acme")
    sessions = []
    for i in range(3):
        for j in range(2):
            sessions.append({
                "session_id": f"sesn_d{i}_{j}", "start": DAY0 + timedelta(days=i, hours=j),
                "events": [("user", "always use uv, never pip"),
                           ("user", f"please indent with {2 + 2 * (i % 2)} spaces"),
                           ("assistant", f"done day {i}")],
            })
    write_sessions(lake, sessions)
    return store


@pytest.fixture
def fast_dream(monkeypatch):
    """The dream subflow without its 10 s retry delay (tests only)."""
    import flows.backfill as fb

    monkeypatch.setattr(fb, "dream_flow", fb.dream_flow.with_options(retry_delay_seconds=0))
    return fb


def _fingerprint(cat: Catalog, store_id: str) -> dict:
    dreams = sorted(cat.list_dreams(store_id=store_id, include_archived=True), key=lambda d: d.id)
    return {
        "head": cat.get_store(store_id)["head_version"],
        "versions": [v["version"] for v in cat.list_versions(store_id)],
        "dreams": [(d.id, d.status, d.promotion.state, d.candidate_version, d.promotion.promoted_version,
                    tuple(d.session_ids)) for d in dreams],
        "changesets": {d.id: ids.sha256_file(cat.settings.dreams_dir / d.id / "changeset.parquet")
                       for d in dreams if (cat.settings.dreams_dir / d.id / "changeset.parquet").exists()},
    }


def test_backfill_three_days_in_order_then_rerun_changes_nothing(prefect_harness, lake, fast_dream):
    store = _lake_with_three_days(lake)
    cat = Catalog(lake)
    state = fast_dream.backfill(store="backfilled", start=DAYS[0], end=DAYS[-1], return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert [r["day"] for r in summary["days"]] == DAYS and summary["failed_days"] == []

    dreams = sorted(cat.list_dreams(store_id=store["id"]), key=lambda d: d.created_at)
    assert len(dreams) == 3
    # one dream per day, oldest first, each over exactly that day's sessions, with the stable id
    for i, d in enumerate(dreams):
        assert d.session_ids == [f"sesn_d{i}_0", f"sesn_d{i}_1"]
        assert d.id == ids.stable_id(ids.DREAM, "backfill", store["id"], DAYS[i])
        assert d.status == "completed" and d.promotion.state == "promoted", d
    # each day builds on the version the previous day promoted
    assert [d.base_version for d in dreams[1:]] == [d.promotion.promoted_version for d in dreams[:-1]]
    assert cat.get_store(store["id"])["head_version"] == dreams[-1].promotion.promoted_version

    before = _fingerprint(cat, store["id"])
    assert len(before["changesets"]) == 3
    again = fast_dream.backfill(store="backfilled", start=DAYS[0], end=DAYS[-1], return_state=True)
    assert again.is_completed()
    assert [r["action"] for r in again.result()["days"]] == ["done", "done", "done"]
    assert _fingerprint(cat, store["id"]) == before  # same ids, same changeset bytes, head unchanged


def test_a_failed_day_is_reported_and_the_rest_go_on(prefect_harness, lake, fast_dream, monkeypatch):
    store = _lake_with_three_days(lake)
    cat = Catalog(lake)
    import dreaming.curators as curators

    real = curators.get_curator

    class Broken:
        def curate(self, inp):
            raise RuntimeError("curator exploded on the middle day")

    def pick(name):
        return Broken() if _current_day_is_middle() else real(name)

    middle = backfill_dream_id(cat, store["id"], datetime(2026, 11, 3).date())

    def _current_day_is_middle():
        from prefect.runtime import flow_run

        return flow_run.parameters.get("dream_id") == middle

    monkeypatch.setattr(curators, "get_curator", pick)
    state = fast_dream.backfill(store=store["id"], start=DAYS[0], end=DAYS[-1], return_state=True)
    assert state.is_failed()
    assert "2026-11-03" in state.message and "curator exploded" in state.message
    summary = state.result(raise_on_failure=False)
    assert summary["failed_days"] == ["2026-11-03"]
    by_day = {r["day"]: r for r in summary["days"]}
    assert by_day["2026-11-02"]["promotion"] == by_day["2026-11-04"]["promotion"] == "promoted"
    assert by_day["2026-11-03"]["status"] == "failed" and "curator exploded" in by_day["2026-11-03"]["error"]

    # fixed: re-running retries only the failed day, with a fresh attempt id
    monkeypatch.setattr(curators, "get_curator", real)
    again = fast_dream.backfill(store=store["id"], start=DAYS[0], end=DAYS[-1], return_state=True)
    assert again.is_completed(), again.message
    rows = {r["day"]: r for r in again.result()["days"]}
    assert [rows[d]["action"] for d in DAYS] == ["done", "run", "done"]
    assert rows["2026-11-03"]["dream_id"] != middle and rows["2026-11-03"]["promotion"] == "promoted"


def test_a_backfill_never_waits_on_a_person(prefect_harness, lake, fast_dream):
    """On real transcripts the gate nearly always asks for a person (a mistake mined from tool output is
    actionable). The backfill records each such day awaiting approval and moves on, listing what waits."""
    import time

    store = StoreService(Catalog(lake)).create("needs-review", scope="acme")
    sessions = []
    for i in range(2):
        for j in range(2):
            sessions.append({"session_id": f"sesn_r{i}_{j}", "start": DAY0 + timedelta(days=i, hours=j), "events": [
                ("user", f"Add the dependency number {i}{j} and make sure the whole test suite still passes"),
                ("tool_use", "bash", {"command": f"pip install requests=={i}.{j}"}),
                ("tool_result", "error: externally-managed-environment", True),
                ("tool_use", "bash", {"command": f"uv pip install requests=={i}.{j}"}), ("tool_result", "ok"),
            ]})
    write_sessions(lake, sessions)
    started = time.monotonic()
    state = fast_dream.backfill(store=store["id"], start=DAYS[0], end=DAYS[1], return_state=True)
    assert time.monotonic() - started < 240  # no pause: the approval timeout is an hour
    summary = state.result()
    assert [d["promotion"] for d in summary["days"]] == ["awaiting_approval", "awaiting_approval"]
    assert summary["failed_days"] == [] and len(summary["awaiting_approval"]) == 2
    assert "2 awaiting approval" in state.message
    d = Catalog(lake).get_dream(summary["awaiting_approval"][0])
    assert d.promotion.state == "awaiting_approval" and d.status == "completed"


def test_a_day_larger_than_a_dream_is_split_into_parts_and_nothing_is_left_unread(prefect_harness, lake,
                                                                                   fast_dream, monkeypatch):
    from dreaming.ops import plan_backfill

    monkeypatch.setenv("DREAMS_MAX_SESSIONS_PER_DREAM", "2")
    store = StoreService(Catalog(lake)).create("big-day", scope="acme")
    write_sessions(lake, [{"session_id": f"sesn_big_{j}", "start": DAY0 + timedelta(hours=j),
                           "events": [("user", "always use uv, never pip"), ("assistant", f"ok {j}")]}
                          for j in range(5)])
    plan = plan_backfill(Catalog(), store["id"], DAYS[0], DAYS[0])
    assert [(p.part, p.sessions, p.action) for p in plan] == [("1/3", 2, "run"), ("2/3", 2, "run"), ("3/3", 1, "run")]
    assert len({p.dream_id for p in plan}) == 3
    summary = fast_dream.backfill(store=store["id"], start=DAYS[0], end=DAYS[0])
    assert [d["part"] for d in summary["days"]] == ["1/3", "2/3", "3/3"] and summary["failed_days"] == []
    cat = Catalog()
    read = sorted(s for p in plan for s in cat.get_dream(p.dream_id).session_ids)
    assert read == [f"sesn_big_{j}" for j in range(5)]  # every session of the day was read, once
    again = plan_backfill(cat, store["id"], DAYS[0], DAYS[0])
    assert [p.action for p in again] == ["done", "done", "done"]
