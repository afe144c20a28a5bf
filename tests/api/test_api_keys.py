"""Catalog API keys (`dreams api-key`, dreaming.api_keys) driving a server that has no DREAMS_API_KEYS at all:
the SDK over HTTP, an agent's key confined to its ``tenant/agent`` stores, a revoked key refused at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anthropic
import pytest

from dreaming import api_keys
from dreaming.catalog import Catalog
from dreaming.settings import Settings
from tests.api.conftest import start_server, stop_server


def _cli(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DREAMS_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", "from dreaming.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    home = tmp_path_factory.mktemp("api-keys") / "lake"
    home.mkdir(parents=True)
    made = _cli(home, "api-key", "create", "--tenant", "acme", "--name", "ci", "--json")
    assert made.returncode == 0, made.stderr
    tenant_key = json.loads(made.stdout)
    cat = Catalog(Settings(home=home))
    agent_key, agent_secret = api_keys.create(cat, "acme", "bot", name="bot")
    server = start_server(home, {"DREAMS_API_KEYS": ""})  # only the catalog's keys
    yield server, tenant_key, (agent_key, agent_secret), cat
    stop_server(server)


def _err(exc_info) -> dict:
    body = exc_info.value.response.json()
    assert body["type"] == "error", body
    return body["error"]


def test_the_secret_is_shown_once_and_stored_as_a_digest(keyed):
    _, tenant_key, _, cat = keyed
    secret = tenant_key["secret"]
    assert secret.startswith("sk-dreams-") and len(secret) > 40 and tenant_key["hint"] == "…" + secret[-4:]
    listed = _cli(cat.settings.home, "api-key", "list", "--json")
    assert listed.returncode == 0 and secret not in listed.stdout
    assert {k["id"] for k in json.loads(listed.stdout)["data"]} >= {tenant_key["id"]}
    with cat.engine.connect() as conn:
        stored = conn.execute(api_keys.api_keys.select()).mappings().all()
    assert all(secret not in json.dumps(dict(r), default=str) for r in stored)
    assert api_keys.lookup(cat, api_keys.digest(secret)).id == tenant_key["id"]


def test_a_catalog_key_writes_as_its_id(keyed):
    server, tenant_key, _, _ = keyed
    c = server.client(tenant_key["secret"])
    s = c.beta.memory_stores.create(name="keyed-store")
    assert s.model_extra["scope"] == "acme"
    m = c.beta.memory_stores.memories.create(s.id, path="/a.md", content="uv, not pip")
    versions = c.beta.memory_stores.memory_versions.list(s.id).data
    assert [v.created_by.api_key_id for v in versions if v.memory_id == m.id] == [f"key:{tenant_key['id']}"]
    mine = c.beta.memory_stores.memory_versions.list(s.id, api_key_id=f"key:{tenant_key['id']}").data
    assert [v.memory_id for v in mine] == [m.id]


def test_an_agent_key_reaches_only_its_agent_stores(keyed):
    server, tenant_key, (agent_key, agent_secret), _ = keyed
    tenant_c, agent_c = server.client(tenant_key["secret"]), server.client(agent_secret)
    shared = tenant_c.beta.memory_stores.create(name="tenant-wide")
    other_agent = tenant_c.beta.memory_stores.create(name="other-agent", extra_body={"scope": "acme/other"})
    own = agent_c.beta.memory_stores.create(name="bot-store")
    assert own.model_extra["scope"] == "acme/bot"
    agent_c.beta.memory_stores.memories.create(own.id, path="/b.md", content="bot note")
    for sid in (shared.id, other_agent.id):
        with pytest.raises(anthropic.NotFoundError):
            agent_c.beta.memory_stores.retrieve(sid)
        with pytest.raises(anthropic.NotFoundError):
            agent_c.beta.memory_stores.memories.create(sid, path="/x.md", content="x")
    assert [s.id for s in agent_c.beta.memory_stores.list()] == [own.id]
    with pytest.raises(anthropic.BadRequestError) as e:  # a wider scope than the key's
        agent_c.beta.memory_stores.create(name="escape", extra_body={"scope": "acme"})
    assert "scope" in _err(e)["message"]
    # the tenant's key sees every store of the tenant, the bot's too
    assert {shared.id, other_agent.id, own.id} <= {s.id for s in tenant_c.beta.memory_stores.list()}
    assert tenant_c.beta.memory_stores.retrieve(own.id).id == own.id


def test_a_revoked_key_is_refused_at_once(keyed):
    server, _, _, cat = keyed
    key, secret = api_keys.create(cat, "acme", name="short-lived")
    c = server.client(secret)
    s = c.beta.memory_stores.create(name="before-revoke")
    r = _cli(cat.settings.home, "api-key", "revoke", key.id, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["revoked_at"], r.stderr
    with pytest.raises(anthropic.AuthenticationError) as e:
        c.beta.memory_stores.retrieve(s.id)
    assert _err(e)["type"] == "authentication_error"
    again = _cli(cat.settings.home, "api-key", "revoke", key.id, "--json")  # idempotent
    assert again.returncode == 0 and json.loads(again.stdout)["revoked_at"] == json.loads(r.stdout)["revoked_at"]


def test_bad_key_commands_exit_2_naming_the_field(keyed):
    *_, cat = keyed
    r = _cli(cat.settings.home, "api-key", "create", "--tenant", "acme/bot")
    assert r.returncode == 2 and "tenant" in r.stderr and "sk-dreams-" not in r.stdout
    r = _cli(cat.settings.home, "api-key", "revoke", "apikey_nope")
    assert r.returncode == 2 and "apikey_nope" in r.stderr


def test_the_server_refuses_to_start_with_only_revoked_keys(tmp_path):
    home = tmp_path / "lake"
    cat = Catalog(Settings(home=home))
    key, _ = api_keys.create(cat, "acme")
    api_keys.revoke(cat, key.id)
    env = {**os.environ, "DREAMS_HOME": str(home), "DREAMS_API_KEYS": ""}
    r = subprocess.run([sys.executable, "-c", "from dreaming.cli import main; main()", "api", "--port", "0"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "api-key create" in r.stderr, r.stderr
