"""The transcript lake, queried with DuckDB (one in-memory connection per process).

Views:
- ``events``: every event of every snapshot, deduplicated by (tenant, session_id, event_id) so overlapping
  exports count once (the earliest snapshot wins), with the hive ``day`` partition column.
- ``sessions``: one row per session: start, end, events, tool calls, errors, outcome.

``Lake.con`` carries these views over the whole lake (defined on first use). Selections do not pay
the whole lake: ``Lake.sessions(...)`` asks the catalog's session index (``dreaming.lake_index``)
which sessions may match and which files hold them, and ``Lake.scoped(session_ids, tenant)`` gives a
connection whose ``events``/``sessions`` views read only those files, keep only those sessions'
rows, and deduplicate inside them — the same rows the whole-lake views give for those sessions.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import duckdb

from dreaming.settings import Settings, get_settings

log = logging.getLogger(__name__)
_EMPTY_TYPES = ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "VARCHAR", "TIMESTAMPTZ", "VARCHAR", "VARCHAR", "VARCHAR",
                "VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"]


def _empty_cols() -> str:
    """The event columns as typed NULLs (the views of a lake without files); reads the schema lazily."""
    from dreaming.schema import EVENT_SCHEMA

    return ", ".join(f"CAST(NULL AS {t}) AS {f.name}" for f, t in zip(EVENT_SCHEMA, _EMPTY_TYPES, strict=True))


TOOL_USE_TYPES = ("agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use")
# a session's summary columns, one definition for the ``sessions`` view and the session index's per-file
# summaries (dreaming.lake_index): over a session's rows they give the same values
SUMMARY_SQL = f"""
    count(*) FILTER (WHERE type IN {TOOL_USE_TYPES!r}) AS tool_calls,
    count(*) FILTER (WHERE is_error OR type = 'session.error') AS errors,
    arg_max(outcome, seq) FILTER (WHERE outcome IS NOT NULL) AS outcome,
    any_value(source_format) AS source_format"""

SESSIONS_SQL = f"""
CREATE OR REPLACE TEMP VIEW sessions AS
SELECT
    tenant,
    any_value(agent_id) FILTER (WHERE agent_id IS NOT NULL) AS agent_id,
    session_id,
    min(ts) AS started_at,
    max(ts) AS ended_at,
    CAST(min(ts) AT TIME ZONE 'UTC' AS DATE) AS day,
    count(*) AS events,{SUMMARY_SQL}
