"""Per-change promotion through the dream flow on the real Prefect test server: the routine part promotes at
once, the run pauses for the rest with a review artifact that says why each change waits, and the approval
(the CLI's resumer, as the UI form does) promotes the rest on top. The flow's ``review_policy`` parameter
overrides the store's policy for one run."""

from __future__ import annotations

import pytest

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.changeset import read_changeset
from dreaming.stores import StoreService
from tests.factories import write_sessions
from tests.flows.test_approval_flow import _run_in_thread as run_in_thread
from tests.flows.test_approval_flow import _wait_paused as wait_paused
from tests.test_review_policy import PREFERENCE, _session, _store

pytestmark = [pytest.mark.flow, pytest.mark.gx]


def _changes(lake, dream_id: str) -> dict:
    return {(c.op, c.kind): c for c in read_changeset(lake.dreams_dir / dream_id / "changeset.parquet")}


def test_the_flow_promotes_the_routine_part_then_pauses_for_the_tool_mistake(prefect_harness, lake):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from dreaming.cli.cmd_review import prefect_resumer
    from dreaming.promotion import review

    cat = Catalog(lake)
    store = _store(cat)
    write_sessions(lake, [_session(i) for i in range(3)])
    dream_id = ids.new_id(ids.DREAM)
    t, box = run_in_thread(store="team", output_behavior="update_existing", approval_timeout_s=300,
                           dream_id=dream_id)
    d = wait_paused(cat, dream_id)
    ch = _changes(lake, d.id)
    mistake = ch[("add", "mistake")]
    partial = d.promotion.promoted_version
    assert partial is not None and cat.get_store(store["id"])["head_version"] == partial
    head = [m.content for m in StoreService(cat).read_version(store["id"])]
    assert PREFERENCE in head and head.count("Deploys go out on Tuesdays.") == 1
    assert not any("no such table" in c for c in head)
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[d.flow_run_id])))
    review_art = [a for a in arts if a.key and a.key.startswith("review-")]
    assert review_art and mistake.change_id in str(review_art[0].data) and "tainted" in str(review_art[0].data)

    out = review(cat, d.id, approve=True, decided_by="alice", change_ids=[mistake.change_id], resume=prefect_resumer)
    assert out.action == "resumed"
    t.join(timeout=120)
    assert not t.is_alive() and box["state"].is_completed(), box.get("state")
    d = cat.get_dream(d.id)
    assert d.promotion.state == "promoted" and d.promotion.decided_by == "alice"
    top = cat.get_store(store["id"])["head_version"]
    assert top == d.promotion.promoted_version and cat.get_version(store["id"], top)["parent_version"] == partial
    assert any("no such table: orders" in m.content for m in StoreService(cat).read_version(store["id"]))


def test_the_review_policy_parameter_overrides_the_store_policy_for_one_run(prefect_harness, lake):
    from flows.dream import run_dream_to_state

    cat = Catalog(lake)
    store = _store(cat)
    write_sessions(lake, [_session(i) for i in range(3)])
    state = run_dream_to_state(store="team", output_behavior="update_existing", approval_timeout_s=0,
                               review_policy={"hold_kinds": ["merge"], "hold_taints": []})
    assert state.is_completed() and state.name == "AwaitingApproval", state
    d = cat.get_dream(_latest(cat, store["id"]))
    ch = _changes(lake, d.id)
    assert d.promotion.state == "awaiting_approval"
    assert ch[("merge", "fact")].change_id not in d.promotion.accepted_change_ids
    assert ch[("add", "preference")].change_id in d.promotion.accepted_change_ids
    assert "held_kind" in d.promotion.reason
    # the mistake still waits: it tells an agent to run a command (actionable), whatever hold_taints says
    assert ch[("add", "mistake")].change_id not in d.promotion.accepted_change_ids


def _latest(cat: Catalog, store_id: str) -> str:
    return max(cat.list_dreams(store_id=store_id, include_archived=True), key=lambda d: d.created_at).id
