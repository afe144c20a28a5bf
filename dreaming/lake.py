"""The transcript lake, queried with DuckDB (one in-memory connection per process).

Views:
- ``events``: every event of every snapshot, deduplicated by (tenant, event_id) so overlapping
  exports count once (the earliest snapshot wins), with the hive ``day`` partition column.
- ``sessions``: one row per session: start, end, events, tool calls, errors, outcome.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from dreaming.schema import EVENT_SCHEMA
from dreaming.settings import Settings, get_settings

_EMPTY_COLS = ", ".join(
    f"CAST(NULL AS {t}) AS {f.name}"
    for f, t in zip(
        EVENT_SCHEMA,
        ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "VARCHAR", "TIMESTAMPTZ", "VARCHAR", "VARCHAR", "VARCHAR",
         "VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"],
        strict=True,
    )
)

SESSIONS_SQL = """
CREATE OR REPLACE TEMP VIEW sessions AS
SELECT
    tenant,
    any_value(agent_id) FILTER (WHERE agent_id IS NOT NULL) AS agent_id,
    session_id,
    min(ts) AS started_at,
    max(ts) AS ended_at,
    CAST(min(ts) AT TIME ZONE 'UTC' AS DATE) AS day,
    count(*) AS events,
    count(*) FILTER (WHERE type IN ('agent.tool_use', 'agent.mcp_tool_use', 'agent.custom_tool_use')) AS tool_calls,
    count(*) FILTER (WHERE is_error OR type = 'session.error') AS errors,
    arg_max(outcome, seq) FILTER (WHERE outcome IS NOT NULL) AS outcome,
    any_value(source_format) AS source_format
FROM events
GROUP BY tenant, session_id
"""


class Lake:
    """DuckDB over ``$DREAMS_HOME/transcripts``. Cheap to create; use as a context manager."""

    def __init__(self, settings: Settings | None = None, con: duckdb.DuckDBPyConnection | None = None):
        self.settings = settings or get_settings()
        self.con = con or duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.refresh()

    def __enter__(self) -> "Lake":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    @property
    def glob(self) -> str:
        """Where snapshot files live (for people and tools; the views read ``self.files`` only)."""
        return str(self.settings.transcripts_dir / "tenant=*" / "day=*" / "*.parquet")

    def has_files(self) -> bool:
        return bool(self.files)

    def refresh(self) -> None:
        """(Re)define the views over the files the catalog registers — exactly those: a file that
        a crashed ingest left in ``transcripts/`` without a catalog row is never read (``dreams
        lake fsck`` quarantines it). A registered file missing on disk is left out and listed in
        ``self.missing`` (fsck reports it) rather than failing every query."""
        from dreaming.catalog import registered_files

        home = self.settings.home
        self.files: list[str] = []
        self.missing: list[str] = []
        for rel in dict.fromkeys(registered_files(self.settings)):
            (self.files if (home / rel).is_file() else self.missing).append(str(home / rel))
        if self.missing:
            import logging

            logging.getLogger(__name__).warning(
                "%d registered snapshot file(s) are missing on disk and are left out (first: %s); "
                "see `dreams lake fsck`", len(self.missing), self.missing[0])
        if self.files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in self.files)
            src = (
                f"SELECT * EXCLUDE (day), day FROM read_parquet([{listing}], hive_partitioning=true, "
                "hive_types={'day': DATE, 'tenant': VARCHAR}, union_by_name=true)"
            )
            self.con.execute(
                f"""CREATE OR REPLACE TEMP VIEW events AS
                SELECT * FROM ({src})
                QUALIFY row_number() OVER (PARTITION BY tenant, event_id ORDER BY snapshot_id, seq) = 1"""
            )
        else:
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW events AS SELECT {_EMPTY_COLS}, CAST(NULL AS DATE) AS day WHERE false"
            )
        self.con.execute(SESSIONS_SQL)

    def sessions(
        self,
        tenant: str | None = None,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        session_ids: list[str] | None = None,
    ) -> list[dict]:
        """Sessions matching the filters, oldest first."""
        where, params = [], []
        if tenant:
            where.append("tenant = ?")
            params.append(tenant)
        if agent:
            where.append("agent_id = ?")
            params.append(agent)
        if since:
            where.append("started_at >= ?")
            params.append(since)
        if until:
            where.append("started_at < ?")
            params.append(until)
        if session_ids is not None:
            where.append("list_contains(?, session_id)")
            params.append(list(session_ids))
        sql = "SELECT * FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY started_at, session_id"
        cur = self.con.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