FROM events
GROUP BY tenant, session_id
"""
SUMMARY_FIELDS = ("agent_id", "agent_id_max", "first_ts", "last_ts", "events", "tool_calls", "errors", "outcome",
                  "source_format")  # what ``select(summary=True)`` adds to each row, in this order
# the columns of a ``sessions`` row, in the view's order
SESSION_COLUMNS = ("tenant", "agent_id", "session_id", "started_at", "ended_at", "day", "events", "tool_calls",
                   "errors", "outcome", "source_format")


INLINE_IDS = 5000
_DEDUPE = "QUALIFY row_number() OVER (PARTITION BY tenant, session_id, event_id ORDER BY snapshot_id, seq) = 1"


def _source(files: list[str]) -> str:
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    union = ", union_by_name=true" if len(files) > 1 else ""  # binding it reads every file's footer
    return (f"SELECT * EXCLUDE (day), day FROM read_parquet([{listing}], hive_partitioning=true, "
            f"hive_types={{'day': DATE, 'tenant': VARCHAR}}{union})")


def _literal_list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def define_views(con: duckdb.DuckDBPyConnection, files: list[str], scope: list[tuple[str, str]] | None = None,
                 materialize: bool = False, dedupe: bool = True) -> None:
    """Define the ``events`` and ``sessions`` views on ``con`` over ``files``. With ``scope`` (the
    (tenant, session_id) pairs to keep) only those sessions' rows are kept, before the dedupe window
    (as constants the Parquet scan filters on; a temp table ``_scope`` beyond a few thousand, or for
    several tenants); with ``materialize`` the events are read once into a temp table. ``dedupe=False``
    only where no event id can repeat among the kept rows (``Lake._scope`` knows it from the index)."""
    if not files:
        body = f"SELECT {_empty_cols()}, CAST(NULL AS DATE) AS day WHERE false"
    elif scope is None:
        body = f"SELECT * FROM ({_source(files)}) {_DEDUPE}"
    else:
        tenants = sorted({t for t, _ in scope})
        rows = f"SELECT * FROM ({_source(files)}) WHERE list_contains({_literal_list(tenants)}, tenant)"
        if len(tenants) == 1 and len(scope) <= INLINE_IDS:
            rows += f" AND list_contains({_literal_list(s for _, s in scope)}, session_id)"
        else:
            import pyarrow as pa

            con.register("_scope_arrow", pa.table({"tenant": pa.array([t for t, _ in scope], pa.string()),
                                                   "session_id": pa.array([s for _, s in scope], pa.string())}))
            con.execute("CREATE OR REPLACE TEMP TABLE _scope AS SELECT * FROM _scope_arrow")
            con.unregister("_scope_arrow")
            rows = (f"SELECT * FROM ({rows}) e SEMI JOIN _scope s "
                    "ON e.tenant = s.tenant AND e.session_id = s.session_id")
        body = f"SELECT * FROM ({rows}) {_DEDUPE if dedupe else ''}"
    kind = "TABLE" if materialize else "VIEW"
    con.execute(f"CREATE OR REPLACE TEMP {kind} events AS {body}")
    con.execute(SESSIONS_SQL)


def query_sessions(con, tenant=None, agent=None, since=None, until=None, session_ids=None) -> list[dict]:
    """Rows of the ``sessions`` view on ``con`` matching the filters, oldest first."""
    filters = [("tenant = ?", tenant or None), ("agent_id = ?", agent or None), ("started_at >= ?", since or None),
               ("started_at < ?", until or None),
               ("list_contains(?, session_id)", list(session_ids) if session_ids is not None else None)]
    where = [w for w, v in filters if v is not None]
    params = [v for _, v in filters if v is not None]
    sql = "SELECT * FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY started_at, session_id, tenant"
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


_DB: tuple[int, duckdb.DuckDBPyConnection] | None = None


def _connect() -> duckdb.DuckDBPyConnection:
    """A connection of its own (temp views and tables are per connection) to this process's in-memory
    DuckDB database: opening a database costs ~50 ms, a cursor of an open one nothing."""
    global _DB
    if _DB is None or _DB[0] != os.getpid():  # never a database inherited through fork
        if _DB is None:
            import atexit

            atexit.register(_close_database)
        _DB = (os.getpid(), duckdb.connect())
    con = _DB[1].cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _close_database() -> None:
    global _DB
    if _DB is not None and _DB[0] == os.getpid():
        _DB[1].close()
    _DB = None


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def summarised(rows: list[tuple], present: set[str]) -> tuple[list[dict], set[tuple[str, str]]]:
    """Split ``lake_index.select_summaries`` rows of the files in ``present`` into the ``sessions`` rows of
    the sessions the index answers exactly (times parsed where the reader gave stored text) and the
    ``(tenant, session_id)`` of those it does not."""
    from dreaming.catalog_read import _time

    exact: list[dict] = []
    rest: set[tuple[str, str]] = set()
    for path, tenant, sid, agent, lo, hi, n, tools, errors, outcome, fmt, alone in rows:
        if alone and path in present:
            if lo.__class__ is str:  # the sqlite3 reader's stored text
                lo, hi = _time(lo), _time(hi)
            exact.append({"tenant": tenant, "agent_id": agent, "session_id": sid, "started_at": lo, "ended_at": hi,
                          "day": lo.date(), "events": n, "tool_calls": tools, "errors": errors, "outcome": outcome,
                          "source_format": fmt})
        elif not alone:
            rest.add((tenant, sid))
    return exact, rest


class Scoped:
    """``events``/``sessions`` views over the files that hold a selection of sessions, on a connection of
    its own (a cursor of the lake's database). ``files``: what it reads; ``missing``: registered files of
    the selection that are missing on disk (left out). Pass it (or ``.con``) to ``extract_signals``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, files: list[str], missing: list[str], owned: bool = True):
        self.con, self.files, self.missing, self._owned = con, files, missing, owned

    def sessions(self, **filters) -> list[dict]:
        return query_sessions(self.con, **filters)

    def __enter__(self) -> "Scoped":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.con.close()


