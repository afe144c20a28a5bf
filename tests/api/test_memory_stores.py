"""Memory stores and memories over HTTP, with the official anthropic SDK against `dreams api`."""

from __future__ import annotations

import hashlib

import anthropic
import pytest

from tests.api.conftest import KEY_B


def _err(exc_info) -> dict:
    body = exc_info.value.response.json()
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    return body["error"]


def test_store_create_retrieve_update_list_archive(api_server):
    c = api_server.client()
    s = c.beta.memory_stores.create(name="support-memory", description="what support learnt",
                                    metadata={"team": "support"})
    assert s.id.startswith("memstore_") and s.type == "memory_store"
    assert s.name == "support-memory" and s.metadata == {"team": "support"} and s.archived_at is None
    got = c.beta.memory_stores.retrieve(s.id)
    assert got.id == s.id and got.description == "what support learnt"
    assert got.model_extra["scope"] == "acme" and got.model_extra["head_version"] == 1

    up = c.beta.memory_stores.update(s.id, name="support-memory-2", metadata={"team": None, "tier": "gold"})
    assert up.name == "support-memory-2" and up.metadata == {"tier": "gold"}

    others = [c.beta.memory_stores.create(name=f"paged-{i}") for i in range(3)]
    pages = c.beta.memory_stores.list(limit=2)
    assert len(pages.data) == 2 and pages.next_page
    ids_ = [x.id for x in c.beta.memory_stores.list(limit=2)]  # auto-pagination follows next_page
    assert ids_ == [s.id, *(o.id for o in others)]

    arch = c.beta.memory_stores.archive(others[0].id)
    assert arch.archived_at is not None
    assert others[0].id not in [x.id for x in c.beta.memory_stores.list()]
    assert others[0].id in [x.id for x in c.beta.memory_stores.list(include_archived=True)]
    with pytest.raises(anthropic.ConflictError) as e:  # an archived store takes no new memory
        c.beta.memory_stores.memories.create(others[0].id, path="/a.md", content="x")
    assert _err(e)["type"] == "conflict_error"

    doomed = c.beta.memory_stores.create(name="doomed")
    c.beta.memory_stores.memories.create(doomed.id, path="/a.md", content="x")
    folder = api_server.home / "stores" / doomed.id
    assert folder.is_dir()
    gone = c.beta.memory_stores.delete(doomed.id)
    assert gone.id == doomed.id and gone.type == "memory_store_deleted"
    with pytest.raises(anthropic.NotFoundError):
        c.beta.memory_stores.retrieve(doomed.id)
    with pytest.raises(anthropic.NotFoundError):
        c.beta.memory_stores.memories.list(doomed.id)
    assert not folder.exists() and doomed.id not in [x.id for x in c.beta.memory_stores.list(include_archived=True)]


