"""The catalog's schema migrations (Alembic), run by ``Catalog()`` when the schema is behind.

Importing this package is cheap: Alembic is imported by :func:`upgrade` only, which ``Catalog()``
calls only when ``alembic_version`` is not already at :data:`HEAD` (one plain query decides), and
SQLAlchemy inside the functions (``dreaming.catalog_read`` reads :data:`HEAD` without it).
How to add a migration: docs/operations.md, "Catalog on PostgreSQL".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

HEAD = "0003"  # the newest revision in versions/; bump with every new migration (a test checks it)
BASELINE = "0001"  # the schema a pre-migration catalog (made by metadata.create_all) has
LOCK_KEY = 0x64726561  # pg_advisory_xact_lock key: "drea"


def current_revision(engine: sa.Engine) -> str | None:
    """The catalog's ``alembic_version``, or None when there is none (new or pre-migration catalog)."""
    import sqlalchemy as sa

    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except sa.exc.DBAPIError:
        return None


def config(connection: sa.Connection | None = None):
    """An Alembic ``Config`` for these migrations, without an alembic.ini (works from an installed package)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "dreaming:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the catalog to ``revision`` in ONE transaction that concurrent callers wait for
    (SQLite: the engine's ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock).
    A catalog made by the old ``create_all`` (tables, no ``alembic_version``) gets the baseline's
    missing tables, is stamped at the baseline, then upgraded."""
    import sqlalchemy as sa
    from alembic import command

    from dreaming.migrations import baseline

    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # before BEGIN (a no-op inside one): a batch-mode table rebuild drops and renames a parent
            # table, which SQLite's foreign keys refuse; they are checked below, before the commit
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
            tables = set(sa.inspect(conn).get_table_names())
            cfg = config(conn)
            if "alembic_version" not in tables and "stores" in tables:
                baseline.metadata.create_all(conn, checkfirst=True)  # tables newer than that catalog
                command.stamp(cfg, BASELINE)
            command.upgrade(cfg, revision)
            if sqlite and (bad := conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"the migration broke foreign keys: {bad[:5]}")  # rolls back
