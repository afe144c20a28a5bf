"""Human approval through the real resume path: the dream flow pauses with an approval form
(``pause_flow_run(wait_for_input=ApprovalInput)``); ``dreams approve`` (via ``promotion.review``
and the CLI's Prefect resumer) or the UI form (``resume_flow_run`` with run input) decides."""

from __future__ import annotations

import threading
import time

import pytest

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.changeset import read_changeset
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions

pytestmark = [pytest.mark.flow, pytest.mark.gx]


def _lake(lake, name: str) -> dict:
    from datetime import timedelta

    store = StoreService(Catalog(lake)).create(name, scope="acme")
    write_sessions(lake, [
        {"session_id": f"sesn_{name}_{i}", "start": T0 + timedelta(hours=i),
         "events": [("user", "always use uv, never pip"), ("user", "never push directly to the main branch"),
                    ("assistant", "done")]}
        for i in range(3)
    ])
    return store


def _run_in_thread(**params):
    from flows.dream import run_dream_to_state

    box: dict = {}

    def go():
        box["state"] = run_dream_to_state(**params)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, box


def _wait_paused(cat: Catalog, dream_id: str, timeout: float = 180):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = cat.get_dream(dream_id)
        except Exception:
            d = None
        if d is not None and d.promotion.state == "awaiting_approval" and d.flow_run_id:
            with get_client(sync_client=True) as c:
                run = c.read_flow_run(d.flow_run_id)
            if run.state and run.state.is_paused():
                return d
        time.sleep(0.5)
    raise AssertionError(f"dream {dream_id} never paused for approval")


def test_cli_approval_resumes_the_paused_flow_with_some_changes(prefect_harness, lake):
    from dreaming.cli.cmd_review import prefect_resumer
    from dreaming.promotion import review

    store = _lake(lake, "approve-me")
    cat = Catalog(lake)
    dream_id = ids.new_id(ids.DREAM)
    t, box = _run_in_thread(store=store["name"], require_approval=True, output_behavior="update_existing",
                            approval_timeout_s=300, dream_id=dream_id)
    d = _wait_paused(cat, dream_id)
    changes = [c for c in read_changeset(lake.dreams_dir / d.id / "changeset.parquet") if c.op != "keep"]
    assert len(changes) >= 2, [c.after for c in changes]
    accept = changes[0]
    out = review(cat, d.id, approve=True, decided_by="alice", change_ids=[accept.change_id], note="just one",
                 resume=prefect_resumer)
    assert out.action == "resumed" and out.flow_run_id == d.flow_run_id
    t.join(timeout=120)
    assert not t.is_alive(), "the flow did not finish after resume"
    state = box["state"]
    assert state.is_completed(), state
    d = cat.get_dream(d.id)
    assert d.promotion.state == "promoted" and d.promotion.accepted_change_ids == [accept.change_id]
    head = StoreService(cat).head(store["id"])[1]
    assert cat.get_store(store["id"])["head_version"] == d.promotion.promoted_version != d.candidate_version
    assert [m.content for m in head] == [accept.after]  # only the accepted change reached the store


def test_ui_rejection_through_resume_flow_run(prefect_harness, lake):
    from prefect.flow_runs import resume_flow_run

    store = _lake(lake, "reject-me")
    cat = Catalog(lake)
    dream_id = ids.new_id(ids.DREAM)
    t, box = _run_in_thread(store=store["name"], require_approval=True, output_behavior="update_existing",
                            approval_timeout_s=300, dream_id=dream_id)
    d = _wait_paused(cat, dream_id)
    resume_flow_run(d.flow_run_id, run_input={"approve": False, "note": "not convinced"})
    t.join(timeout=120)
    assert not t.is_alive()
    assert box["state"].name == "Rejected"
    d = cat.get_dream(d.id)
    assert (d.promotion.state, d.promotion.reason) == ("rejected", "not convinced")
    assert cat.get_store(store["id"])["head_version"] == d.base_version
