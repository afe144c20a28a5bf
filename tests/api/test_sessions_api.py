"""Sessions over HTTP (ours): upload a transcript file into the lake through `dreams ingest`'s code path, list
and read sessions, confined to the key's tenant; then the issue's end-to-end run with the anthropic SDK."""

from __future__ import annotations

import json
import time

import anthropic
import pytest

from tests.api.conftest import KEY_B, start_server, stop_server

T = "2026-11-02T09:{:02d}:00Z"


def _events(session_id: str, texts: list[tuple[str, str]], minute0: int = 0) -> list[dict]:
    return [{"id": f"sevt_{session_id}_{i:03d}", "type": f"{role}.message", "session_id": session_id,
             "processed_at": T.format(minute0 + i), "content": [{"type": "text", "text": text}]}
            for i, (role, text) in enumerate(texts)]


def _jsonl(events: list[dict]) -> bytes:
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


def upload(client, name: str, data: bytes, **form) -> dict:
    return client.post("/v1/sessions", cast_to=object, body=form or None,
                       files=[("file", (name, data, "application/x-ndjson"))],
                       options={"headers": {"Content-Type": "multipart/form-data"}})


def _err(exc_info) -> dict:
    body = exc_info.value.response.json()
    assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
    return body["error"]


def _snapshots(server) -> int:
    import sqlalchemy as sa

    from dreaming.catalog import Catalog, snapshots

    cat = Catalog(server.settings)
    try:
        with cat.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(snapshots)).scalar()
    finally:
        cat.engine.dispose()


def test_upload_list_and_read_sessions(api_server):
    c, b = api_server.client(), api_server.client(KEY_B)
    data = _jsonl(_events("sesn_up_1", [("user", "always use uv"), ("agent", "ok")])
                  + _events("sesn_up_2", [("user", "tabs, not spaces"), ("agent", "noted")], minute0=10))
    got = upload(c, "support.jsonl", data)
    assert got["type"] == "session_ingest" and got["status"] == "ingested" and got["format"] == "anthropic"
    assert got["session_ids"] == ["sesn_up_1", "sesn_up_2"] and got["events"] == 4 and got["file"] == "support.jsonl"
    again = upload(c, "support.jsonl", data)  # the same content again: a no-op, as for `dreams ingest`
    assert again["status"] == "skipped" and again["snapshot_id"] == got["snapshot_id"]
    assert again["session_ids"] == got["session_ids"]

    first = c.get("/v1/sessions", cast_to=object, options={"params": {"limit": 1}})
    assert [s["id"] for s in first["data"]] == ["sesn_up_1"] and first["next_page"]
    second = c.get("/v1/sessions", cast_to=object, options={"params": {"limit": 1, "page": first["next_page"]}})
    assert [s["id"] for s in second["data"]] == ["sesn_up_2"] and second["next_page"] is None
    one = c.get("/v1/sessions/sesn_up_2", cast_to=object)
    assert one["type"] == "session" and one["tenant"] == "acme" and one["events"] == 2
    assert one["started_at"] == "2026-11-02T09:10:00Z" and one["source_format"] == "anthropic"
    assert c.get("/v1/sessions", cast_to=object, options={"params": {"since": "2026-11-02T09:05:00Z"}})["data"][0][
        "id"] == "sesn_up_2"
    assert c.get("/v1/sessions", cast_to=object, options={"params": {"agent_id": "nobody"}})["data"] == []

    # another tenant sees none of it
    assert b.get("/v1/sessions", cast_to=object)["data"] == []
    with pytest.raises(anthropic.NotFoundError) as e:
        b.get("/v1/sessions/sesn_up_1", cast_to=object)
    assert _err(e)["type"] == "not_found_error"
    # ... and its upload of the same file is its own sessions, tenant globex
    theirs = upload(b, "support.jsonl", data)
    assert theirs["status"] == "ingested" and theirs["snapshot_id"] != got["snapshot_id"]
    assert b.get("/v1/sessions/sesn_up_1", cast_to=object)["tenant"] == "globex"
    assert c.get("/v1/sessions/sesn_up_1", cast_to=object)["tenant"] == "acme"


