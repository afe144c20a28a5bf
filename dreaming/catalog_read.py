"""Read-only catalog access without SQLAlchemy, for the listing commands (CLI start-up, issue 14).

``open_catalog()`` gives a ``CatalogReader``: the catalog reads that ``dreams store list``, ``dreams
list``, ``dreams store show`` and ``dreams sessions`` need, with the same results as ``Catalog``'s
methods of the same names. On the default SQLite catalog, when its ``alembic_version`` is at
``dreaming.migrations.HEAD``, they are plain SELECTs through the standard library's ``sqlite3`` on a
connection opened read-only (``mode=ro``): importing SQLAlchemy alone costs more than the whole
start-up budget. In every other case — a configured ``DREAMS_CATALOG_URL`` that is not SQLite, no
catalog file yet, a schema behind (or ahead of) head, a file ``sqlite3`` cannot open read-only, or
``DREAMS_FAST_READS=false`` — every read goes to the SQLAlchemy ``Catalog``, which migrates
as it always did. Nothing here writes: anything beyond reading goes through ``CatalogReader.catalog``,
the ordinary ``Catalog``, made on first use.

The column conversions are SQLAlchemy's on SQLite: ``DateTime`` is stored as
``YYYY-MM-DD HH:MM:SS.ffffff`` text in UTC (read back as aware UTC, like ``catalog._aware``), ``JSON``
as JSON text (SQL NULL or ``null``: None), ``Boolean`` as 0/1. tests/test_catalog_read.py checks that
both paths give the same rows and the same command output.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dreaming.errors import NotFound
from dreaming.settings import Settings, get_settings

if TYPE_CHECKING:
    from dreaming.catalog import Catalog
    from dreaming.models import Dream

_STORE_TIMES = ("created_at", "updated_at", "archived_at")
_STORE_JSON = ("metadata", "forked_from", "review_policy", "context_stores")
_VERSION_JSON = ("created_by",)
# the columns in dreaming.catalog's order (what ``sa.select(table)`` returns)
_STORE_COLS = ("id, name, description, metadata, scope, head_version, forked_from, created_at, updated_at, "
               "archived_at, review_policy, read_only, context_stores")
_VERSION_COLS = ("store_id, version, state, parent_version, created_by, message, path, file_sha256, memory_count, "
                 "created_at")


def _time(v: str | None) -> datetime | None:
    """A SQLAlchemy-on-SQLite DateTime value, as the aware UTC datetime ``Catalog`` returns."""
    if v is None:
        return None
    if len(v) <= 26:  # no offset (how SQLAlchemy stores it): one C call, no replace()
        return datetime.fromisoformat(v + "+00:00")
    dt = datetime.fromisoformat(v)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _bind_time(dt: datetime) -> str:
    """A datetime as SQLAlchemy binds a ``DateTime`` on SQLite (its fields as given, no offset); the
    callers pass UTC."""
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(v: str | None) -> Any:
    return None if v is None else json.loads(v)


def _plain_sqlite_path(settings: Settings):
    """The catalog file when the catalog is the SQLite default (or a plain ``sqlite:///PATH`` URL);
    None for any other URL (PostgreSQL, in-memory, a URL with driver options)."""
    from pathlib import Path

    url = settings.resolved_catalog_url
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url[len("sqlite:///"):]
    return Path(path) if path and path != ":memory:" else None


def _connect(uri: str) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``: it cannot write, whatever runs on it), in autocommit mode:
    each statement reads the latest commit, and ``BEGIN`` makes several read one snapshot (WAL)."""
    return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)


