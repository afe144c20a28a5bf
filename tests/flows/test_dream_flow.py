"""The dream flow under the Prefect test server: lifecycle, artifacts, failure, cancel, archive,
resume, and Prefect's retry of transient model errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.models import Memory
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions

pytestmark = [pytest.mark.flow, pytest.mark.gx]


def _store(lake, name="team", memories=None) -> dict:
    memories = memories if memories is not None else [
        Memory(path="/notes/uv.md", content="Always use uv instead of pip to install packages.", taint="user"),
        Memory(path="/notes/uv-again.md", content="Always use uv instead of pip to install packages.", taint="user"),
        Memory(path="/notes/db.md", content="The staging database is read-only on Fridays.", taint="user"),
        Memory(path="/notes/ci.md", content="CI runs on every push to a pull request.", taint="user"),
        Memory(path="/notes/tz.md", content="All timestamps are stored in UTC.", taint="user"),
    ]
    store = StoreService(Catalog(lake)).create(name, scope="acme", memories=memories)
    write_sessions(lake, [
        {"session_id": f"sesn_{name}_{i}", "start": T0 + timedelta(hours=i),
         "events": [("user", "never push directly to the main branch"), ("assistant", "ok")]}
        for i in range(3)
    ])
    return store


def _dream_flow():
    from flows.dream import dream

    return dream.with_options(retry_delay_seconds=0)


def run_dream_to_state(flow, **params):
    from flows.dream import run_dream_to_state as run

    return run(flow, **params)


def test_lifecycle_promotes_and_publishes_the_diff(prefect_harness, lake):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    store = _store(lake)
    state = run_dream_to_state(_dream_flow(), store="team", output_behavior="update_existing")
    assert state.is_completed(), state
    out = state.result()
    d = Catalog(lake).get_dream(out["id"])
    assert d.id == ids.stable_id(ids.DREAM, d.flow_run_id)  # derived from the run: a retry resumes it
    assert d.status == "completed" and d.ended_at is not None
    assert d.session_ids == sorted(f"sesn_team_{i}" for i in range(3))
    assert d.counts["merge"] == 1 and d.counts["add"] >= 1
    assert d.promotion.state == "promoted"
    head = Catalog(lake).get_store(store["id"])["head_version"]
    assert head == d.candidate_version == 2 and d.base_version == 1
    assert (lake.dreams_dir / d.id / "report.md").read_text().startswith(f"# Dream `{d.id}`")
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[d.flow_run_id])))
    by_type = {a.type for a in arts}
    assert {"markdown", "table"} <= by_type
    assert any(a.key == "dream-team-diff" and "Merged duplicates" in str(a.data) for a in arts)
    # after the promotion, the store's outcomes (tasks/outcomes.py): the promoted memories, before → after
    outcomes = [a for a in arts if a.key == "outcomes-team"]
    assert len(outcomes) == 1 and "# Outcomes of `team`" in str(outcomes[0].data)
    assert "| v2 |" in str(outcomes[0].data)  # the promoted version's memories, one row each
    # the store the input was is never modified: v1's file is intact
    assert [m.path for m in StoreService(Catalog(lake)).read_version(store["id"], 1)][0] == "/notes/ci.md"

    # a re-run of the same dream id changes nothing and never promotes twice
    again = run_dream_to_state(_dream_flow(), store="team", dream_id=d.id)
    assert again.is_completed()
    assert Catalog(lake).get_store(store["id"])["head_version"] == head
    assert Catalog(lake).get_dream(d.id).promotion.decided_at == d.promotion.decided_at


def test_outcomes_that_cannot_be_computed_never_fail_a_promoted_run(prefect_harness, lake, monkeypatch):
    """The outcomes artifact is informational: the dream is promoted, the run Completed, a warning logged."""
    import dreaming.outcomes.artifact as artifact

    def broken(store_ref, **kw):
        raise RuntimeError("outcomes read failed")

    monkeypatch.setattr(artifact, "record", broken)
    store = _store(lake)
    state = run_dream_to_state(_dream_flow(), store="team", output_behavior="update_existing")
    assert state.is_completed(), state
    d = Catalog(lake).get_dream(state.result()["id"])
    assert d.promotion.state == "promoted" and Catalog(lake).get_store(store["id"])["head_version"] == 2


def test_outcomes_off_publishes_no_outcomes_artifact(prefect_harness, lake):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    _store(lake)
    state = run_dream_to_state(_dream_flow(), store="team", output_behavior="update_existing", outcomes=False)
    assert state.is_completed(), state
    d = Catalog(lake).get_dream(state.result()["id"])
    assert d.promotion.state == "promoted"
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[d.flow_run_id])))
    assert any(a.key == "dream-team-diff" for a in arts)
    assert not any((a.key or "").startswith("outcomes-") for a in arts)


def test_a_run_with_no_new_session_is_skipped_and_records_nothing(prefect_harness, lake):
    """A nightly run after everything was dreamt over: no empty dream, no copy of the head "promoted"."""
    store = _store(lake)
    assert run_dream_to_state(_dream_flow(), store="team").is_completed()
    head, dreams = Catalog(lake).get_store(store["id"])["head_version"], Catalog(lake).list_dreams()
    state = run_dream_to_state(_dream_flow(), store="team")
    assert state.is_completed() and state.name == "Skipped", state
    assert state.message.startswith("nothing to dream: no new session of store team")
    assert Catalog(lake).list_dreams() == dreams and Catalog(lake).get_store(store["id"])["head_version"] == head


def test_unknown_session_is_refused_at_create_and_fails_a_recorded_dream(prefect_harness, lake):
    from dreaming.errors import NotFound

    _store(lake)
    svc = DreamService(Catalog(lake))
    with pytest.raises(NotFound, match="sesn_nowhere"):  # the CLI's exit 2, before any dream is recorded
        svc.create("team", Selection(session_ids=["sesn_team_0", "sesn_nowhere"]))
    assert svc.catalog.list_dreams() == []
    # a session that leaves the lake after the dream was created: the flow fails it before any work
    d = svc.create("team", Selection(session_ids=["sesn_team_0"]))
    svc.catalog.update_dream(d.id, lambda x: setattr(x, "session_ids", ["sesn_nowhere", "sesn_team_0"]))
    state = run_dream_to_state(_dream_flow(), store="team", dream_id=d.id)
    assert state.is_failed()
    d = svc.catalog.get_dream(d.id)
    assert d.status == "failed" and d.error.type == "input_session_unavailable"
    assert "sesn_nowhere" in d.error.message
    assert d.candidate_version is None
    assert svc.archive(d.id).archived_at is not None  # terminal dreams archive


def test_other_scope_session_is_unavailable(prefect_harness, lake):
    from dreaming.errors import NotFound

    _store(lake)
    write_sessions(lake, [{"session_id": "sesn_globex", "tenant": "globex", "events": [("user", "psst")]}])
    with pytest.raises(NotFound, match="outside|scope"):
        DreamService(Catalog(lake)).create("team", Selection(session_ids=["sesn_globex"]))


def test_a_canceled_dream_does_no_work(prefect_harness, lake):
    store = _store(lake)
    svc = DreamService(Catalog(lake))
    d = svc.create("team")
    svc.cancel(d.id)
    state = run_dream_to_state(_dream_flow(), store="team", dream_id=d.id)
    assert state.is_cancelled()
    d = svc.catalog.get_dream(d.id)
    assert d.status == "canceled" and d.candidate_version is None
    assert [v["version"] for v in svc.catalog.list_versions(store["id"])] == [1]


def test_claude_curator_429_is_retried_by_prefect(prefect_harness, lake, monkeypatch):
    from tests.anthropic_standin import MessagesStandin, error, tool_use, usage

    _store(lake)
    with MessagesStandin([error(429, "rate_limit_error", "slow down"),
                          tool_use("propose_changes", {"changes": []}, use=usage(500, 20))]) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        d = DreamService(Catalog(lake)).create("team", curator="claude")
        state = run_dream_to_state(_dream_flow(), store="team", dream_id=d.id, curator="claude")
    assert state.is_completed(), state
    assert len(api.message_requests) == 2  # one 429, one retry by Prefect's task retry
    d = Catalog(lake).get_dream(d.id)
    assert d.status == "completed"
    assert d.usage.input_tokens == 500 and d.usage.output_tokens == 20


def test_claude_401_is_not_retried(prefect_harness, lake, monkeypatch):
    from tests.anthropic_standin import MessagesStandin, error

    _store(lake)
    with MessagesStandin([error(401, "authentication_error", "bad key")] * 3) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        d = DreamService(Catalog(lake)).create("team", curator="claude")
        state = run_dream_to_state(_dream_flow(), store="team", dream_id=d.id, curator="claude")
    assert state.is_failed()
    assert len(api.message_requests) == 1
    d = Catalog(lake).get_dream(d.id)
    assert d.status == "failed" and d.error.type == "authentication_error"


def test_run_dream_to_state_works_where_an_event_loop_is_already_running(prefect_harness, lake):
    import asyncio

    _store(lake)

    async def notebook_cell():
        return run_dream_to_state(_dream_flow(), store="team", output_behavior="update_existing")

    state = asyncio.run(notebook_cell())
    assert state.is_completed(), state
    assert Catalog(lake).get_dream(state.result()["id"]).promotion.state == "promoted"


def test_the_dream_flow_runs_on_prefects_async_engine():
    """Prefect 3.8's sync engine joins its heartbeat thread (a 1 s sleep loop) at the end of every
    run; the async engine does not. bench/fleet.py measured 1.56 s of overhead per dream on the
    sync engine and 0.18 s on the async one, so the flow must stay ``async def``."""
    import inspect

    from flows.dream import dream

    assert inspect.iscoroutinefunction(dream.fn)
