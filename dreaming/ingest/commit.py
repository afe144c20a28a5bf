"""Staging a mapped file and committing a group of them: files into the lake, rows into the catalog.

``stage`` writes one Parquet file per UTC day (plus the opt-in originals sidecar) into the
ingest's private staging folder and fsyncs them. ``place_and_register`` then, under the lake's
place lock (shared; fsck takes it exclusively), renames a group's staged files into the lake,
fsyncs each folder once and inserts their catalog rows (the snapshot and its session index) in one
transaction; if the transaction fails, the group's placed files are removed again. A crash in
between leaves files that the catalog does not list: the lake never reads them and fsck quarantines them.
On an object store (``DREAMS_LAKE_URL``) placing is a PUT of each file to its final key, checked
against the staged file (``dreaming.lake_fs``); the rest is the same.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from dreaming import lake_index
from dreaming.atomic import place_lock, write_parquet_staged
from dreaming.catalog import Catalog, snapshots
from dreaming.ingest.common import TOOL_USE_TYPES
from dreaming.ingest.report import FileResult
from dreaming.lake_fs import LakeFiles


def _step(name: str) -> None:
    """A named point of ``place_and_register`` (``placed``: the files are in the lake, not yet in the
    catalog); tests end the process here to leave what a crash leaves."""


@dataclass
class Staged:
    """A prepared file: its day files written and fsynced in staging, its catalog row ready."""

    parts: list[tuple[Path, Path]]  # (staged file, final path): the day files, then the sidecar if any
    row: dict
    counts: tuple[int, int, int, int]  # sessions, events, tool calls, errors
    original: dict | None = None  # the sidecar's ``originals`` row (--keep-secrets)
    index: tuple[list[dict], list[dict]] = ([], [])  # the session index rows of the day files (lake_index)

    def discard(self) -> None:
        discard(self.parts)


def discard(parts: list[tuple[Path, Path]]) -> None:
    """Remove staged files that will not be placed."""
    for tmp, _ in parts:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def known_snapshots(conn: sa.Connection, tenant: str, agent: str | None,
                    shas: set[str] | None = None) -> dict[tuple[str, str], str]:
    """(source sha256, format) → snapshot id for this tenant/agent (only ``shas`` when given)."""
    where = (snapshots.c.tenant == tenant) & (
        snapshots.c.agent_id.is_(None) if agent is None else snapshots.c.agent_id == agent)
    if shas is not None:
        where &= snapshots.c.source_sha256.in_(shas)
    q = sa.select(snapshots.c.source_sha256, snapshots.c.source_format, snapshots.c.id).where(where)
    return {(sha, f): sid for sha, f, sid in conn.execute(q)}


def stage(catalog: Catalog, staging: Path, src, table: pa.Table, snapshot_id: str, tenant: str,
          agent: str | None, fmt: str, counts: tuple[int, int, int, int],
          originals: pa.Table | None = None) -> Staged:
    """Write one Parquet file per UTC day (and the originals sidecar) into ``staging``, fsynced;
    nothing is in the lake yet."""
    settings = catalog.settings
    parts: list[tuple[Path, Path]] = []
    days: list[str] = []
    file_rows: list[dict] = []
    session_rows: list[dict] = []
    try:
        for day, part in split_by_day(table):
            final = settings.transcripts_dir / f"tenant={tenant}" / f"day={day}" / f"{snapshot_id}.parquet"
            parts.append((write_parquet_staged(part, final, staging), final))
            days.append(day)
            f_row, s_rows = lake_index.index_rows(part, final.relative_to(settings.home).as_posix(), snapshot_id)
            file_rows.append(f_row)
            session_rows.extend(s_rows)
        side = None
        if originals is not None:
            final = settings.originals_dir / f"tenant={tenant}" / f"{snapshot_id}.parquet"
            parts.append((write_parquet_staged(originals, final, staging), final))
            side = {"snapshot_id": snapshot_id, "path": final.relative_to(settings.home).as_posix(),
                    "rows": originals.num_rows, "created_at": datetime.now(UTC)}
    except BaseException:
        discard(parts)
        raise
    row = {
        "id": snapshot_id,
        "tenant": tenant,
        "agent_id": agent,
        "source_path": str(src.path.resolve()),
        "source_sha256": src.sha256,
        "source_format": fmt,
        "files": [final.relative_to(settings.home).as_posix() for _, final in parts[:len(days)]],
        "days": days,
        "rows": table.num_rows,
        "sessions": counts[0],
        "created_at": datetime.now(UTC),
    }
    return Staged(parts, row, counts, side, (file_rows, session_rows))


def place_and_register(catalog: Catalog, conn: sa.Connection, group: list[tuple[FileResult, Staged]],
                       known: dict[tuple[str, str], str]) -> None:
    """Move the group's staged files into the lake, fsync each lake folder once, and insert their
    snapshot rows in one catalog transaction. A file whose twin (same content, tenant, agent and
    format) got registered meanwhile is withdrawn as skipped; if the transaction fails, every file
    of the group is withdrawn and reported failed."""
    placed: list[Path] = []
    batch_ids: set[str] = set()
    store = LakeFiles(catalog.settings)  # the lake folder, or an object store (put, then checked)
    with place_lock(catalog.settings.home):
        try:
            placed = store.place([p for _, st in group for p in st.parts])
            _step("placed")
            with conn.begin():  # BEGIN IMMEDIATE: the write lock first, then the re-check
                row0 = group[0][1].row
                twins = known_snapshots(conn, row0["tenant"], row0["agent_id"],
                                        {st.row["source_sha256"] for _, st in group})
                for res, st in group:
                    key = (st.row["source_sha256"], st.row["source_format"])
                    if key in twins:  # another ingest registered it meanwhile, or it came twice in this batch
                        res.note = f"already ingested as {twins[key]} (" + (
                            "the same content earlier in this batch)" if twins[key] in batch_ids else "concurrently)")
                        continue
                    catalog.insert_snapshot(conn, st.row)
                    lake_index.insert(conn, *st.index)  # the session index, in the same transaction
                    if st.original is not None:
                        catalog.insert_original(conn, st.original)
                    twins[key] = st.row["id"]
                    batch_ids.add(st.row["id"])
        except BaseException as e:
            store.remove(placed)
            for _, st in group:
                st.discard()
            for res, _ in group:
                res.status, res.snapshot_id, res.originals = "failed", None, None
                res.error = f"{res.path}: could not register the snapshot: {type(e).__name__}: {e}"
            if not isinstance(e, Exception):
                raise
            return
        for res, st in group:
            key = (st.row["source_sha256"], st.row["source_format"])
            if twins[key] != st.row["id"]:
                store.remove([final for _, final in st.parts])
                res.status, res.snapshot_id, res.originals = "skipped", twins[key], None
                res.issues, res.redactions = [], {}
                continue
            known[key] = st.row["id"]
            res.status, res.files, res.days = "ingested", st.row["files"], st.row["days"]
            res.sessions, res.events, res.tool_calls, res.errors = st.counts


def counts_of(table: pa.Table, sessions: int) -> tuple[int, int, int, int]:
    """(sessions, events, tool calls, errors), counted like the ``sessions`` view (lake.py)."""
    tool_calls = pc.sum(pc.is_in(table["type"], pa.array(TOOL_USE_TYPES))).as_py() or 0
    errors = pc.sum(pc.or_(pc.fill_null(table["is_error"], False), pc.equal(table["type"], "session.error")))
    return sessions, table.num_rows, tool_calls, errors.as_py() or 0


def split_by_day(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``(YYYY-MM-DD, rows of that UTC day)`` in day order; rows keep their order within a day."""
    days = table["ts"].cast(pa.date32())
    lo, hi = (v.as_py() for v in pc.min_max(days).values())
    if lo == hi:  # the usual case: one file, one day
        return [(lo.isoformat(), table)]
    return [(d.isoformat(), table.filter(pc.equal(days, d))) for d in sorted(pc.unique(days).to_pylist())]


def remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        with contextlib.suppress(OSError):  # leave no empty day folder behind
            p.parent.rmdir()
