"""The catalog on both backends (SQLite and PostgreSQL, tests/pg.py): migrations (a fresh database,
a catalog made by the old ``create_all``, start-up at head), concurrent first use, the catalog's own
operations, and two dreams racing to promote one store (exactly one wins, 50 tries)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from dreaming import migrations
from dreaming.catalog import Catalog, metadata
from dreaming.migrations import baseline
from dreaming.models import Change
from dreaming.stores import StoreService
from tests.pg import backend_lake  # noqa: F401 - the fixture
from tests.test_promotion import base_memories, ev, make_dream


def _schema(engine) -> dict:
    insp = sa.inspect(engine)
    return {t: sorted((c["name"], c["nullable"]) for c in insp.get_columns(t))
            for t in insp.get_table_names() if t != "alembic_version"}


def test_a_fresh_database_is_upgraded_to_head_with_exactly_the_schema(backend_lake):
    cat = Catalog(backend_lake)
    assert migrations.current_revision(cat.engine) == migrations.HEAD
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with cat.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []  # the migrations make exactly dreaming/catalog.py's tables, columns and indexes
    assert set(_schema(cat.engine)) == set(metadata.tables)
    cat.engine.dispose()


def test_head_is_the_newest_revision():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(migrations.config()).get_current_head() == migrations.HEAD


def test_an_old_create_all_catalog_is_stamped_at_the_baseline_and_upgraded(backend_lake):
    engine = sa.create_engine(backend_lake.resolved_catalog_url, poolclass=sa.pool.NullPool)
    backend_lake.home.mkdir(parents=True, exist_ok=True)
    old = [t for n, t in baseline.metadata.tables.items() if n not in ("lake_files", "session_index")]
    baseline.metadata.create_all(engine, tables=old)  # a catalog from before the session index and migrations
    with engine.begin() as conn:
        conn.execute(baseline.metadata.tables["dreamt_sessions"].insert().values(
            store_id="memstore_x", session_id="sesn_1", dream_id="drm_1"))
    engine.dispose()
    cat = Catalog(backend_lake)
    assert migrations.current_revision(cat.engine) == migrations.HEAD
    assert set(_schema(cat.engine)) == set(metadata.tables)
    assert cat.dreamt_session_ids("memstore_x") == {"sesn_1"}  # data kept
    cat.engine.dispose()


def test_a_catalog_at_head_starts_without_importing_alembic(backend_lake):
    Catalog(backend_lake).engine.dispose()
    code = ("import sys; from dreaming.catalog import Catalog; from dreaming.settings import get_settings;"
            "Catalog(get_settings()).engine.dispose(); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_two_processes_opening_a_new_catalog_at_once_both_succeed(backend_lake):
    code = ("from dreaming.catalog import Catalog; from dreaming.settings import get_settings;"
            "c = Catalog(get_settings()); print(len(c.list_stores()))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outs]
    assert [o.strip() for o, _ in outs] == ["0", "0", "0"]


def test_stores_versions_and_dreams_round_trip(backend_lake):
    cat = Catalog(backend_lake)
    svc = StoreService(cat)
    store = svc.create("rt", scope="acme/support", memories=base_memories())
    got = cat.get_store("rt")
    assert got["id"] == store["id"] and got["head_version"] == 1 and got["metadata"] == {}
    assert got["created_at"].tzinfo is not None
    v2 = svc.write_version(store["id"], base_memories(2), 1, {"type": "user", "id": "u"}, "edit")
    assert [v["version"] for v in cat.list_versions(store["id"])] == [1, 2]
    assert cat.get_version(store["id"], v2)["created_by"] == {"type": "user", "id": "u"}
    with cat.tx() as conn:
        cat.cas_head(conn, store["id"], 1, v2)
    with pytest.raises(Exception, match="somebody promoted first"), cat.tx() as conn:
        cat.cas_head(conn, store["id"], 1, v2)
    d = make_dream(cat, store=cat.get_store("rt"))
    assert cat.get_dream(d.id).created_at.tzinfo is not None
    assert [x.id for x in cat.list_dreams(store_id=store["id"])] == [d.id]
    with cat.tx() as conn:
        cat.mark_dreamt(conn, store["id"], ["s1", "s2"], d.id)
        cat.mark_dreamt(conn, store["id"], ["s2", "s3"], d.id)
    assert cat.dreamt_session_ids(store["id"]) == {"s1", "s2", "s3"}
    cat.engine.dispose()


def test_concurrent_version_reservations_get_distinct_numbers(backend_lake):
    cat = Catalog(backend_lake)
    store = StoreService(cat).create("res", scope="acme", memories=base_memories())
    got: list[int] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        got.append(cat.reserve_version(store["id"], 1, {"type": "user"}, "r"))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [2, 3, 4, 5]
    cat.engine.dispose()


def test_two_dreams_racing_to_promote_one_store_exactly_one_wins_50_tries(backend_lake):
    """The promotion's own commit (dreaming.promotion._commit_update: head compare-and-swap, watermark,
    decision in one transaction) from two threads at once, on a fresh pair of dreams each try."""
    from dreaming.promotion import _commit_update, _Decided

    cat = Catalog(backend_lake)
    for i in range(50):
        a = make_dream(cat, session_ids=[f"a{i}"])
        b = make_dream(cat, store=cat.get_store(a.store_id), session_ids=[f"b{i}"],
                       changes=[Change(op="add", path="/b.md", after="b", evidence=[ev()])])
        barrier = threading.Barrier(2)
        results = {}

        def go(d, results=results, barrier=barrier):
            barrier.wait()
            decided = _Decided([], set(), "racer", {}, None)
            results[d.id] = _commit_update(cat, d.id, d.candidate_version, "racer", None, None, None, decided)

        threads = [threading.Thread(target=go, args=(d,)) for d in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.promotion.state for r in results.values()) == ["conflict", "promoted"], i
        winner = next(r for r in results.values() if r.promotion.state == "promoted")
        assert cat.get_store(a.store_id)["head_version"] == winner.candidate_version
        assert cat.dreamt_session_ids(a.store_id) == set(winner.session_ids)
    cat.engine.dispose()
