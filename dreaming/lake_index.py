"""The session index: which registered snapshot file holds which sessions, so that a read opens only those.

Two catalog tables (``dreaming.catalog``): ``lake_files`` (one row per indexed snapshot file: its
snapshot, tenant, day, rows) and ``session_index`` (one row per session per file: tenant, session id,
agent id range, first and last event time, day, events in that file). Both are written in the
transaction that registers the snapshot (``dreaming.ingest.commit``, ``Catalog.register_written``). A
file registered before the index existed has no ``lake_files`` row: ``ensure_indexed`` builds its rows
from the file once, on first use, and logs it.

The index answers which sessions *may* match a selection and which files hold them — a superset, by
construction: a session's start (``min(ts)`` of its deduplicated events) lies within the first/last
event times of the files that hold it, and its agent within their agent range. The exact answer is
then computed by DuckDB over those files only (``dreaming.lake``), with the same dedupe as the lake.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger(__name__)


def day_of(rel: str) -> str | None:
    """The hive ``day=`` partition of a lake-relative path."""
    return rel.split("day=", 1)[1].split("/", 1)[0] if "day=" in rel else None


def tenant_of(rel: str) -> str:
    return next(part[7:] for part in rel.split("/") if part.startswith("tenant="))


def index_rows(table, rel: str, snapshot_id: str) -> tuple[dict, list[dict]]:
    """(the ``lake_files`` row, the ``session_index`` rows) of one snapshot file's rows (a pyarrow table
    with the event columns). Each session row carries the session's summary in this file, computed with
    the ``sessions`` view's own expressions (``dreaming.lake.SUMMARY_SQL``)."""
    import pyarrow.compute as pc

    from dreaming.lake import SUMMARY_SQL, _connect

    tenant, day = tenant_of(rel), day_of(rel)
    unique = pc.count_distinct(table["event_id"]).as_py() == table.num_rows
    file_row = {"path": rel, "snapshot_id": snapshot_id, "tenant": tenant, "day": day, "rows": table.num_rows,
                "unique_ids": unique}
    if table.num_rows == 0:
        return file_row, []
    con = _connect()
    try:
        con.register("_file_rows", table.select(INDEX_COLUMNS))
        got = con.execute(f"""
            SELECT session_id, min(agent_id), max(agent_id), min(ts), max(ts), count(*),{SUMMARY_SQL},
                   max(seq) FILTER (WHERE outcome IS NOT NULL) AS outcome_seq
            FROM _file_rows GROUP BY session_id ORDER BY session_id""").fetchall()
    finally:
        con.close()
    rows = [
        {"path": rel, "tenant": tenant, "session_id": sid, "agent_id": a_lo, "agent_id_max": a_hi,
         "first_ts": lo.astimezone(UTC), "last_ts": hi.astimezone(UTC), "day": day, "events": n,
         "tool_calls": tools, "errors": errors, "outcome": outcome, "outcome_seq": outcome_seq,
         "source_format": fmt}
        for sid, a_lo, a_hi, lo, hi, n, tools, errors, outcome, fmt, outcome_seq in got
    ]
    return file_row, rows


# what index_rows reads of a file
INDEX_COLUMNS = ["session_id", "agent_id", "ts", "event_id", "seq", "type", "is_error", "outcome", "source_format"]


def index_file(path: Path, rel: str, snapshot_id: str) -> tuple[dict, list[dict]]:
    """``index_rows`` of a Parquet file on disk (reads ``INDEX_COLUMNS``)."""
    import pyarrow.parquet as pq

    return index_rows(pq.read_table(path, columns=INDEX_COLUMNS), rel, snapshot_id)


def insert(conn: sa.Connection, file_rows: list[dict], session_rows: list[dict]) -> None:
    """Insert index rows inside the caller's transaction (the one that registers the snapshot)."""
    from dreaming.catalog import lake_files, session_index

    if not file_rows:
        return
    have = set(conn.execute(sa.select(lake_files.c.path).where(lake_files.c.path.in_([f["path"] for f in file_rows])))
               .scalars())
    if have:  # a path registered twice keeps its first index rows
        file_rows = [f for f in file_rows if f["path"] not in have]
        session_rows = [s for s in session_rows if s["path"] not in have]
    if file_rows:
        conn.execute(lake_files.insert(), file_rows)
    for i in range(0, len(session_rows), 5000):
        conn.execute(session_index.insert(), session_rows[i:i + 5000])


def registered(catalog) -> list[tuple[str, str]]:
    """``(lake-relative path, snapshot id)`` of every registered snapshot file, in registration order."""
    from dreaming.catalog import snapshots

    q = sa.select(snapshots.c.id, snapshots.c.files).order_by(snapshots.c.created_at, snapshots.c.id)
    with catalog.engine.connect() as conn:
        return [(f, sid) for sid, files in conn.execute(q) for f in (files or [])]


def registered_and_indexed(catalog) -> tuple[list[str], int]:
    """``(Catalog.snapshot_files(), number of indexed files)`` in one catalog connection. Index rows are
    only ever added for registered files, so as many as registered paths means every file has them."""
    from dreaming.catalog import lake_files, snapshots

    q = sa.select(snapshots.c.files).order_by(snapshots.c.created_at, snapshots.c.id)
    with catalog.engine.connect() as conn:
        files = [f for fs in conn.execute(q).scalars() for f in (fs or [])]
        n = conn.execute(sa.select(sa.func.count()).select_from(lake_files)).scalar()
    return files, n


