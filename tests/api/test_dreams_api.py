"""Dreams over HTTP with the official anthropic SDK: created `pending`, run in the server through the
Prefect flow (the session's test harness), polled to `completed`; cancel, archive, tenancy, bad input."""

from __future__ import annotations

import time
from datetime import timedelta

import anthropic
import pytest

from tests.api.conftest import KEY_B, start_server, stop_server
from tests.factories import T0, write_sessions

pytestmark = [pytest.mark.flow, pytest.mark.gx]
POLL_S = 300


@pytest.fixture(scope="module")
def server(prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    srv = start_server(tmp_path_factory.mktemp("api-dreams") / "lake", {"PREFECT_API_URL": PREFECT_API_URL.value()})
    yield srv
    stop_server(srv)


def _sessions(server, prefix: str, n: int = 3, tenant: str = "acme") -> list[str]:
    ids_ = [f"sesn_{prefix}_{i}" for i in range(n)]
    write_sessions(server.settings, [
        {"session_id": sid, "tenant": tenant, "start": T0 + timedelta(hours=i),
         "events": [("user", "never push directly to the main branch"), ("assistant", "ok")]}
        for i, sid in enumerate(ids_)
    ])
    return ids_


def _store(client, name: str):
    s = client.beta.memory_stores.create(name=name)
    for path, text in [("/notes/uv.md", "Always use uv instead of pip to install packages."),
                       ("/notes/uv-again.md", "Always use uv instead of pip to install packages."),
                       ("/notes/tz.md", "All timestamps are stored in UTC."),
                       ("/notes/db.md", "The staging database is read-only on Fridays."),
                       ("/notes/ci.md", "CI runs on every push to a pull request."),
                       ("/notes/deploy.md", "Deploys go out on Tuesdays after the release review.")]:
        client.beta.memory_stores.memories.create(s.id, path=path, content=text)
    return s


def _inputs(store_id: str, session_ids: list[str]) -> list[dict]:
    return [{"type": "memory_store", "memory_store_id": store_id}, {"type": "sessions", "session_ids": session_ids}]


def _settled(client, dream_id: str):
    """Poll until the dream is terminal and its promotion decided (the flow promotes after `completed`)."""
    deadline = time.monotonic() + POLL_S
    while time.monotonic() < deadline:
        d = client.beta.dreams.retrieve(dream_id)
        if d.status in ("failed", "canceled") or (
                d.status == "completed" and d.model_extra["promotion"]["state"] != "not_requested"):
            return d
        time.sleep(0.5)
    raise AssertionError(f"dream {dream_id} still {d.status} after {POLL_S} s")


def _err(exc_info) -> dict:
    body = exc_info.value.response.json()
    assert body["type"] == "error", body
    return body["error"]


def test_a_dream_runs_to_completed_and_its_output_store_is_listed(server):
    c = server.client()
    store = _store(c, "team")
    sessions = _sessions(server, "team")
    d = c.beta.dreams.create(inputs=_inputs(store.id, sessions), model="rules",
                             instructions="focus on git workflow")
    assert d.type == "dream" and d.status == "pending" and d.outputs == []
    assert d.inputs[1].session_ids == sorted(sessions) and d.output_behavior.type == "create_new"
    assert d.model.id == "rules" and d.usage.input_tokens == 0

    d = _settled(c, d.id)
    assert d.status == "completed", d.error
    assert d.ended_at is not None and d.error is None
    assert d.model_extra["promotion"]["state"] == "promoted", d.model_extra["promotion"]
    assert d.model_extra["flow_run_id"]  # it ran as a Prefect flow run
    out = d.outputs[0].memory_store_id
    assert out != store.id  # create_new: a new store; the input is untouched
    paths = [m.path for m in c.beta.memory_stores.memories.list(out)]
    assert "/notes/tz.md" in paths and not {"/notes/uv.md", "/notes/uv-again.md"} <= set(paths)  # merged
    assert len([m.path for m in c.beta.memory_stores.memories.list(store.id)]) == 6  # the input is untouched
    born = list(c.beta.memory_stores.memory_versions.list(out, limit=100))
    assert {v.operation for v in born} == {"created"} and len(born) == len(paths)
    assert all(v.model_extra["store_version"] == 1 for v in born)
    assert {getattr(v.created_by, "type", None) or v.created_by["type"] for v in born} == {"dream_actor"}
    forked = c.beta.memory_stores.retrieve(out)
    assert forked.model_extra["forked_from"]["dream_id"] == d.id

    listed = c.beta.dreams.list()
    assert d.id in [x.id for x in listed]
    assert d.id in [x.id for x in c.beta.dreams.list(statuses=["completed"])]
    assert d.id not in [x.id for x in c.beta.dreams.list(statuses=["pending", "running"])]
    assert d.id not in [x.id for x in c.beta.dreams.list(created_at_gt=d.ended_at)]
    assert d.id in [x.id for x in c.beta.dreams.list(created_at_lt=d.ended_at)]

    with pytest.raises(anthropic.ConflictError) as e:  # a completed dream cannot be canceled
        c.beta.dreams.cancel(d.id)
    assert _err(e)["type"] == "conflict_error"
    arch = c.beta.dreams.archive(d.id)
    assert arch.archived_at is not None
    assert d.id not in [x.id for x in c.beta.dreams.list()]
    assert d.id in [x.id for x in c.beta.dreams.list(include_archived=True)]
    assert c.beta.dreams.retrieve(d.id).archived_at is not None  # archived dreams are still readable


def test_update_existing_writes_into_the_input_store(server):
    c = server.client()
    store = _store(c, "team-inplace")
    head = store.model_extra["head_version"]
    d = c.beta.dreams.create(inputs=_inputs(store.id, _sessions(server, "inplace")), model={"id": "rules"},
                             output_behavior={"type": "update_existing", "memory_store_id": store.id})
    d = _settled(c, d.id)
    assert d.status == "completed" and d.outputs[0].memory_store_id == store.id
    assert c.beta.memory_stores.retrieve(store.id).model_extra["head_version"] > head + 6  # past the 6 API writes


def test_cancel_and_archive(server):
    c = server.client()
    store = _store(c, "team-cancel")
    sessions = _sessions(server, "cancel")
    d = c.beta.dreams.create(inputs=_inputs(store.id, sessions), model="rules")
    with pytest.raises(anthropic.ConflictError) as e:  # not terminal yet: cancel first
        c.beta.dreams.archive(d.id)
    assert _err(e)["type"] == "conflict_error"
    with pytest.raises(anthropic.ConflictError) as e:  # nor can its store be deleted under it
        c.beta.memory_stores.delete(store.id)
    assert "cancel" in _err(e)["message"]
    canceled = c.beta.dreams.cancel(d.id)
    assert canceled.status == "canceled" and canceled.ended_at is not None
    assert c.beta.dreams.cancel(d.id).status == "canceled"  # idempotent
    d = _settled(c, d.id)
    assert d.status == "canceled"  # the flow stopped at its next step and wrote nothing
    assert d.model_extra["candidate_version"] is None
    assert c.beta.dreams.archive(d.id).archived_at is not None
    assert d.id not in [x.id for x in c.beta.dreams.list(statuses=["canceled"])]
    assert d.id in [x.id for x in c.beta.dreams.list(statuses=["canceled"], include_archived=True)]


def test_another_tenant_gets_404_on_every_dream_endpoint(server):
    a, b = server.client(), server.client(KEY_B)
    store = _store(a, "acme-dreams")
    sessions = _sessions(server, "acme-private")
    d = a.beta.dreams.create(inputs=_inputs(store.id, sessions), model="rules")
    b_store = b.beta.memory_stores.create(name="globex-store")
    calls = {
        "retrieve": lambda: b.beta.dreams.retrieve(d.id),
        "cancel": lambda: b.beta.dreams.cancel(d.id),
        "archive": lambda: b.beta.dreams.archive(d.id),
        "create on acme's store": lambda: b.beta.dreams.create(inputs=_inputs(store.id, sessions), model="rules"),
        "create over acme's sessions": lambda: b.beta.dreams.create(inputs=_inputs(b_store.id, sessions),
                                                                    model="rules"),
    }
    for name, call in calls.items():
        with pytest.raises(anthropic.NotFoundError) as e:
            call()
        assert _err(e)["type"] == "not_found_error", name
    assert d.id not in [x.id for x in b.beta.dreams.list(include_archived=True)]
    assert _settled(a, d.id).status == "completed"  # untouched by the other tenant's calls


def test_bad_dream_requests_name_the_field(server):
    c = server.client()
    store = c.beta.memory_stores.create(name="team-bad")
    sessions = _sessions(server, "bad", 1)
    cases = [
        (dict(inputs=[{"type": "memory_store", "memory_store_id": store.id}], model="rules"), "inputs"),
        (dict(inputs=_inputs(store.id, [f"sesn_{i}" for i in range(101)]), model="rules"), "session_ids"),
        (dict(inputs=_inputs(store.id, sessions + sessions), model="rules"), "session_ids"),
        (dict(inputs=_inputs(store.id, sessions), model="rules", instructions="x" * 4097), "instructions"),
        (dict(inputs=_inputs(store.id, sessions), model="claude-nonexistent-9"), "model"),
        (dict(inputs=_inputs(store.id, sessions), model={"id": "rules", "speed": "fast"}), "speed"),
        (dict(inputs=_inputs(store.id, sessions), model="rules",
              output_behavior={"type": "update_existing", "memory_store_id": "memstore_other"}), "memory_store_id"),
        (dict(inputs=[{"type": "memory_store"}, {"type": "sessions", "session_ids": sessions}], model="rules"),
         "memory_store_id"),
        (dict(inputs=[{"type": "files", "ids": []}], model="rules"), "inputs"),
    ]
    for kwargs, field in cases:
        with pytest.raises(anthropic.BadRequestError) as e:
            c.beta.dreams.create(**kwargs)
        err = _err(e)
        assert err["type"] == "invalid_request_error" and field in err["message"], (field, err)
    with pytest.raises(anthropic.BadRequestError) as e:
        c.beta.dreams.list(statuses=["sleeping"])
    assert "statuses" in _err(e)["message"]
    with pytest.raises(anthropic.NotFoundError):
        c.beta.dreams.create(inputs=_inputs(store.id, ["sesn_not_there"]), model="rules")
    assert c.beta.dreams.list(include_archived=True).data == [] or all(
        x.inputs[0].memory_store_id != store.id for x in c.beta.dreams.list(include_archived=True))


def test_review_extensions_list_changes_approve_some_and_reject(server):
    a, b = server.client(), server.client(KEY_B)
    store = _store(a, "team-review")
    d = a.beta.dreams.create(inputs=_inputs(store.id, _sessions(server, "review")), model="rules",
                             output_behavior={"type": "update_existing", "memory_store_id": store.id},
                             extra_body={"require_approval": True})
    d = _settled(a, d.id)
    assert d.status == "completed" and d.model_extra["promotion"]["state"] == "awaiting_approval"
    head = a.beta.memory_stores.retrieve(store.id).model_extra["head_version"]

    changes = a.get(f"/v1/dreams/{d.id}/changes", cast_to=object)
    proposed = [c for c in changes["data"] if c["op"] != "keep"]
    assert proposed and all(c["type"] == "dream_change" and c["evidence"] for c in proposed)
    for path in (f"/v1/dreams/{d.id}/changes", f"/v1/dreams/{d.id}/approve", f"/v1/dreams/{d.id}/reject"):
        with pytest.raises(anthropic.NotFoundError):
            (b.get if path.endswith("changes") else b.post)(path, cast_to=object)
    with pytest.raises(anthropic.BadRequestError) as e:
        a.post(f"/v1/dreams/{d.id}/approve", body={"change_ids": ["chg_nope"]}, cast_to=object)
    assert "change" in _err(e)["message"]

    keep = proposed[0]["change_id"]
    out = a.post(f"/v1/dreams/{d.id}/approve", body={"change_ids": [keep], "note": "only this one"}, cast_to=object)
    assert out["promotion"]["state"] == "promoted" and out["promotion"]["accepted_change_ids"] == [keep]
    assert out["promotion"]["decided_by"].startswith("api:key:")
    assert a.beta.memory_stores.retrieve(store.id).model_extra["head_version"] > head
    with pytest.raises(anthropic.ConflictError):  # decided already
        a.post(f"/v1/dreams/{d.id}/reject", body={"reason": "too late"}, cast_to=object)

    d2 = a.beta.dreams.create(inputs=_inputs(store.id, _sessions(server, "review2")), model="rules",
                              extra_body={"require_approval": True})
    d2 = _settled(a, d2.id)
    out = a.post(f"/v1/dreams/{d2.id}/reject", body={"reason": "not now"}, cast_to=object)
    assert out["promotion"]["state"] == "rejected" and out["promotion"]["reason"] == "not now"


def test_a_second_update_existing_dream_on_a_store_gets_409(server):
    from concurrent.futures import ThreadPoolExecutor

    c = server.client()
    store = _store(c, "team-race")
    sessions = _sessions(server, "race")
    body = dict(inputs=_inputs(store.id, sessions), model="rules",
                output_behavior={"type": "update_existing", "memory_store_id": store.id})

    def create(_):
        try:
            return server.client().beta.dreams.create(**body)
        except anthropic.ConflictError as e:
            return e

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(create, range(2)))
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, anthropic.ConflictError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].response.json()["error"]["type"] == "conflict_error"
    assert c.beta.dreams.create(**{**body, "output_behavior": {"type": "create_new"}}).status == "pending"  # others may
    assert _settled(c, won[0].id).status == "completed"
    again = c.beta.dreams.create(**body)  # the first one stopped: a new one is accepted
    assert again.status == "pending"
    _settled(c, again.id)
