"""Read-only tiers (dreaming.tiers): a read-only organisation store that a working store reads as context.
Nothing writes to the read-only store — a dream of it, a dream of the working store, a rollback, a memory
edit in Python or over the HTTP API — except `dreams store promote-to`, with its own audit record; the
curator does not add what the context store already says and flags what contradicts it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dreaming import tiers
from dreaming.catalog import Catalog, store_versions
from dreaming.dreams import DreamService, Selection
from dreaming.errors import InvalidState
from dreaming.models import Memory
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

lake = lake_both

ORG = [
    Memory(path="/org/uv.md", content="Always use uv, never pip.", kind="preference"),
    Memory(path="/org/branches.md", content="Pushing directly to the main branch is allowed for hotfixes.",
           kind="preference", key="pref:vcs-branch"),
    Memory(path="/org/lint.md", content="Run the linter before committing.", kind="workflow"),
]
WORKING = [Memory(path="/notes/lint.md", content="Do not run the linter before committing.", kind="workflow"),
           Memory(path="/notes/deploy.md", content="Deploys go out on Tuesdays.", kind="fact")]


def org_footprint(catalog: Catalog, store_id: str) -> tuple:
    """Everything a write to the store would change: its versions (rows and files) and its head."""
    import sqlalchemy as sa

    with catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(store_versions.c.version, store_versions.c.file_sha256)
                            .where(store_versions.c.store_id == store_id).order_by(store_versions.c.version)).all()
    files = sorted(p.name for p in (catalog.settings.home / "stores" / store_id).glob("*"))
    return tuple(rows), tuple(files), catalog.get_store(store_id)["head_version"]


@pytest.fixture
def tiered(lake):
    catalog = Catalog(lake)
    svc = StoreService(catalog)
    org = tiers.set_read_only(catalog, svc.create("org", scope="acme", memories=ORG)["id"])
    work = svc.create("work", scope="acme", memories=WORKING)
    work = tiers.add_context(catalog, work["id"], "org")
    write_sessions(lake, [
        {"session_id": f"sesn_t{i}", "start": T0 + timedelta(hours=i),
         "events": [("user", "always use uv, never pip"), ("user", "never push directly to the main branch"),
                    ("assistant", "done")]}
        for i in range(3)
    ])
    return catalog, org, work


def test_no_path_writes_to_the_read_only_store(tiered):
    from dreaming.history import rollback
    from dreaming.store_edits import MemoryEditor

    catalog, org, work = tiered
    before = org_footprint(catalog, org["id"])
    svc = StoreService(catalog)
    mem = svc.read_version(org["id"])[0]
    attempts = {
        "a dream of it": lambda: DreamService(catalog).create("org", Selection(all_new=True)),
        "a version written directly": lambda: svc.write_version(org["id"], ORG[:1], org["head_version"],
                                                                {"type": "user"}, "sneaky"),
        "a rollback": lambda: rollback(catalog, "org", 1, "carol"),
        "a memory created": lambda: MemoryEditor(catalog).create(org["id"], "/org/new.md", "x", {"type": "api"}),
        "a memory updated": lambda: MemoryEditor(catalog).update(org["id"], mem.memory_id, {"type": "api"},
                                                                 content="changed"),
        "a memory deleted": lambda: MemoryEditor(catalog).delete(org["id"], mem.memory_id, {"type": "api"}),
    }
    for what, attempt in attempts.items():
        with pytest.raises(InvalidState, match="read-only") as e:
            attempt()
        assert "promote-to" in str(e.value), what
    assert catalog.list_dreams(include_archived=True) == []  # the refused dream left no record
    # a dream of the working store, promoted, writes the working store only
    d = run_dream(catalog, "work")
    assert d.promotion.state in ("promoted", "awaiting_approval"), d.promotion
    assert org_footprint(catalog, org["id"]) == before
    assert not list((catalog.settings.staging_dir).glob("**/*.parquet"))  # nothing half-written either


def run_dream(catalog: Catalog, store: str, approve: bool = True):
    from dreaming.promotion import promote, request_approval

    svc = DreamService(catalog)
    d = svc.create(store, Selection(all_new=True), output_behavior="update_existing")
    inputs = svc.read(d.id)
    d = svc.output(inputs, svc.curate(inputs))
    d = request_approval(catalog, d.id)
    return promote(catalog, d.id, "carol") if approve else d


def test_the_curator_does_not_add_what_the_context_says_and_flags_contradictions(tiered):
    catalog, org, work = tiered
    svc = DreamService(catalog)
    d = svc.create("work", Selection(all_new=True))
    inputs = svc.read(d.id)
    result = svc.curate(inputs)
    adds = {c.path: c for c in result.changes if c.op == "add"}
    assert "/preferences/package-manager-uv.md" not in adds  # the org store already says it
    assert any("already said by read-only store org (/org/uv.md)" in n for n in result.notes), result.notes
    # the proposed branch rule contradicts the org's (same key, another value): kept, flagged for a person
    assert "/preferences/vcs-branch-main.md" in adds
    flags = [n for n in result.notes if n.startswith("for a person:")]
    assert any("/preferences/vcs-branch-main.md contradicts org:/org/branches.md" in n and "key pref:vcs-branch" in n
               for n in flags), flags
    # and so does a working memory that says the opposite of an org one
    assert any("/notes/lint.md contradicts org:/org/lint.md" in n and "opposite" in n for n in flags), flags
    assert not any("/notes/deploy.md" in n for n in flags)
    d = svc.output(inputs, result)
    report = (catalog.settings.dreams_dir / d.id / "report.md").read_text()
    assert "/notes/lint.md contradicts org:/org/lint.md" in report and "already said by read-only store org" in report


def test_without_context_the_same_dream_adds_it(lake):
    catalog = Catalog(lake)
    StoreService(catalog).create("alone", scope="acme", memories=WORKING)
    write_sessions(lake, [{"session_id": f"sesn_a{i}", "start": T0 + timedelta(hours=i),
                           "events": [("user", "always use uv, never pip"), ("assistant", "ok")]} for i in range(3)])
    svc = DreamService(catalog)
    d = svc.create("alone", Selection(all_new=True))
    result = svc.curate(svc.read(d.id))
    assert "/preferences/package-manager-uv.md" in {c.path for c in result.changes if c.op == "add"}
    assert not [n for n in result.notes if "read-only" in n or n.startswith("for a person:")]


def test_promote_to_is_the_one_way_in_with_its_own_audit_record(tiered):
    from dreaming.history import store_history

    catalog, org, work = tiered
    head = StoreService(catalog).read_version(work["id"])
    deploy = next(m for m in head if m.path == "/notes/deploy.md")
    v = tiers.promote_to(catalog, "work", "org", deploy.memory_id, "user:carol")
    org_now = catalog.get_store(org["id"])
    assert org_now["head_version"] == v == org["head_version"] + 1
    row = catalog.get_version(org["id"], v)
    assert row["created_by"] == {"type": "promote-to", "id": "carol", "from_store": work["id"],
                                 "memory_id": deploy.memory_id}
    assert "promote-to by carol: /notes/deploy.md from work" in row["message"]
    mems = StoreService(catalog).read_version(org["id"], v)
    assert sorted(m.path for m in mems) == ["/notes/deploy.md", "/org/branches.md", "/org/lint.md", "/org/uv.md"]
    assert [h["created_by"]["type"] for h in store_history(catalog, "org")][-1] == "promote-to"
    with pytest.raises(InvalidState, match="already holds"):
        tiers.promote_to(catalog, "work", "org", "/notes/deploy.md", "carol")  # by path: the same content
    with pytest.raises(InvalidState, match="not read-only"):
        tiers.promote_to(catalog, "org", "work", "/org/uv.md", "carol")  # into a writable store: just write
    assert catalog.get_store(org["id"])["head_version"] == v  # still read-only for everything else
    with pytest.raises(InvalidState, match="read-only"):
        StoreService(catalog).write_version(org["id"], mems, v, {"type": "user"}, "after promote-to")


def test_context_stores_are_read_only_stores_of_the_same_tenant(tiered):
    catalog, org, work = tiered
    svc = StoreService(catalog)
    other = svc.create("writable", scope="acme")
    with pytest.raises(InvalidState, match="not read-only"):
        tiers.add_context(catalog, "work", "writable")
    foreign = tiers.set_read_only(catalog, svc.create("globex-org", scope="globex")["id"])
    with pytest.raises(InvalidState, match="tenant globex"):
        tiers.add_context(catalog, "work", foreign["id"])
    with pytest.raises(InvalidState, match="context of work"):
        tiers.set_read_only(catalog, "org", False)  # in use as a context tier
    assert tiers.add_context(catalog, "work", "org")["context_stores"] == [org["id"]]  # idempotent
    assert tiers.remove_context(catalog, "work", "org")["context_stores"] is None
    assert tiers.set_read_only(catalog, "org", False)["read_only"] is False
    assert other["read_only"] is False


def test_cli_tiers(lake, tmp_path):
    from dreaming.cli import app

    runner = CliRunner()
    folder = tmp_path / "orgmem"
    folder.mkdir()
    (folder / "lint.md").write_text("Run the linter before committing.\n")
    r = runner.invoke(app, ["store", "create", "org", "--scope", "acme", "--from-dir", str(folder), "--read-only"])
    assert r.exit_code == 0, r.output
    catalog = Catalog()
    assert catalog.get_store("org")["read_only"] is True
    assert len(StoreService(catalog).read_version(catalog.get_store("org")["id"])) == 1  # v1 from the folder
    StoreService(catalog).create("work", scope="acme", memories=WORKING)
    r = runner.invoke(app, ["store", "context", "work", "--add", "org", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["read_only"] is False and [c["name"] for c in body["context_stores"]] == ["org"]
    r = runner.invoke(app, ["store", "context", "work", "--check", "--json"])
    assert r.exit_code == 1, r.output  # a contradiction: exit 1
    [x] = json.loads(r.stdout)["contradictions"]
    assert (x["path"], x["context_store"], x["context_path"]) == ("/notes/lint.md", "org", "/lint.md")
    r = runner.invoke(app, ["store", "promote-to", "work", "--to", "org", "--memory", "/notes/deploy.md",
                            "--by", "carol", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["version"] == 2 and out["created_by"]["type"] == "promote-to" and out["created_by"]["id"] == "carol"
    r = runner.invoke(app, ["store", "read-only", "work", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["read_only"] is True
    r = runner.invoke(app, ["run", "--store", "work", "--all"])
    assert isinstance(r.exception, InvalidState) and "read-only" in str(r.exception)  # exit 2 from `dreams`


def test_the_api_refuses_memory_writes_and_dreams_on_a_read_only_store(tmp_path):
    import anthropic

    from tests.api.conftest import start_server, stop_server

    server = start_server(tmp_path / "lake")
    try:
        c = server.client()
        s = c.beta.memory_stores.create(name="org-api")
        m = c.beta.memory_stores.memories.create(s.id, path="/a.md", content="uv, not pip")
        catalog = Catalog(server.settings)
        tiers.set_read_only(catalog, s.id)
        before = org_footprint(catalog, s.id)
        with pytest.raises(anthropic.ConflictError, match="read-only"):
            c.beta.memory_stores.memories.create(s.id, path="/b.md", content="more")
        with pytest.raises(anthropic.ConflictError, match="read-only"):
            c.beta.memory_stores.memories.update(m.id, memory_store_id=s.id, content="changed")
        with pytest.raises(anthropic.ConflictError, match="read-only"):
            c.beta.memory_stores.memories.delete(m.id, memory_store_id=s.id)
        assert org_footprint(catalog, s.id) == before
        assert [x.path for x in c.beta.memory_stores.memories.list(s.id)] == ["/a.md"]  # reads still work
    finally:
        stop_server(server)
