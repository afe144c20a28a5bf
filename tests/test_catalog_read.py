"""The read-only catalog path of the listing commands (dreaming.catalog_read, issue 14).

The same lake must give the same rows and the same command output through plain sqlite3 as through the
SQLAlchemy ``Catalog``; the listing commands must import no SQLAlchemy on a catalog at head; and a
catalog that is missing, behind head or not SQLite is read through the migrating ``Catalog``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from dreaming import catalog_read, migrations
from dreaming.catalog import Catalog, stores
from dreaming.catalog_read import CatalogReader, open_catalog
from dreaming.cli import app
from dreaming.models import Dream, DreamError, Memory, PromotionState, Source
from dreaming.scenarios import generate_bench_lake
from dreaming.settings import get_settings
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions
from tests.pg import backend_lake  # noqa: F401 - fixture

HEAVY = ("sqlalchemy", "alembic", "pyarrow", "prefect", "great_expectations", "pydantic_settings", "anthropic")


def _fill(lake):
    """Stores (one archived, one forked, with memories and two versions), dreams of every kind
    (statuses, an error, an archived one, usage), and sessions of two tenants: a generated day plus an
    overlapping re-export (the dedupe) and a second day."""
    bench = generate_bench_lake(lake, 20, seed=0)
    work = [("user", "always use uv, never pip"), ("tool_use", "bash", {"command": "pip install x"}),
            ("tool_result", "error: externally-managed-environment", True), ("assistant", "done")]
    again = [{"session_id": "s1", "events": work, "outcome": "satisfied"},
             {"session_id": "s2", "agent_id": "agent-2", "start": T0 + timedelta(days=1), "events": work[:2]}]
    write_sessions(lake, again)
    write_sessions(lake, again[:1])  # the same events again: read once
    cat = Catalog(lake)
    svc = StoreService(cat)
    mems = [Memory(path="/prefs/tools.md", content="Use uv, never pip. " * 6, kind="preference", key="pref:pkg",
                   sources=[Source(session_id="s1", event_id="e1", ts=T0)], pinned=True),
            Memory(path="/notes/ünïcode.md", content="naïve café — “quotes”", kind="note"),
            Memory(path="/rules/CLAUDE.md#2", content="Run the tests with -q.", kind="workflow", confidence=0.37,
                   taint="tool_output", valid_until=T0 + timedelta(days=30, microseconds=7), origin="CLAUDE.md",
                   heading=["Commands", "Tests"], created_at=T0, updated_at=T0 + timedelta(seconds=1),
                   sources=[Source(session_id="s2"), Source(session_id="s1", event_id="e9",
                                                            ts=T0 + timedelta(microseconds=123456))])]
    main = svc.create("main", scope=bench.scope, description="the main one", memories=mems)
    svc.write_version(main["id"], mems[:1], 1, {"type": "user"}, "second")
    svc.create("forked", scope="acme/coder", forked_from={"store_id": main["id"], "version": 1, "dream_id": None})
    old = svc.create("old", scope="globex")
    with cat.tx() as conn:
        conn.execute(stores.update().where(stores.c.id == old["id"]).values(archived_at=T0))
    for i, (status, extra) in enumerate([
        ("completed", {"counts": {"add": 2, "keep": 3, "prune": 1}, "promotion": PromotionState(state="promoted"),
                       "usage": {"input_tokens": 12, "output_tokens": 3}}),
        ("failed", {"error": DreamError(type="internal_error", message="boom")}),
        ("running", {}),
        ("completed", {"archived_at": T0 + timedelta(days=2), "instructions": "focus on tools"}),
        ("pending", {"store_id": old["id"]}),
    ]):
        fields = {"store_id": main["id"], "session_ids": ["s1", "s2"][: i % 3], **extra}
        cat.insert_dream(Dream(status=status, created_at=T0 + timedelta(hours=i), **fields))
    for n in range(3):  # the same creation time: ordered by id, descending
        cat.insert_dream(Dream(id=f"drm_tie{n}", status="completed", store_id=main["id"], created_at=T0))
    cat.engine.dispose()
    return lake


@pytest.fixture
def full_lake(lake):
    return _fill(lake)


COMMANDS = [
    ["store", "list"], ["store", "list", "--json"], ["store", "list", "--include-archived"],
    ["store", "list", "--include-archived", "--json"],
    ["list"], ["list", "--json"], ["list", "--include-archived"], ["list", "--store", "main", "--json"],
    ["list", "--status", "completed", "--status", "failed"], ["list", "--limit", "2", "--json"],
    ["store", "show", "main"], ["store", "show", "main", "--json"], ["store", "show", "main", "--version", "1"],
    ["store", "show", "forked", "--json"], ["store", "show", "nosuch"], ["store", "show", "main", "--version", "9"],
    ["list", "--store", "nosuch"],
    ["sessions"], ["sessions", "--json"], ["sessions", "--tenant", "acme"], ["sessions", "--agent", "coder"],
    ["sessions", "--tenant", "acme", "--since", "2026-11-02", "--json"], ["sessions", "--since", "2026-11-03"],
]


def _run(args: list[str], fast: bool, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setenv("DREAMS_FAST_READS", "true" if fast else "false")
    r = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    error = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    return r.exit_code, r.stdout, r.stderr, error  # a DreamsError reaches main() (exit 2) as an exception here


def test_every_listing_prints_the_same_through_both_paths(full_lake, monkeypatch):
    _same_through_both(monkeypatch, fast=True)


def test_on_postgresql_every_listing_reads_through_sqlalchemy(backend_lake, monkeypatch):
    _fill(backend_lake)
    assert open_catalog(backend_lake).fast == (backend_lake.catalog_url is None)
    _same_through_both(monkeypatch, fast=backend_lake.catalog_url is None)


def _same_through_both(monkeypatch, fast: bool):
    made = []
    real = CatalogReader._make_catalog
    monkeypatch.setattr(CatalogReader, "_make_catalog", lambda self: made.append(1) or real(self))
    for args in COMMANDS:
        made.clear()
        slow = _run(args, False, monkeypatch)
        assert made, (args, "the SQLAlchemy path was not taken")
        made.clear()
        quick = _run(args, True, monkeypatch)
        assert bool(made) != fast, (args, "a Catalog was made" if fast else "no Catalog was made")
        assert quick == slow, args
        bad = "nosuch" in args or "9" in args
        assert (slow[3] or "").startswith("NotFound(") == bad and slow[0] == int(bad), (args, slow)
    assert "sesn_bench" in _run(["sessions"], True, monkeypatch)[1]  # the lake is not empty
    assert "memories" in _run(["store", "show", "main"], True, monkeypatch)[1]


def test_the_reader_returns_what_the_catalog_returns(full_lake):
    fast, cat = open_catalog(full_lake), Catalog(full_lake)
    assert fast.fast
    assert fast.list_stores() == cat.list_stores()
    assert fast.list_stores(include_archived=True) == cat.list_stores(include_archived=True)
    assert [s["created_at"].tzinfo for s in fast.list_stores()] == [s["created_at"].tzinfo for s in cat.list_stores()]
    for s in cat.list_stores(include_archived=True):
        assert fast.get_store(s["id"]) == cat.get_store(s["id"]) == fast.get_store(s["name"])
        assert fast.list_versions(s["id"]) == cat.list_versions(s["id"])
        for v in cat.list_versions(s["id"]):
            assert fast.get_version(s["id"], v["version"]) == cat.get_version(s["id"], v["version"])
    for kw in ({}, {"include_archived": True}, {"statuses": ["completed", "pending"]}, {"limit": 2},
               {"store_id": cat.get_store("main")["id"], "include_archived": True}):
        assert [d.model_dump() for d in fast.list_dreams(**kw)] == [d.model_dump() for d in cat.list_dreams(**kw)], kw
    for d in cat.list_dreams(include_archived=True):
        assert fast.get_dream(d.id) == d
    from dreaming import lake_index

    assert fast.registered_and_indexed() == lake_index.registered_and_indexed(cat)
    since = T0 - timedelta(hours=1)
    for kw in ({}, {"tenant": "acme"}, {"agent": "coder"}, {"since": since}, {"until": T0 + timedelta(days=1)},
               {"tenant": "acme", "since": since, "session_ids": ["s1", "s2", "nope"]}, {"session_ids": []}):
        got, want = fast.select_sessions(**kw), lake_index.select(cat, **kw)
        assert sorted(got) == sorted(want), kw
        assert want or kw == {"session_ids": []}, kw
    cat.engine.dispose()


def test_not_found_is_the_same_error(full_lake):
    from dreaming.errors import NotFound

    for reader in (open_catalog(full_lake), Catalog(full_lake)):
        for call in (lambda r: r.get_store("nosuch"), lambda r: r.get_dream("drm_nosuch"),
                     lambda r: r.get_version(r.get_store("main")["id"], 9)):
            with pytest.raises(NotFound) as e:
                call(reader)
            assert "no" in str(e.value)


def _imported_by_command(args: list[str], env: dict) -> tuple[str, list[str]]:
    probe = (f"import sys\nfrom dreaming.cli import main\nsys.argv = ['dreams', *{args!r}]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
             f"print('imported:', *(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stdout.strip().splitlines()[-1].split()[1:]


def test_the_listing_commands_import_no_sqlalchemy(full_lake):
    import os

    env = {**os.environ, "DREAMS_HOME": str(full_lake.home)}
    env.pop("DREAMS_FAST_READS", None)
    for args in (["store", "list"], ["store", "list", "--json"], ["list"], ["store", "show", "main"],
                 ["sessions"], ["sessions", "--tenant", "acme", "--since", "2026-11-01"]):
        out, heavy = _imported_by_command(args, env)
        assert heavy == [], (args, heavy)
        assert out.strip()
    # and the probe can see it: through the SQLAlchemy path, the same command imports it
    _, heavy = _imported_by_command(["store", "list"], {**env, "DREAMS_FAST_READS": "false"})
    assert "sqlalchemy" in heavy


def test_a_missing_catalog_is_created_by_the_migrating_path(lake):
    assert not lake.catalog_path.exists()
    r = CliRunner().invoke(app, ["store", "list", "--json"])
    assert r.exit_code == 0, r.output
    assert lake.catalog_path.exists()  # Catalog() made it, as before
    assert open_catalog(lake).fast  # ... and at head now


def _alembic(settings) -> list:
    with sqlite3.connect(settings.catalog_path) as con:
        try:
            return con.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.OperationalError:
            return None


def test_a_catalog_behind_head_is_migrated_then_read(full_lake, monkeypatch):
    want = _run(["store", "list", "--json"], True, monkeypatch)
    # a catalog from before the migrations (tables, no alembic_version)
    with sqlite3.connect(full_lake.catalog_path) as con:
        con.execute("DROP TABLE alembic_version")
    assert _alembic(full_lake) is None
    assert not open_catalog(full_lake).fast  # reading it builds the Catalog: it migrates
    assert _alembic(full_lake) == [(migrations.HEAD,)]
    with sqlite3.connect(full_lake.catalog_path) as con:
        con.execute("DROP TABLE alembic_version")
    assert _run(["store", "list", "--json"], True, monkeypatch) == want  # the command migrates, same output
    assert _alembic(full_lake) == [(migrations.HEAD,)]


def test_a_catalog_at_another_revision_is_not_read_directly(full_lake, monkeypatch):
    from dreaming import migrations

    assert open_catalog(full_lake).fast
    monkeypatch.setattr(migrations, "HEAD", "9999")  # code with a newer migration than this catalog has
    made = []
    monkeypatch.setattr(CatalogReader, "_make_catalog", lambda self: made.append(1) or "catalog")
    reader = open_catalog(full_lake)
    assert not reader.fast and made and reader.catalog == "catalog"


def test_only_a_plain_sqlite_url_is_read_directly(tmp_path):
    db = tmp_path / "elsewhere.sqlite"
    for url, path in [(None, tmp_path / "catalog.sqlite"), (f"sqlite:///{db}", db),
                      ("sqlite:///:memory:", None), ("sqlite://", None), (f"sqlite:///{db}?timeout=3", None),
                      ("postgresql+psycopg://u:p@db:5432/dreams", None)]:
        assert catalog_read._plain_sqlite_path(get_settings(home=tmp_path, catalog_url=url)) == path, url


def test_a_catalog_elsewhere_on_sqlite_is_read_directly(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    s = get_settings(home=tmp_path / "lake", catalog_url=url)
    StoreService(Catalog(s)).create("x")
    assert open_catalog(s).list_stores()[0]["name"] == "x" and open_catalog(s).fast


def test_the_reader_cannot_write(full_lake):
    uri = catalog_read._readable_at_head(full_lake)
    with catalog_read._connect(uri) as con, pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM stores")
    assert len(open_catalog(full_lake).list_stores(include_archived=True)) == 3


def test_the_setting_turns_the_fast_path_off(full_lake):
    assert open_catalog(full_lake).fast
    assert not open_catalog(get_settings(fast_reads=False)).fast


def test_a_version_reads_the_same_through_duckdb_and_pyarrow(full_lake, tmp_path):
    from dreaming.stores import read_memories, read_memories_duckdb

    cat = Catalog(full_lake)
    files = [full_lake.home / v["path"] for s in cat.list_stores(include_archived=True)
             for v in cat.list_versions(s["id"])]
    assert sum(len(read_memories(f)) for f in files) == 4  # 3 + 1, and empty versions
    for f in files:
        arrow, duck = read_memories(f), read_memories_duckdb(f)
        assert [m.model_dump() for m in duck] == [m.model_dump() for m in arrow], f
        assert [m.to_api() for m in duck] == [m.to_api() for m in arrow], f
    # a version file from before the origin / heading columns, under a folder DuckDB would take for a
    # hive partition or a glob
    import pyarrow.parquet as pq

    from dreaming.stores import StoreService

    main = cat.get_store("main")
    table = pq.read_table(full_lake.home / cat.get_version(main["id"], 1)["path"]).drop_columns(["origin", "heading"])
    for folder in ("day=2026-01-01", "odd[1]"):
        old = tmp_path / folder / "v1.parquet"
        old.parent.mkdir()
        pq.write_table(table, old)
        assert [m.model_dump() for m in read_memories_duckdb(old)] == [m.model_dump() for m in read_memories(old)]
        assert [m.heading for m in read_memories_duckdb(old)] == [[], [], []]
    assert StoreService.for_reading(full_lake)._read_file is read_memories_duckdb
    assert StoreService.for_reading(get_settings(fast_reads=False))._read_file is read_memories
    cat.engine.dispose()