def test_memories_create_list_retrieve_update_delete(api_server):
    from dreaming.catalog import Catalog

    c = api_server.client()
    s = c.beta.memory_stores.create(name="mem-crud")
    a = c.beta.memory_stores.memories.create(s.id, path="/notes/uv.md", content="always use uv, never pip")
    assert a.id.startswith("mem_") and a.type == "memory" and a.content is None  # view=basic on create
    assert a.content_sha256 == hashlib.sha256(b"always use uv, never pip").hexdigest()
    assert a.content_size_bytes == len(b"always use uv, never pip") and a.memory_version_id.startswith("memver_")
    b = c.beta.memory_stores.memories.create(s.id, path="/notes/deep/tabs.md", content="tabs, not spaces")
    top = c.beta.memory_stores.memories.create(s.id, path="/readme.md", content="hello", view="full")
    assert top.content == "hello"

    listed = c.beta.memory_stores.memories.list(s.id)
    assert [m.path for m in listed.data] == ["/notes/deep/tabs.md", "/notes/uv.md", "/readme.md"]
    assert all(m.content is None for m in listed.data)
    full = c.beta.memory_stores.memories.list(s.id, view="full", path_prefix="/notes/")
    assert [m.content for m in full.data] == ["tabs, not spaces", "always use uv, never pip"]
    shallow = c.beta.memory_stores.memories.list(s.id, depth=1)
    assert [(m.type, m.path) for m in shallow.data] == [("memory_prefix", "/notes/"), ("memory", "/readme.md")]
    paged = c.beta.memory_stores.memories.list(s.id, limit=1)
    assert len(paged.data) == 1 and paged.next_page
    assert [m.path for m in c.beta.memory_stores.memories.list(s.id, limit=1)] == [m.path for m in listed.data]

    got = c.beta.memory_stores.memories.retrieve(a.id, memory_store_id=s.id)
    assert got.content == "always use uv, never pip" and got.path == "/notes/uv.md"  # view=full on retrieve

    up = c.beta.memory_stores.memories.update(
        a.id, memory_store_id=s.id, content="always use uv; pip breaks the lockfile",
        precondition={"type": "content_sha256", "content_sha256": a.content_sha256})
    assert up.id == a.id and up.content_sha256 != a.content_sha256 and up.memory_version_id != a.memory_version_id
    with pytest.raises(anthropic.ConflictError) as e:  # stale precondition
        c.beta.memory_stores.memories.update(a.id, memory_store_id=s.id, content="x",
                                             precondition={"type": "content_sha256",
                                                           "content_sha256": a.content_sha256})
    assert _err(e)["type"] == "memory_precondition_failed_error"
    renamed = c.beta.memory_stores.memories.update(a.id, memory_store_id=s.id, path="/tools/uv.md")
    assert renamed.id == a.id and renamed.path == "/tools/uv.md"
    with pytest.raises(anthropic.ConflictError) as e:
        c.beta.memory_stores.memories.create(s.id, path="/readme.md", content="again")
    assert _err(e)["type"] == "memory_path_conflict_error"

    gone = c.beta.memory_stores.memories.delete(b.id, memory_store_id=s.id)
    assert gone.id == b.id and gone.type == "memory_deleted"
    with pytest.raises(anthropic.NotFoundError) as e:
        c.beta.memory_stores.memories.retrieve(b.id, memory_store_id=s.id)
    assert _err(e)["type"] == "not_found_error"

    # the memory versions: a memory's life, newest first, with the key as its actor
    mv = c.beta.memory_stores.memory_versions
    life = list(mv.list(s.id, memory_id=a.id))
    assert [v.operation for v in life] == ["modified", "modified", "created"]
    assert [v.path for v in life] == ["/tools/uv.md", "/notes/uv.md", "/notes/uv.md"]
    assert life[0].id == renamed.memory_version_id and life[1].id == up.memory_version_id
    assert life[2].id == a.memory_version_id and life[0].content is None  # view=basic on list
    assert all(v.created_by.type == "api_actor" and v.created_by.api_key_id.startswith("key:") for v in life)
    first = mv.retrieve(life[2].id, memory_store_id=s.id)
    assert first.content == "always use uv, never pip" and first.operation == "created"
    deleted = list(mv.list(s.id, operation="deleted"))
    assert [(v.memory_id, v.path, v.content_sha256) for v in deleted] == [(b.id, "/notes/deep/tabs.md", None)]
    assert len(list(mv.list(s.id, limit=2))) == len(list(mv.list(s.id))) == 6  # 3 created, 2 modified, 1 deleted
    with pytest.raises(anthropic.NotFoundError):
        mv.retrieve("memver_nope", memory_store_id=s.id)

    # every write was a new immutable version, written by the key
    cat = Catalog(api_server.settings)
    versions = cat.list_versions(s.id)
    assert [v["version"] for v in versions] == [1, 2, 3, 4, 5, 6, 7]
    assert {v["created_by"]["type"] for v in versions[1:]} == {"api"}
    assert all(v["parent_version"] == v["version"] - 1 for v in versions[1:])
    assert cat.get_store(s.id)["head_version"] == 7
    cat.engine.dispose()