class Lake:
    """DuckDB over ``$DREAMS_HOME/transcripts`` (or ``$DREAMS_LAKE_URL/transcripts`` on an object store,
    ``dreaming.lake_fs``). Cheap to create; use as a context manager."""

    def __init__(self, settings: Settings | None = None, con: duckdb.DuckDBPyConnection | None = None):
        self.settings = settings or get_settings()
        self._given, self._duck = con, None  # the DuckDB connection, made on first use (see _con)
        self._catalog = None
        self.refresh()

    def __enter__(self) -> "Lake":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._duck is not None:
            self._duck.close()
        if self._catalog is not None:
            self._catalog.dispose()

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        """This lake's DuckDB connection, made on first use: a selection the session index answers
        (``sessions``) never needs one."""
        if self._duck is None:
            self._duck = self._given or _connect()
            self._duck.execute("SET TimeZone = 'UTC'")
            if self._registered:
                self._store.attach(self._duck)  # DuckDB reads an object store through its fsspec filesystem
        return self._duck

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection with the whole-lake ``events``/``sessions`` views (every registered file: a
        query on them pays the whole lake; selections go through ``sessions()`` / ``scoped()``)."""
        if not self._full:
            define_views(self._con, self.files)
            self._full = True
        return self._con

    @property
    def glob(self) -> str:
        """Where snapshot files live (for people and tools; the views read ``self.files`` only)."""
        if self._store.remote:
            return self._store.uri("transcripts/tenant=*/day=*/*.parquet")
        return str(self.settings.transcripts_dir / "tenant=*" / "day=*" / "*.parquet")

    def has_files(self) -> bool:
        return bool(self.files)

    @property
    def files(self) -> list[str]:
        """Every registered file on disk (checked on first use: a selection checks only its own files)."""
        if self._files is None:
            self._check_disk()
        return self._files

    @property
    def missing(self) -> list[str]:
        """Registered files missing on disk: left out of every read."""
        if self._missing is None:
            self._check_disk()
        return self._missing

    def _check_disk(self) -> None:
        self._files, self._missing = [], []
        there = self._store.present(self._registered) if self._store.remote else None
        for rel, path in self._registered.items():
            on_disk = rel in there if there is not None else os.path.isfile(path)
            (self._files if on_disk else self._missing).append(path)
        if self._missing:
            log.warning("%d registered snapshot file(s) are missing on disk and are left out (first: %s); "
                        "see `dreams lake fsck`", len(self._missing), self._missing[0])

    def refresh(self) -> None:
        """Re-read which files the catalog registers — exactly those: a file that a crashed ingest left
        in ``transcripts/`` without a catalog row is never read (``dreams lake fsck`` quarantines it).
        A registered file missing on disk is left out and listed in ``self.missing`` (fsck reports it)
        rather than failing every query. The whole-lake views are (re)defined on next use of ``con``."""
        from dreaming.lake_fs import LakeFiles

        self._store = LakeFiles(self.settings)  # where the files are: under the lake root, or an object store
        # no catalog where none exists yet: a lake never written has no files, and stays free of side effects
        if self._catalog is None and (self.settings.catalog_url is not None or self.settings.catalog_path.exists()):
            from dreaming.catalog_read import open_catalog

            # reads through plain sqlite3 where the catalog allows it (no SQLAlchemy: CLI start-up)
            self._catalog = open_catalog(self.settings)
        registered, indexed = [], 0
        if self._catalog is not None:  # one catalog query each: the registered files, and how many are indexed
            registered, indexed = self._catalog.registered_and_indexed()
        self._complete = indexed >= len(set(registered))
        self._registered: dict[str, str] = {rel: self._store.uri(rel) for rel in registered}  # rel -> read path
        self._files: list[str] | None = None
        self._missing: list[str] | None = None
        self._full = False
        self._indexed: bool | None = None
        if self._duck is not None:  # the whole-lake views are redefined on next use of ``con``
            if self._registered:
                self._store.attach(self._duck)
            self._duck.execute("DROP VIEW IF EXISTS sessions")
            self._duck.execute("DROP VIEW IF EXISTS events")

    # --- selections through the session index ---------------------------------------------------

    def _index_ready(self) -> bool:
        """Whether the session index covers the files on disk (built once for files registered without
        it); False (whole-lake reads, as before the index) when the catalog cannot be written."""
        if self._indexed is None:
            try:
                if not self._complete:  # a write: through the SQLAlchemy Catalog
                    from dreaming import lake_index

                    on_disk = set(self.files)
                    lake_index.ensure_indexed(self._catalog.catalog, present={r for r, p in self._registered.items()
                                                                              if p in on_disk})
                self._indexed = True
            except Exception as e:  # noqa: BLE001 - a read-only catalog still reads, only slower
                log.warning("the session index could not be built (%s: %s); reading the whole lake",
                            type(e).__name__, e)
                self._indexed = False
        return self._indexed

    def _scope(self, rows: list[tuple[str, str, str, bool]], materialize: bool = False) -> Scoped:
        """A ``Scoped`` over the index rows ``(path, tenant, session_id, unique_ids)``."""
        store = self._store
        paths = dict.fromkeys(r[0] for r in rows)
        there = self._present(set(paths))
        files = [store.uri(p) for p in paths if p in there]
        missing = [store.uri(p) for p in paths if p not in there]
        if missing:
            log.warning("%d snapshot file(s) of the selection are missing on disk and are left out (first: %s); "
                        "see `dreams lake fsck`", len(missing), missing[0])
        held = [(t, s) for p, t, s, _ in rows if p in there]
        pairs = sorted(set(held))
        # the dedupe window is needed only where a kept event can come twice: a session held by several
        # files (overlapping exports, or a session across midnight), or a file that repeats an event id
        dedupe = len(held) != len(pairs) or not all(u for p, _, _, u in rows if p in there)
        con = _connect()
        if files:
            store.attach(con)
        define_views(con, files, scope=pairs, materialize=materialize, dedupe=dedupe)
        return Scoped(con, files, missing)

    def scoped(self, session_ids: list[str], tenant: str | None = None, materialize: bool = False) -> Scoped:
        """Views over exactly the files that hold ``tenant``'s sessions ``session_ids`` (any tenant's
        when None), keeping only those sessions' rows; nothing else of the lake is opened. With
        ``materialize`` the events are read once into a temp table (every column)."""
        if not self._registered:
            return self._scope([])
        if not self._index_ready():
            return Scoped(self.con, self.files, self.missing, owned=False)
        rows = self._catalog.select_sessions(tenant=tenant, session_ids=list(session_ids))
        return self._scope(rows, materialize=materialize)

    def sessions(
        self,
        tenant: str | None = None,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        session_ids: list[str] | None = None,
    ) -> list[dict]:
        """Sessions matching the filters, oldest first. With a filter, the session index picks the
        candidate sessions and their files; the rows are computed from those files only."""
        filters = {"tenant": tenant, "agent": agent, "since": since, "until": until, "session_ids": session_ids}
        if not self._registered:
            return []
        if all(v is None for v in filters.values()) or not self._index_ready():
            return query_sessions(self.con, **filters)
        since, until = _utc(since), _utc(until)
        rows = self._catalog.select_summaries(tenant=tenant, agent=agent, since=since, until=until,
                                              session_ids=session_ids)
        paths = {r[0] for r in rows}
        present = self._present(paths)
        if paths - present:
            log.warning("%d snapshot file(s) of the selection are missing on disk and are left out (first: %s); "
                        "see `dreams lake fsck`", len(paths - present), sorted(paths - present)[0])
        # a session that one file holds without repeated ids is answered by its index row (no file opened);
        # the others are computed by DuckDB from their files, as the whole-lake view would
        exact, rest = summarised(rows, present)
        ids = None if session_ids is None else set(session_ids)
        out = [r for r in exact if (agent is None or r["agent_id"] == agent)
               and (since is None or r["started_at"] >= since) and (until is None or r["started_at"] < until)
               and (ids is None or r["session_id"] in ids)]
        if rest:  # every file row of those sessions, and DuckDB over those files, as the whole lake would
            held = self._catalog.select_sessions(tenant=tenant, session_ids=sorted({s for _, s in rest}))
            with self._scope(held) as sc:
                out += [r for r in sc.sessions(**filters) if (r["tenant"], r["session_id"]) in rest]
        return sorted(out, key=lambda r: (r["started_at"], r["session_id"], r["tenant"]))

    def _present(self, paths: set[str]) -> set[str]:
        """The lake-relative ``paths`` that are on disk (or in the object store)."""
        if self._store.remote:
            return self._store.present(paths)
        return {p for p in paths if os.path.isfile(self.settings.home / p)}
