"""Alembic environment: runs on the connection ``dreaming.migrations.upgrade`` passes in
``config.attributes["connection"]`` (inside its transaction), or on ``DREAMS_CATALOG_URL`` / the
default SQLite catalog when run from the ``alembic`` command line."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from dreaming.catalog import metadata


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():  # a no-op when the caller's transaction is open
        context.run_migrations()


conn = context.config.attributes.get("connection")
if conn is not None:
    _run(conn)
else:  # pragma: no cover - the alembic CLI (e.g. `alembic revision --autogenerate`)
    from dreaming.settings import get_settings

    engine = sa.create_engine(get_settings().resolved_catalog_url, poolclass=sa.pool.NullPool)
    with engine.begin() as c:
        _run(c)