def test_another_tenant_gets_404_on_every_store_endpoint(api_server):
    a = api_server.client()
    b = api_server.client(KEY_B)
    s = a.beta.memory_stores.create(name="acme-private")
    m = a.beta.memory_stores.memories.create(s.id, path="/secret.md", content="acme only")
    ms, mm = b.beta.memory_stores, b.beta.memory_stores.memories
    calls = {
        "store retrieve": lambda: ms.retrieve(s.id),
        "store update": lambda: ms.update(s.id, name="stolen"),
        "store archive": lambda: ms.archive(s.id),
        "store delete": lambda: ms.delete(s.id),
        "memory create": lambda: mm.create(s.id, path="/x.md", content="x"),
        "memory list": lambda: mm.list(s.id),
        "memory retrieve": lambda: mm.retrieve(m.id, memory_store_id=s.id),
        "memory update": lambda: mm.update(m.id, memory_store_id=s.id, content="overwritten"),
        "memory delete": lambda: mm.delete(m.id, memory_store_id=s.id),
        "memory versions list": lambda: ms.memory_versions.list(s.id),
        "memory version retrieve": lambda: ms.memory_versions.retrieve(m.memory_version_id, memory_store_id=s.id),
    }
    for name, call in calls.items():
        with pytest.raises(anthropic.NotFoundError) as e:
            call()
        assert _err(e)["type"] == "not_found_error", name
    assert s.id not in [x.id for x in ms.list(include_archived=True)]
    # nothing changed for the owner
    assert a.beta.memory_stores.retrieve(s.id).name == "acme-private"
    assert a.beta.memory_stores.memories.retrieve(m.id, memory_store_id=s.id).content == "acme only"
    # a store of the other tenant cannot be created by naming its scope
    with pytest.raises(anthropic.BadRequestError) as e:
        b.beta.memory_stores.create(name="sneaky", extra_body={"scope": "acme/agent-1"})
    assert "scope" in _err(e)["message"]


def test_keys_are_required(api_server):
    import httpx

    r = httpx.get(api_server.url + "/v1/memory_stores")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert r.headers["request-id"].startswith("req_")
    with pytest.raises(anthropic.AuthenticationError) as e:
        api_server.client("sk-wrong").beta.memory_stores.list()
    assert _err(e)["type"] == "authentication_error"


def test_bad_input_names_the_field(api_server):
    c = api_server.client()
    s = c.beta.memory_stores.create(name="bad-input")
    cases = [
        (lambda: c.beta.memory_stores.memories.create(s.id, path="notes/no-slash.md", content="x"), "path"),
        (lambda: c.beta.memory_stores.memories.create(s.id, path="/a/../b.md", content="x"), "path"),
        (lambda: c.beta.memory_stores.memories.create(s.id, path="/big.md", content="x" * 102_401), "content"),
        (lambda: c.beta.memory_stores.memories.list(s.id, limit=1000), "limit"),
        (lambda: c.beta.memory_stores.memories.list(s.id, path_prefix="/notes"), "path_prefix"),
        (lambda: c.beta.memory_stores.memories.list(s.id, view="everything"), "view"),
        (lambda: c.beta.memory_stores.create(name=""), "name"),
        (lambda: c.beta.memory_stores.create(name="x", extra_body={"colour": "blue"}), "colour"),
        (lambda: c.post("/v1/memory_stores", body={}, cast_to=object), "name"),
        (lambda: c.beta.memory_stores.list(page="not-a-cursor"), "page"),
    ]
    for call, field in cases:
        with pytest.raises(anthropic.BadRequestError) as e:
            call()
        err = _err(e)
        assert err["type"] == "invalid_request_error" and field in err["message"], (field, err)
    # nothing was half-written: the store still holds no memory, at v1
    assert c.beta.memory_stores.memories.list(s.id).data == []
    assert c.beta.memory_stores.retrieve(s.id).model_extra["head_version"] == 1


def test_unknown_endpoint_is_an_anthropic_error(api_server):
    import httpx

    r = httpx.get(api_server.url + "/v1/nothing-here", headers={"x-api-key": "sk-test-acme-0123456789"})
    assert r.status_code == 404 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "not_found_error"


def test_the_openapi_document_lists_the_endpoints(api_server):
    import httpx

    doc = httpx.get(api_server.url + "/openapi.json").json()
    assert {"/v1/memory_stores", "/v1/memory_stores/{memory_store_id}/memories/{memory_id}", "/v1/dreams",
            "/v1/dreams/{dream_id}/cancel", "/v1/dreams/{dream_id}/archive"} <= set(doc["paths"])


def test_concurrent_writes_each_land_in_their_own_version(api_server):
    from concurrent.futures import ThreadPoolExecutor

    from dreaming.catalog import Catalog
    from dreaming.history import head_lineage

    c = api_server.client()
    s = c.beta.memory_stores.create(name="concurrent")
    with ThreadPoolExecutor(max_workers=6) as pool:
        made = list(pool.map(lambda i: api_server.client().beta.memory_stores.memories.create(
            s.id, path=f"/n/{i}.md", content=f"note {i}"), range(6)))
    assert sorted(m.path for m in c.beta.memory_stores.memories.list(s.id)) == sorted(m.path for m in made)
    cat = Catalog(api_server.settings)
    assert len(head_lineage(cat, s.id)) == 7  # v1 and one head version per write, each on the last
    cat.engine.dispose()