def test_a_bad_file_is_a_400_naming_file_line_and_field_and_nothing_is_written(api_server):
    c = api_server.client()
    before = _snapshots(api_server)
    good = _events("sesn_bad_1", [("user", "hello")])[0]
    bad = {**good, "id": "sevt_bad_2", "session_id": 42}
    with pytest.raises(anthropic.BadRequestError) as e:
        upload(c, "broken.jsonl", _jsonl([good, bad]))
    err = _err(e)
    assert err["type"] == "invalid_request_error"
    assert "broken.jsonl:2" in err["message"] and "session_id" in err["message"], err
    assert "dreams-upload-" not in err["message"]  # the server's temporary folder is not shown
    with pytest.raises(anthropic.BadRequestError) as e:
        upload(c, "not-json.jsonl", b"{not json\n")
    assert "not-json.jsonl" in _err(e)["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        upload(c, "x.jsonl", _jsonl([good]), format="nope")
    assert "format" in _err(e)["message"]
    with pytest.raises(anthropic.BadRequestError) as e:  # no file at all
        c.post("/v1/sessions", cast_to=object, body={"format": "auto"})
    assert "file" in _err(e)["message"]
    assert _snapshots(api_server) == before
    with pytest.raises(anthropic.NotFoundError):
        c.get("/v1/sessions/sesn_bad_1", cast_to=object)


# --- the run, end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_server(prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    srv = start_server(tmp_path_factory.mktemp("api-e2e") / "lake", {"PREFECT_API_URL": PREFECT_API_URL.value()})
    yield srv
    stop_server(srv)


@pytest.mark.flow
@pytest.mark.gx
def test_store_memories_sessions_dream_outputs_end_to_end(flow_server):
    c = flow_server.client()
    store = c.beta.memory_stores.create(name="e2e-memory")
    for path, text in [("/notes/uv.md", "Always use uv instead of pip to install packages."),
                       ("/notes/uv-again.md", "Always use uv instead of pip to install packages."),
                       ("/notes/tz.md", "All timestamps are stored in UTC."),
                       ("/notes/db.md", "The staging database is read-only on Fridays."),
                       ("/notes/ci.md", "CI runs on every push to a pull request."),
                       ("/notes/deploy.md", "Deploys go out on Tuesdays after the release review.")]:
        c.beta.memory_stores.memories.create(store.id, path=path, content=text)
    session_ids = []
    for i in range(3):
        sid = f"sesn_e2e_{i}"
        r = upload(c, f"{sid}.jsonl", _jsonl(_events(sid, [("user", "never push directly to the main branch"),
                                                          ("agent", "ok")], minute0=i * 5)))
        session_ids += r["session_ids"]
    assert session_ids == ["sesn_e2e_0", "sesn_e2e_1", "sesn_e2e_2"]

    d = c.beta.dreams.create(inputs=[{"type": "memory_store", "memory_store_id": store.id},
                                     {"type": "sessions", "session_ids": session_ids}], model="rules")
    assert d.status == "pending"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        d = c.beta.dreams.retrieve(d.id)
        if d.status in ("completed", "failed", "canceled") and d.model_extra["promotion"]["state"] != "not_requested":
            break
        time.sleep(0.5)
    assert d.status == "completed", d.error
    assert d.model_extra["promotion"]["state"] == "promoted", json.dumps(d.model_extra["promotion"])[:2000]
    out = d.outputs[0].memory_store_id
    paths = [m.path for m in c.beta.memory_stores.memories.list(out)]
    assert "/notes/tz.md" in paths and not {"/notes/uv.md", "/notes/uv-again.md"} <= set(paths)  # merged
    contents = [m.content for m in c.beta.memory_stores.memories.list(out, view="full")]
    assert any("main branch" in (t or "") for t in contents), contents  # learnt from the uploaded sessions


def test_an_upload_over_the_limit_is_a_413_and_writes_nothing(tmp_path, monkeypatch):
    import hashlib

    from fastapi.testclient import TestClient

    from dreaming.api import create_app
    from dreaming.api import sessions as sessions_api
    from dreaming.settings import Settings

    monkeypatch.setattr(sessions_api, "MAX_UPLOAD_BYTES", 64)
    settings = Settings(home=tmp_path / "lake")
    app = create_app(settings, keys={hashlib.sha256(b"k").hexdigest(): "acme"})
    with TestClient(app) as client:
        data = _jsonl(_events("sesn_big", [("user", "x" * 200)]))
        r = client.post("/v1/sessions", headers={"x-api-key": "k"}, files={"file": ("big.jsonl", data)})
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large", r.text
        assert r.headers["request-id"].startswith("req_")
        assert client.get("/v1/sessions", headers={"x-api-key": "k"}).json()["data"] == []
    assert not list(settings.home.rglob("*.parquet"))  # nothing reached the lake
