"""PostgreSQL for the catalog tests: ``DREAMS_TEST_POSTGRES_URL`` (set by scripts/test.sh, which starts
one with scripts/postgres.sh) names a server; each test gets its own fresh database, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

BACKENDS = ["sqlite", "postgresql"]


def skip_reason() -> str:
    return os.environ.get("DREAMS_TEST_POSTGRES_SKIP") or (
        "DREAMS_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL with scripts/postgres.sh)")


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a brand-new, empty database on the test server (skips the test without one)."""
    import sqlalchemy as sa

    url = os.environ.get("DREAMS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(skip_reason())
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"dreams_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend_lake(request, tmp_path, monkeypatch):
    """Settings of a fresh lake whose catalog is SQLite (under the lake) or a fresh PostgreSQL database."""
    from dreaming.settings import get_settings

    monkeypatch.setenv("DREAMS_HOME", str(tmp_path / "lake"))
    if request.param == "sqlite":
        monkeypatch.delenv("DREAMS_CATALOG_URL", raising=False)
        yield get_settings()
        return
    with fresh_database() as url:
        monkeypatch.setenv("DREAMS_CATALOG_URL", url)
        yield get_settings()


@pytest.fixture
def lake_both(backend_lake):
    """``lake`` on both backends: a test module sets ``lake = lake_both`` (after importing both) to run
    its catalog tests on SQLite and on PostgreSQL."""
    return backend_lake