def ensure_indexed(catalog, present: set[str] | None = None) -> int:
    """Build the index rows of registered files that have none (a lake from before the index, or a
    registered file that was missing on disk until now). Only files in ``present`` (lake-relative, on
    disk) are read. Returns how many files got indexed; concurrent builders are harmless (a file
    another process indexed first is skipped)."""
    from dreaming.catalog import lake_files

    with catalog.engine.connect() as conn:
        have = set(conn.execute(sa.select(lake_files.c.path)).scalars())
    first: dict[str, str] = {}
    for rel, sid in registered(catalog):
        first.setdefault(rel, sid)
    todo = [(rel, sid) for rel, sid in first.items() if rel not in have and (present is None or rel in present)]
    if not todo:
        return 0
    log.warning("session index: building the rows of %d snapshot file(s) registered without them (a lake from "
                "before the index; done once)", len(todo))
    from dreaming.lake_fs import LakeFiles

    home, store = catalog.settings.home, LakeFiles(catalog.settings)
    built = []
    for rel, sid in todo:
        try:
            built.append(index_file(home / rel, rel, sid) if not store.remote else  # an object store's file
                         index_rows(store.read_table(rel, columns=INDEX_COLUMNS), rel, sid))
        except Exception as e:  # noqa: BLE001 - an unreadable file fails its own reads, not the index
            log.warning("session index: cannot read %s (%s: %s); its sessions are not selectable until it is "
                        "repaired (see `dreams lake fsck`)", rel, type(e).__name__, e)
    try:
        with catalog.tx() as conn:  # insert() skips files another process indexed meanwhile
            insert(conn, [f for f, _ in built], [s for _, rows in built for s in rows])
    except sa.exc.IntegrityError:  # ... or in the same instant (PostgreSQL)
        return 0
    return len(built)


def select(catalog, tenant: str | None = None, agent: str | None = None, since: datetime | None = None,
           until: datetime | None = None, session_ids: list[str] | None = None) -> list[tuple[str, str, str, bool]]:
    """``(path, tenant, session_id, unique_ids)`` of every file row of every session that may match the
    filters (a superset of the exact answer; see the module docstring); ``unique_ids``: the file holds no
    event id twice."""
    from dreaming.catalog import lake_files
    from dreaming.catalog import session_index as si

    where = _filters(si, tenant, agent, since, until)
    out: list[tuple[str, str, str, bool]] = []
    ids = None if session_ids is None else sorted(set(session_ids))
    chunks = [None] if ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]
    cols = sa.select(si.c.path, si.c.tenant, si.c.session_id, lake_files.c.unique_ids).join(
        lake_files, lake_files.c.path == si.c.path)
    with catalog.engine.connect() as conn:
        for chunk in chunks:
            w = where + ([si.c.session_id.in_(chunk)] if chunk is not None else [])
            q = cols if not w else cols.where(sa.tuple_(si.c.tenant, si.c.session_id).in_(
                sa.select(si.c.tenant, si.c.session_id).where(*w).distinct()))
            out.extend((p, t, s, bool(u)) for p, t, s, u in conn.execute(q))
    return out


def select_summaries(catalog, tenant: str | None = None, agent: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, session_ids: list[str] | None = None) -> list[tuple]:
    """The index rows that match the filters (the same superset as ``select``, row by row): ``(path, tenant,
    session_id, agent_id, first_ts, last_ts, events, tool_calls, errors, outcome, source_format, exact)``
    (times aware UTC), where ``exact`` says the row *is* its session's ``sessions`` row: no other file
    holds the session, the file repeats no event id (no dedupe can drop a row), the summary was indexed
    (rows from before revision 0002 have none) and the session has one agent id or none."""
    from dreaming.catalog import lake_files
    from dreaming.catalog import session_index as si

    other = si.alias("o")
    alone = ~sa.exists().where((other.c.tenant == si.c.tenant) & (other.c.session_id == si.c.session_id)
                               & (other.c.path != si.c.path))
    one_agent = sa.or_(si.c.agent_id == si.c.agent_id_max, si.c.agent_id.is_(None) & si.c.agent_id_max.is_(None))
    exact = lake_files.c.unique_ids & si.c.tool_calls.is_not(None) & one_agent & alone
    cols = sa.select(si.c.path, si.c.tenant, si.c.session_id, si.c.agent_id, si.c.first_ts, si.c.last_ts,
                     si.c.events, si.c.tool_calls, si.c.errors, si.c.outcome, si.c.source_format, exact).join(
        lake_files, lake_files.c.path == si.c.path)
    where = _filters(si, tenant, agent, since, until)
    ids = None if session_ids is None else sorted(set(session_ids))
    out: list[tuple] = []
    with catalog.engine.connect() as conn:
        for chunk in [None] if ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]:
            w = where + ([si.c.session_id.in_(chunk)] if chunk is not None else [])
            out.extend((p, t, sid, a, _aware(lo), _aware(hi), *rest[:-1], bool(rest[-1]))
                       for p, t, sid, a, lo, hi, *rest in conn.execute(cols.where(*w) if w else cols))
    return out


def _filters(si, tenant, agent, since, until) -> list:
    """The superset filters on ``session_index`` rows (see the module docstring)."""
    where = []
    if tenant is not None:
        where.append(si.c.tenant == tenant)
    if agent is not None:
        where.append((si.c.agent_id <= agent) & (si.c.agent_id_max >= agent))
    if since is not None:
        where.append(si.c.last_ts >= since)
    if until is not None:
        where.append(si.c.first_ts < until)
    return where


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
