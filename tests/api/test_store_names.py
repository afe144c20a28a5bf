"""Store names are unique per tenant (migration 0003), on SQLite and PostgreSQL: two tenants may hold the same
name, a clash within a tenant is refused, a shared name is given as an id or ``tenant:name`` (the CLI and
both catalog readers), and a catalog at 0002 with stores and versions upgrades with the tenant filled in."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dreaming import migrations
from dreaming.catalog import Catalog
from dreaming.errors import BadInput, InvalidState, NotFound
from dreaming.stores import StoreService
from tests.pg import backend_lake  # noqa: F401 - the fixture


def test_two_tenants_may_share_a_name_and_a_shared_name_needs_its_tenant(backend_lake):
    cat = Catalog(backend_lake)
    svc = StoreService(cat)
    a = svc.create("support", scope="acme")
    b = svc.create("support", scope="globex/bot")
    assert a["id"] != b["id"] and "tenant" not in a
    with pytest.raises(InvalidState, match="acme"):  # within a tenant, a name is still unique
        svc.create("support", scope="acme/other-agent")
    with pytest.raises(BadInput) as e:
        cat.get_store("support")
    assert "acme, globex" in str(e.value) and "acme:support" in str(e.value)
    assert cat.get_store("acme:support")["id"] == a["id"] and cat.get_store("globex:support")["id"] == b["id"]
    assert cat.get_store(a["id"])["id"] == a["id"]
    with pytest.raises(NotFound):
        cat.get_store("initech:support")
    only = svc.create("only-acme", scope="acme")
    assert cat.get_store("only-acme")["id"] == only["id"]  # a name one tenant holds needs no tenant
    with pytest.raises(InvalidState):  # a rename into a name the tenant holds
        cat.update_store(only["id"], name="support")
    assert cat.update_store(b["id"], name="only-acme")["name"] == "only-acme"  # another tenant's name is free


def test_the_fast_reader_resolves_names_as_the_catalog_does(tmp_path, monkeypatch):
    from dreaming.catalog_read import open_catalog
    from dreaming.settings import Settings

    settings = Settings(home=tmp_path / "lake")
    cat = Catalog(settings)
    svc = StoreService(cat)
    a, b = svc.create("shared", scope="acme"), svc.create("shared", scope="globex")
    fast = open_catalog(settings)
    assert fast.fast
    assert fast.get_store("acme:shared") == cat.get_store("acme:shared") and fast.get_store(b["id"])["id"] == b["id"]
    assert fast.get_store(a["id"]) == cat.get_store(a["id"])
    with pytest.raises(BadInput, match="globex:shared|acme:shared"):
        fast.get_store("shared")


def test_the_cli_takes_tenant_colon_name_for_a_shared_name(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DREAMS_HOME": str(tmp_path / "lake")}

    def dreams(*args):
        return subprocess.run([sys.executable, "-c", "from dreaming.cli import main; main()", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    for scope in ("acme", "globex"):
        r = dreams("store", "create", "team", "--scope", scope)
        assert r.returncode == 0, r.stderr
    r = dreams("store", "show", "team")
    assert r.returncode == 2 and "acme:team" in r.stderr, r.stderr
    r = dreams("store", "show", "globex:team", "--json")
    assert r.returncode == 0 and '"globex"' in r.stdout, r.stderr


def test_a_catalog_at_0002_with_stores_upgrades_to_names_per_tenant(backend_lake):
    from alembic import command

    cat = Catalog(backend_lake)
    svc = StoreService(cat)
    s1 = svc.create("one", scope="acme/bot")
    svc.create("two", scope="globex")
    with cat.engine.connect() as conn:  # back to 0002: the tenant column and the new constraint go
        if conn.dialect.name == "sqlite":  # as migrations.upgrade does: a table rebuild under foreign keys
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            command.downgrade(migrations.config(conn), "0002")
    cols = {c["name"] for c in sa.inspect(cat.engine).get_columns("stores")}
    assert "tenant" not in cols
    with cat.engine.begin() as conn:  # an 0002 catalog is unique per server: this name is refused
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(sa.text("INSERT INTO stores (id, name, description, metadata, scope, created_at, updated_at, "
                                 "read_only) SELECT 'memstore_x', name, description, metadata, 'initech', created_at, "
                                 "updated_at, read_only FROM stores WHERE name = 'one'"))
    migrations.upgrade(cat.engine)
    with cat.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT name, tenant FROM stores")).all())
        assert rows == {"one": "acme", "two": "globex"}
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == migrations.HEAD
    assert Catalog(backend_lake).get_store("one")["id"] == s1["id"]
    assert svc.create("one", scope="globex")["name"] == "one"  # after the upgrade, per tenant
    assert StoreService(Catalog(backend_lake)).head(s1["id"]) is not None