def _readable_at_head(settings: Settings) -> str | None:
    """The ``file:`` URI to open the catalog read-only with, when it is SQLite and at the migrations'
    head; None otherwise (the caller reads through ``Catalog``, which creates or migrates it)."""
    if not settings.fast_reads:
        return None
    path = _plain_sqlite_path(settings)
    if path is None or not path.is_file():
        return None
    from dreaming.migrations import HEAD

    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with closing(_connect(uri)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no alembic_version (a new or pre-migration catalog), or not readable
        return None
    return uri if row is not None and row[0] == HEAD else None


class CatalogReader:
    """The catalog's reads for listing commands: plain ``sqlite3`` when possible (see the module
    docstring), else the SQLAlchemy ``Catalog``. ``fast`` says which. Each read opens its own
    connection (~0.1 ms): a reader may be shared between threads."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self._uri = _readable_at_head(self.settings)
        self._catalog: Catalog | None = None
        if self._uri is None:
            self._catalog = self._make_catalog()

    @property
    def fast(self) -> bool:
        return self._uri is not None

    def _make_catalog(self) -> Catalog:
        from dreaming.catalog import Catalog

        return Catalog(self.settings)

    @property
    def catalog(self) -> Catalog:
        """The SQLAlchemy ``Catalog`` (made on first use: it migrates, and it is what writes)."""
        if self._catalog is None:
            self._catalog = self._make_catalog()
        return self._catalog

    def dispose(self) -> None:
        """Release the ``Catalog``'s connections, if one was made (the reads hold none)."""
        if self._catalog is not None:
            self._catalog.engine.dispose()

    def _fetch(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with closing(_connect(self._uri)) as con:
            return con.execute(sql, params).fetchall()

    def _rows(self, sql: str, params: tuple | list = ()) -> list[dict]:
        with closing(_connect(self._uri)) as con:
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    # --- stores and versions (Catalog.list_stores / get_store / get_version / list_versions) ------------

    @staticmethod
    def _store(d: dict) -> dict:
        for k in _STORE_JSON:
            d[k] = _json(d[k])
        for k in _STORE_TIMES:
            d[k] = _time(d[k])
        d["read_only"] = bool(d["read_only"])
        return d

    def list_stores(self, include_archived: bool = False) -> list[dict]:
        if not self.fast:
            return self._catalog.list_stores(include_archived=include_archived)
        where = "" if include_archived else " WHERE archived_at IS NULL"
        return [self._store(r) for r in self._rows(f"SELECT {_STORE_COLS} FROM stores{where} ORDER BY created_at, id")]

    def get_store(self, ref: str) -> dict:
        if not self.fast:
            return self._catalog.get_store(ref)
        rows = self._rows(f"SELECT {_STORE_COLS} FROM stores WHERE id = ?", (ref,))
        if not rows:  # a name, unique per tenant (0003), or tenant:name: as Catalog.get_store
            rows = self._rows(f"SELECT {_STORE_COLS}, tenant FROM stores WHERE name = ?", (ref,))
            if not rows and ":" in ref:
                rows = self._rows(f"SELECT {_STORE_COLS}, tenant FROM stores WHERE tenant = ? AND name = ?",
                                  tuple(ref.split(":", 1)))
            if len(rows) > 1:
                from dreaming.catalog import ambiguous_name

                raise ambiguous_name(ref, [r["tenant"] for r in rows])
            for r in rows:
                r.pop("tenant")
        if not rows:
            raise NotFound(f"no memory store {ref!r} (give a memstore_ id, a store name or tenant:name; "
                           "see `dreams store list`)")
        return self._store(rows[0])

    @staticmethod
    def _version(d: dict) -> dict:
        for k in _VERSION_JSON:
            d[k] = _json(d[k])
        d["created_at"] = _time(d["created_at"])
        return d

    def get_version(self, store_id: str, version: int) -> dict:
        if not self.fast:
            return self._catalog.get_version(store_id, version)
        rows = self._rows(f"SELECT {_VERSION_COLS} FROM store_versions WHERE store_id = ? AND version = ? "
                          "AND state = 'ready'", (store_id, version))
        if not rows:
            raise NotFound(f"store {store_id} has no version {version}")
        return self._version(rows[0])

    def list_versions(self, store_id: str) -> list[dict]:
        if not self.fast:
            return self._catalog.list_versions(store_id)
        sql = f"SELECT {_VERSION_COLS} FROM store_versions WHERE store_id = ? AND state = 'ready' ORDER BY version"
        return [self._version(r) for r in self._rows(sql, (store_id,))]

    # --- dreams (Catalog.get_dream / list_dreams) -----------------------------------------------

    def get_dream(self, dream_id: str) -> Dream:
        if not self.fast:
            return self._catalog.get_dream(dream_id)
        from dreaming.models import Dream

        rows = self._fetch("SELECT body FROM dreams WHERE id = ?", (dream_id,))
        if not rows or rows[0][0] is None:
            raise NotFound(f"no dream {dream_id!r} (see `dreams list`)")
        return Dream.model_validate(json.loads(rows[0][0]))

    def list_dreams(self, store_id: str | None = None, statuses: list[str] | None = None,
                    include_archived: bool = False, limit: int | None = None) -> list[Dream]:
        if not self.fast:
            return self._catalog.list_dreams(store_id=store_id, statuses=statuses,
                                             include_archived=include_archived, limit=limit)
        from dreaming.models import Dream

        where, params = [], []
        if store_id:
            where.append("store_id = ?")
            params.append(store_id)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if not include_archived:
            where.append("archived_at IS NULL")
        sql = "SELECT body FROM dreams" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [Dream.model_validate(json.loads(b)) for (b,) in self._fetch(sql, params)]

    # --- the lake's files and session index (dreaming.lake_index) ----------------------------------

    def registered_and_indexed(self) -> tuple[list[str], int]:
        """``lake_index.registered_and_indexed``: every registered snapshot file in registration order,
        and how many files have index rows."""
        if not self.fast:
            from dreaming import lake_index

            return lake_index.registered_and_indexed(self._catalog)
        with closing(_connect(self._uri)) as con:
            con.execute("BEGIN")  # one snapshot of the catalog for both answers
            listed = con.execute("SELECT files FROM snapshots ORDER BY created_at, id").fetchall()
            n = con.execute("SELECT count(*) FROM lake_files").fetchone()[0]
            con.execute("COMMIT")
        return [f for (fs,) in listed for f in (_json(fs) or [])], n

    def select_sessions(self, tenant: str | None = None, agent: str | None = None, since: datetime | None = None,
                        until: datetime | None = None,
                        session_ids: list[str] | None = None) -> list[tuple[str, str, str, bool]]:
        """``lake_index.select``: ``(path, tenant, session_id, unique_ids)`` of every file row of every
        session that may match (``since`` / ``until``: aware, UTC)."""
        if not self.fast:
            from dreaming import lake_index

            return lake_index.select(self._catalog, tenant=tenant, agent=agent, since=since, until=until,
                                     session_ids=session_ids)
        where, params = self._index_filters(tenant, agent, since, until)
        ids = None if session_ids is None else sorted(set(session_ids))
        chunks = [None] if ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]
        base = ("SELECT session_index.path, session_index.tenant, session_index.session_id, lake_files.unique_ids "
                "FROM session_index JOIN lake_files ON lake_files.path = session_index.path")
        out: list[tuple[str, str, str, bool]] = []
        with closing(_connect(self._uri)) as con:
            for chunk in chunks:
                w = where + ([f"session_id IN ({', '.join('?' * len(chunk))})"] if chunk is not None else [])
                sql = base if not w else (f"{base} WHERE (session_index.tenant, session_index.session_id) IN "
                                          f"(SELECT DISTINCT tenant, session_id FROM session_index "
                                          f"WHERE {' AND '.join(w)})")
                out.extend((p, t, s, bool(u)) for p, t, s, u in con.execute(sql, params + (chunk or [])).fetchall())
        return out

    def select_summaries(self, tenant: str | None = None, agent: str | None = None, since: datetime | None = None,
                         until: datetime | None = None, session_ids: list[str] | None = None) -> list[tuple]:
        """``lake_index.select_summaries`` — except that the times are the stored text here
        (``dreaming.lake.summarised`` parses those it keeps, with ``_time``)."""
        if not self.fast:
            from dreaming import lake_index

            return lake_index.select_summaries(self._catalog, tenant=tenant, agent=agent, since=since, until=until,
                                               session_ids=session_ids)
        where, params = self._index_filters(tenant, agent, since, until, prefix="s.")
        ids = None if session_ids is None else sorted(set(session_ids))
        chunks = [None] if ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]
        base = ("SELECT s.path, s.tenant, s.session_id, s.agent_id, s.first_ts, s.last_ts, s.events, s.tool_calls, "
                "s.errors, s.outcome, s.source_format, f.unique_ids AND s.tool_calls IS NOT NULL "
                "AND s.agent_id IS s.agent_id_max AND NOT EXISTS (SELECT 1 FROM session_index o "
                "WHERE o.tenant = s.tenant AND o.session_id = s.session_id AND o.path <> s.path) "
                "FROM session_index s JOIN lake_files f ON f.path = s.path")
        out: list[tuple] = []
        with closing(_connect(self._uri)) as con:
            for chunk in chunks:
                w = where + ([f"s.session_id IN ({', '.join('?' * len(chunk))})"] if chunk is not None else [])
                sql = base + (f" WHERE {' AND '.join(w)}" if w else "")
                out.extend(con.execute(sql, params + (chunk or [])).fetchall())  # times as stored: see _time
        return out

    @staticmethod
    def _index_filters(tenant, agent, since, until, prefix: str = "") -> tuple[list[str], list]:
        """The WHERE terms of ``lake_index``'s superset filters on ``session_index`` columns."""
        where, params = [], []
        if tenant is not None:
            where.append(f"{prefix}tenant = ?")
            params.append(tenant)
        if agent is not None:
            where.append(f"{prefix}agent_id <= ? AND {prefix}agent_id_max >= ?")
            params += [agent, agent]
        if since is not None:
            where.append(f"{prefix}last_ts >= ?")
            params.append(_bind_time(since))
        if until is not None:
            where.append(f"{prefix}first_ts < ?")
            params.append(_bind_time(until))
        return where, params


def open_catalog(settings: Settings | None = None) -> CatalogReader:
    """The catalog for a read-only command: plain ``sqlite3`` reads when the catalog allows it (see
    the module docstring), else the SQLAlchemy ``Catalog``'s."""
    return CatalogReader(settings)
