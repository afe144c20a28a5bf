"""Two tenants, every endpoint: with tenant B's key, every route of the OpenAPI document is tried on tenant A's
objects (and on B's own store holding A's ids). Every answer is a 404 in Anthropic's shape (a 400 only for a
route this test has no valid body for: a new route is swept before anyone writes one), and nothing of A
changed. Routes without an id in the path (create, list) are checked one by one below, and a new one fails
the test until it is."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.api.conftest import KEY_A, KEY_B, start_server, stop_server
from tests.api.test_sessions_api import _events, _jsonl, upload

pytestmark = [pytest.mark.flow, pytest.mark.gx]


@pytest.fixture(scope="module")
def server(prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    srv = start_server(tmp_path_factory.mktemp("api-tenants") / "lake", {"PREFECT_API_URL": PREFECT_API_URL.value()})
    yield srv
    stop_server(srv)


def _a_world(server) -> dict:
    """Tenant A's objects: a store with memories, sessions, a dream awaiting approval (so that approve,
    reject and cancel would all change something)."""
    a = server.client(KEY_A)
    store = a.beta.memory_stores.create(name="acme-private", metadata={"team": "a"})
    mems = [a.beta.memory_stores.memories.create(store.id, path=p, content=t) for p, t in [
        ("/notes/uv.md", "Always use uv instead of pip."), ("/notes/tz.md", "Timestamps are UTC."),
        ("/notes/db.md", "Staging is read-only on Fridays."), ("/notes/ci.md", "CI runs on every push."),
        ("/notes/deploy.md", "Deploys go out on Tuesdays.")]]
    sids = []
    for i in range(2):
        sids += upload(a, f"sesn_priv_{i}.jsonl", _jsonl(_events(f"sesn_priv_{i}", [
            ("user", "never push directly to the main branch"), ("agent", "ok")], minute0=i * 5)))["session_ids"]
    d = a.beta.dreams.create(inputs=[{"type": "memory_store", "memory_store_id": store.id},
                                     {"type": "sessions", "session_ids": sids}],
                             model="rules", extra_body={"require_approval": True})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        d = a.beta.dreams.retrieve(d.id)
        if d.status in ("failed", "canceled") or d.model_extra["promotion"]["state"] != "not_requested":
            break
        time.sleep(0.5)
    assert d.status == "completed" and d.model_extra["promotion"]["state"] == "awaiting_approval", d
    version = a.beta.memory_stores.memory_versions.list(store.id).data[0]
    return {"memory_store_id": store.id, "memory_id": mems[0].id, "memory_version_id": version.id,
            "dream_id": d.id, "session_id": sids[0], "store_name": store.name, "session_ids": sids}


def _state(server, w: dict) -> str:
    """Everything of A that B could touch, as A reads it (JSON, for an exact comparison)."""
    h = {"x-api-key": KEY_A}
    base, sid = server.url, w["memory_store_id"]
    reads = [f"/v1/memory_stores/{sid}", f"/v1/memory_stores/{sid}/memories?view=full&limit=20",
             f"/v1/memory_stores/{sid}/memory_versions?limit=100", f"/v1/dreams/{w['dream_id']}",
             f"/v1/dreams/{w['dream_id']}/changes", "/v1/sessions?limit=100", "/v1/memory_stores?include_archived=true",
             "/v1/dreams?include_archived=true"]
    out = {}
    for r in reads:
        resp = httpx.get(base + r, headers=h, timeout=30)
        assert resp.status_code == 200, (r, resp.text)
        out[r] = resp.json()
    return json.dumps(out, sort_keys=True)


# A valid body per route, so that only the tenancy check can refuse it (a 404, never a 400).
BODIES = {
    ("POST", "/v1/memory_stores/{memory_store_id}"): {"name": "taken-over", "metadata": {"team": "b"}},
    ("POST", "/v1/memory_stores/{memory_store_id}/archive"): None,
    ("POST", "/v1/memory_stores/{memory_store_id}/memories"): {"path": "/b.md", "content": "from b"},
    ("POST", "/v1/memory_stores/{memory_store_id}/memories/{memory_id}"): {"content": "overwritten by b"},
    ("POST", "/v1/dreams/{dream_id}/cancel"): None,
    ("POST", "/v1/dreams/{dream_id}/archive"): None,
    ("POST", "/v1/dreams/{dream_id}/approve"): {},
    ("POST", "/v1/dreams/{dream_id}/reject"): {"reason": "b says no"},
}


def _routes(server) -> list[tuple[str, str]]:
    doc = httpx.get(server.url + "/openapi.json", timeout=30).json()
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in ("get", "post", "delete", "put", "patch")]


def _call(server, method: str, url: str, body, key: str = KEY_B) -> httpx.Response:
    kw = {} if body is None else {"json": body}
    return httpx.request(method, server.url + url, headers={"x-api-key": key}, timeout=60, **kw)


def test_tenant_b_reaches_nothing_of_tenant_a_on_any_route(server):
    w = _a_world(server)
    b = server.client(KEY_B)
    b_store = b.beta.memory_stores.create(name="globex-own")
    before = _state(server, w)
    swept, by_hand = [], []
    for method, template in _routes(server):
        params = re.findall(r"{(\w+)}", template)
        if not params:
            by_hand.append((method, template))
            continue
        assert set(params) <= set(w), f"{method} {template}: no tenant-A object for {params} in this test"
        body = BODIES.get((method, template), {} if method in ("POST", "PUT", "PATCH") else None)
        tries = [{p: w[p] for p in params}]
        if "memory_store_id" in params and len(params) > 1:  # B's own store, A's memory / version ids
            tries.append({**tries[0], "memory_store_id": b_store.id})
        for values in tries:
            url = template.format(**values)
            r = _call(server, method, url, body)
            allowed = {404} if (method, template) in BODIES or method in ("GET", "DELETE") else {404, 400}
            assert r.status_code in allowed, f"{method} {url}: {r.status_code} {r.text[:300]}"
            err = r.json()
            assert err["type"] == "error" and err["error"]["type"] in ("not_found_error", "invalid_request_error")
            assert w["store_name"] not in r.text and "acme" not in r.text, f"{method} {url} leaks: {r.text[:300]}"
            swept.append((method, url))
    assert len(swept) >= 20

    # the routes without an id: create and list, each checked against A's objects
    checked = set()
    names = {k: w[k] for k in ("memory_store_id", "dream_id")}

    def listed(url: str) -> str:
        r = _call(server, "GET", url, None)
        assert r.status_code == 200, r.text
        return r.text

    for method, template in by_hand:
        if (method, template) == ("GET", "/v1/memory_stores"):
            data = json.loads(listed("/v1/memory_stores?include_archived=true&limit=100"))["data"]
            assert names["memory_store_id"] not in {s["id"] for s in data}
            assert {s["scope"].partition("/")[0] for s in data} == {"globex"}  # B's own stores only
        elif (method, template) == ("GET", "/v1/dreams"):
            assert names["dream_id"] not in listed("/v1/dreams?include_archived=true&limit=100")
        elif (method, template) == ("GET", "/v1/sessions"):
            data = json.loads(listed("/v1/sessions?limit=100"))["data"]
            assert {s["tenant"] for s in data} <= {"globex"}  # (B may have uploaded a session of the same id)
            assert all(s["events"] == 1 for s in data if s["id"] in w["session_ids"])  # B's, not A's (2 events)
        elif (method, template) == ("POST", "/v1/dreams"):  # a dream of A's store, or of B's store on A's sessions
            for store_id in (w["memory_store_id"], b_store.id):
                r = _call(server, "POST", "/v1/dreams", {
                    "inputs": [{"type": "memory_store", "memory_store_id": store_id},
                               {"type": "sessions", "session_ids": w["session_ids"]}], "model": "rules"})
                assert r.status_code == 404, r.text
                assert r.json()["error"]["type"] == "not_found_error"
        elif (method, template) == ("POST", "/v1/memory_stores"):
            r = _call(server, "POST", "/v1/memory_stores", {"name": "escape", "scope": "acme"})
            assert r.status_code == 400 and "scope" in r.json()["error"]["message"], r.text
            r = _call(server, "POST", "/v1/memory_stores", {"name": w["store_name"]})  # A's name tells B nothing
            assert r.status_code == 200, r.text
            assert r.json()["id"] != w["memory_store_id"] and r.json()["scope"] == "globex"
        elif (method, template) == ("POST", "/v1/sessions"):  # B's upload is B's, whatever its content
            got = upload(b, "sesn_priv_0.jsonl", _jsonl(_events("sesn_priv_0", [("user", "b's own words")])))
            assert got["status"] == "ingested"
        else:
            raise AssertionError(f"{method} {template}: a route without an id that this test does not check yet")
        checked.add((method, template))
    assert len(checked) == 6

    assert _state(server, w) == before  # nothing of A changed
    a = server.client(KEY_A)
    assert a.get(f"/v1/sessions/{w['session_id']}", cast_to=object)["tenant"] == "acme"
