"""Keeping the lake healthy: ``dreams lake compact`` and ``dreams lake stats``.

Many small ingests leave many small Parquet files per ``tenant=<t>/day=<d>/`` partition: a read of a
few sessions then opens many files and the session index holds many rows. ``compact`` rewrites each
partition that has more than one registered file into one file, sorted by ``(session_id, seq,
snapshot_id)``, in row groups of ``ROW_GROUP_ROWS`` rows.

**What the catalog records.** The new file is registered as a *compaction snapshot*: a ``snapshots``
row (id ``snp_…``, ``source_format`` ``compaction``, ``source_path`` ``compaction of <snapshot ids>``,
``source_sha256`` ``compact:<id>``) whose ``files`` lists the new file only. The source snapshots keep
their rows (their source hashes are what makes a re-ingest of the same export a no-op), with the
compacted paths taken out of their ``files``. Every row keeps its own ``snapshot_id`` column, so
the lake's dedupe ("the copy from the earliest snapshot wins", ``ORDER BY snapshot_id, seq``) gives the
same rows after compaction; duplicates across the source files are kept as they were (the file's
``unique_ids`` says whether it holds an event id twice).

**Atomic, in this order** (a file the catalog does not register does not exist for the lake):

1. stage the new file in a private ``StagingArea`` and fsync it (a crash: fsck removes the staging);
2. validate it: the same row count and the same multiset of ``(session_id, event_id, snapshot_id)`` as
   the inputs (DuckDB, ``EXCEPT ALL`` both ways);
3. under the lake's place lock held *exclusively* (no ingest is between placing and registering a file,
   and fsck is not running), place it under its final name — unregistered, so not read; a crash here
   leaves it for fsck to quarantine, and the old files still hold every event;
4. one catalog transaction (``BEGIN IMMEDIATE``, the write lock first, as ingest): re-check that the
   partition's registered files are still exactly the inputs (else the partition is skipped: a
   concurrent writer changed it), register the new file and its ``lake_files``/``session_index`` rows,
   retire the old files (out of their snapshots' ``files``, their index rows deleted);
5. leave the old files where they are, for a grace period: a ``Lake`` opened before the transaction
   listed them and may still read them. Their manifest (``dreaming.lake_retired``, written before the
   transaction) keeps fsck from quarantining them; the next ``fsck`` or ``compact`` deletes them once
   the grace (``staging_grace_s``) has passed.

At every point the registered files hold every event exactly once, and a reader that listed the old
files still finds them.

On object storage (``DREAMS_LAKE_URL``, ``dreaming.lake_fs``) the same steps run through ``LakeFiles``:
DuckDB reads the inputs through the registered filesystem, step 3 is a PUT of the staged file checked
against it (size, row count), and retired objects are deleted by ``LakeFiles.remove``. ``stats`` works
there too (sizes from one listing of the objects).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from dreaming import lake_index, lake_retired
from dreaming.atomic import StagingArea, place_lock
from dreaming.catalog import Catalog, catalog_exists, snapshots
from dreaming.lake import _literal_list
from dreaming.settings import Settings, get_settings

log = logging.getLogger(__name__)

# A session is ~30 events; 8,192 rows hold ~250 sessions. Sorted by session_id, a row group's min/max
# session_id statistics let DuckDB skip every group that holds none of the sessions a dream reads, so a
# 100-session read decodes at most 100 groups of the day, not the day; groups much smaller than this
# cost footer size and compression ratio (zstd per column chunk) for little more pruning.
ROW_GROUP_ROWS = 8192
COMPACTION_FORMAT = "compaction"


@dataclass
class Partition:
    tenant: str
    day: str | None
    files: list[str]  # lake-relative, registered
    rows: int = 0
    bytes: int = 0
    new_file: str | None = None
    status: str = "planned"  # planned | compacted | skipped | would compact (dry run)
    reason: str | None = None
    snapshot_id: str | None = None
    sources: list[str] = field(default_factory=list)  # the snapshot ids the rows come from


@dataclass
class CompactReport:
    partitions: list[Partition] = field(default_factory=list)
    dry_run: bool = False
    retired_removed: list[str] = field(default_factory=list)  # old files of earlier compactions, now deleted

    @property
    def compacted(self) -> list[Partition]:
        return [p for p in self.partitions if p.status == "compacted"]

    @property
    def skipped(self) -> list[Partition]:
        return [p for p in self.partitions if p.status == "skipped"]

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "compacted": len(self.compacted), "skipped": len(self.skipped),
                "partitions": [asdict(p) for p in self.partitions], "retired_removed": self.retired_removed}


class _Crash(BaseException):
    """Raised by tests at a named step (monkeypatch ``_step``): a BaseException, so it goes through
    ``compact``'s per-partition ``except Exception`` as a real crash would."""


def _step(name: str) -> None:
    """A named point between the steps of a compaction (tests raise here to simulate a crash)."""


def _registered_by_partition(conn: sa.Connection) -> dict[tuple[str, str | None], list[tuple[str, str]]]:
    """``(tenant, day) -> [(path, snapshot id)]`` of the registered transcript files (registration order)."""
    q = sa.select(snapshots.c.id, snapshots.c.files).order_by(snapshots.c.created_at, snapshots.c.id)
    out: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for sid, files in conn.execute(q):
        for rel in files or []:
            if rel in seen or "tenant=" not in rel:
                continue
            seen.add(rel)
            out.setdefault((lake_index.tenant_of(rel), lake_index.day_of(rel)), []).append((rel, sid))
    return out


def plan(catalog: Catalog, tenant: str | None = None, before: str | None = None) -> list[Partition]:
    """The partitions ``compact`` would look at: more than one registered file, of ``tenant`` (all when
    None), with a day before ``before`` (``YYYY-MM-DD``, exclusive) when given; oldest first. A
    partition with a registered file missing on disk is marked skipped."""
    from dreaming.lake_fs import LakeFiles

    store = LakeFiles(catalog.settings)
    with catalog.engine.connect() as conn:
        parts = _registered_by_partition(conn)
    chosen = [(t, day, files) for (t, day), files in sorted(parts.items(), key=lambda kv: (kv[0][1] or "", kv[0][0]))
              if len(files) >= 2 and (tenant is None or t == tenant) and (before is None or (day or "") < before)]
    rels = [f for _, _, files in chosen for f, _ in files]
    sizes = _sizes(store, rels)  # rel -> bytes, for the files that are there
    out = []
    for t, day, files in chosen:
        p = Partition(t, day, [f for f, _ in files], sources=sorted({s for _, s in files}))
        missing = [f for f in p.files if f not in sizes]
        if missing:
            p.status, p.reason = "skipped", f"{len(missing)} registered file(s) missing on disk (see `dreams lake fsck`)"
        else:  # what the table shows before anything is rewritten (a dry run too): bytes, and rows from the footers
            p.bytes = sum(sizes[f] for f in p.files)
            p.rows = sum(store.num_rows(f) for f in p.files)
        out.append(p)
    return out


def _sizes(store, rels: list[str]) -> dict[str, int]:
    """The size of each of ``rels`` that exists (a file stat each locally; one listing on an object store)."""
    if store.remote:
        listing = store.listing(("transcripts",)) if rels else {}
        return {r: listing[r]["size"] for r in rels if r in listing}
    home = store.settings.home
    return {r: (home / r).stat().st_size for r in rels if (home / r).is_file()}


def _read_inputs(con, paths: list[Path]):
    """Every row of ``paths`` as a pyarrow table in the event schema, sorted for session reads."""
    from dreaming.schema import EVENT_SCHEMA

    listing = _literal_list(str(p) for p in paths)
    cols = ", ".join(EVENT_SCHEMA.names)
    t = con.sql(f"SELECT {cols} FROM read_parquet({listing}, hive_partitioning=false, union_by_name=true) "
                    "ORDER BY session_id, seq, snapshot_id, event_id").to_arrow_table()
    return t.cast(EVENT_SCHEMA)


def _validate(con, inputs: list[Path], staged: Path) -> str | None:
    """None when ``staged`` holds the same rows count and multiset of (session_id, event_id, snapshot_id)
    as ``inputs``; else what differs."""
    src, new = _literal_list(str(p) for p in inputs), _literal_list([str(staged)])
    key = "session_id, event_id, snapshot_id"
    a = f"SELECT {key} FROM read_parquet({src}, hive_partitioning=false, union_by_name=true)"
    b = f"SELECT {key} FROM read_parquet({new}, hive_partitioning=false)"
    n_a = con.execute(f"SELECT count(*) FROM ({a})").fetchone()[0]
    n_b = con.execute(f"SELECT count(*) FROM ({b})").fetchone()[0]
    if n_a != n_b:
        return f"the new file has {n_b} rows, the inputs {n_a}"
    lost = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
    extra = con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
    if lost or extra:
        return f"{lost} input row(s) not in the new file, {extra} row(s) not in the inputs"
    return None


def _swap(catalog: Catalog, p: Partition, new_rel: str, snapshot_id: str, index: tuple[dict, list[dict]],
          rows: int) -> str | None:
    """The catalog transaction: register the new file, retire the old ones. Returns why it was refused
    (the partition changed meanwhile), or None when committed."""
    from dreaming.catalog import lake_files, session_index

    old = set(p.files)
    with catalog.tx() as conn:  # BEGIN IMMEDIATE: the write lock first, then the re-check
        now = _registered_by_partition(conn).get((p.tenant, p.day), [])
        if {f for f, _ in now} != old:
            return "the partition changed while it was being compacted (a concurrent ingest or compaction)"
        conn.execute(snapshots.insert().values(
            id=snapshot_id, tenant=p.tenant, agent_id=None,
            source_path="compaction of " + ", ".join(p.sources), source_sha256=f"compact:{snapshot_id}",
            source_format=COMPACTION_FORMAT, files=[new_rel], days=[p.day] if p.day else [], rows=rows,
            sessions=len(index[1]), created_at=datetime.now(UTC)))
        holders = conn.execute(sa.select(snapshots.c.id, snapshots.c.files).where(snapshots.c.id.in_(p.sources)))
        for sid, files in list(holders):
            keep = [f for f in (files or []) if f not in old]
            if keep != list(files or []):
                conn.execute(snapshots.update().where(snapshots.c.id == sid).values(files=keep))
        conn.execute(session_index.delete().where(session_index.c.path.in_(old)))
        conn.execute(lake_files.delete().where(lake_files.c.path.in_(old)))
        lake_index.insert(conn, [index[0]], index[1])
    return None


def compact_partition(catalog: Catalog, p: Partition, con=None) -> Partition:
    """Rewrite one planned partition into one file (see the module docstring for the order of steps)."""
    import pyarrow.parquet as pq

    from dreaming import ids
    from dreaming.lake import _connect
    from dreaming.lake_fs import LakeFiles

    settings = catalog.settings
    home = settings.home
    store = LakeFiles(settings)  # the lake folder, or an object store (DuckDB reads it, ``place`` PUTs)
    own = con is None
    con = con or _connect()
    store.attach(con)
    inputs = [store.uri(f) for f in p.files]
    snapshot_id = ids.new_id(ids.SNAPSHOT)
    final = settings.transcripts_dir / f"tenant={p.tenant}" / f"day={p.day}" / f"{snapshot_id}.parquet"
    new_rel = final.relative_to(home).as_posix()
    try:
        with StagingArea(settings.staging_dir) as area:
            table = _read_inputs(con, inputs)
            staged = area.dir / final.name
            pq.write_table(table, staged, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            with open(staged, "rb+") as f:
                os.fsync(f.fileno())
            _step("staged")
            why = _validate(con, inputs, staged)
            if why:
                p.status, p.reason = "skipped", f"validation failed: {why}"
                return p
            index = lake_index.index_rows(table, new_rel, snapshot_id)
            rows = table.num_rows
            del table
            with place_lock(home, exclusive=True):  # no ingest between placing and registering; no fsck
                store.place([(staged, final)])  # locally a rename; on an object store a PUT, then checked
                _step("placed")
                lake_retired.record(settings, snapshot_id, p.files)  # before the swap: see lake_retired
                try:
                    why = _swap(catalog, p, new_rel, snapshot_id, index, rows)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):  # not registered: it never existed
                        store.remove([final])
                    lake_retired.drop(settings, snapshot_id)
                    raise
                if why:
                    store.remove([final])
                    lake_retired.drop(settings, snapshot_id)
                    p.status, p.reason = "skipped", why
                    return p
                _step("registered")
                # the old files stay for readers that listed them; fsck or the next compact deletes them later
        p.status, p.new_file, p.snapshot_id, p.rows = "compacted", new_rel, snapshot_id, rows
        p.bytes = _sizes(store, [new_rel]).get(new_rel, 0)
        log.info("compacted %d file(s) of tenant=%s day=%s into %s (%d rows)", len(p.files), p.tenant, p.day,
                 new_rel, rows)
        return p
    finally:
        if own:
            con.close()


def compact(settings: Settings | None = None, tenant: str | None = None, before: str | None = None,
            dry_run: bool = False, catalog: Catalog | None = None) -> CompactReport:
    """Compact every partition of ``plan(...)``; with ``dry_run`` only say what would be done."""
    settings = settings or get_settings()
    report = CompactReport(dry_run=dry_run)
    if catalog is None and not catalog_exists(settings):
        return report  # a lake never written: nothing to compact, and no catalog created
    own = catalog is None
    catalog = catalog or Catalog(settings)
    try:
        if not dry_run:  # what earlier compactions retired, past the grace
            report.retired_removed, _ = lake_retired.purge(
                settings, set(catalog.snapshot_files()) | set(catalog.original_files()))
        report.partitions = plan(catalog, tenant, before)
        for p in report.partitions:
            if p.status == "skipped":
                continue
            if dry_run:
                p.status = "would compact"
                continue
            try:
                compact_partition(catalog, p)
            except Exception as e:  # noqa: BLE001 - one partition's failure is reported, the others go on
                log.warning("compaction of tenant=%s day=%s failed: %s: %s", p.tenant, p.day, type(e).__name__, e)
                p.status, p.reason = "skipped", f"failed: {type(e).__name__}: {e}"
    finally:
        if own:
            catalog.engine.dispose()
    return report


# --- stats ----------------------------------------------------------------------------------------


def stats(settings: Settings | None = None, tenant: str | None = None) -> dict:
    """Files, rows and bytes per (tenant, day) of the registered transcript files, and totals. Rows come
    from the session index (``lake_files``), or the file's footer where the index has none; bytes are
    the files' sizes on disk; ``missing`` counts registered files not on disk."""
    settings = settings or get_settings()
    empty = {"partitions": [], "totals": {"tenants": 0, "partitions": 0, "files": 0, "rows": 0, "bytes": 0,
                                          "missing": 0}}
    if not catalog_exists(settings):
        return empty
    from dreaming.catalog import lake_files

    catalog = Catalog(settings)
    try:
        with catalog.engine.connect() as conn:
            parts = _registered_by_partition(conn)
            rows_of = dict(conn.execute(sa.select(lake_files.c.path, lake_files.c.rows)).all())
    finally:
        catalog.engine.dispose()
    home = settings.home
    from dreaming.lake_fs import LakeFiles

    store = LakeFiles(settings)
    sizes = {rel: info["size"] for rel, info in store.listing(("transcripts",)).items()} if store.remote else None
    out = []
    for (t, day), files in sorted(parts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if tenant is not None and t != tenant:
            continue
        row = {"tenant": t, "day": day, "files": len(files), "rows": 0, "bytes": 0, "missing": 0}
        for rel, _ in files:
            path = home / rel
            try:
                row["bytes"] += path.stat().st_size if sizes is None else sizes[rel]
            except (FileNotFoundError, KeyError):
                row["missing"] += 1
                continue
            n = rows_of.get(rel)
            if n is None and sizes is not None:  # an object store's file without index rows
                n = store.num_rows(rel)
            elif n is None:
                import pyarrow.parquet as pq

                n = pq.ParquetFile(path).metadata.num_rows
            row["rows"] += n
        out.append(row)
    totals = {"tenants": len({r["tenant"] for r in out}), "partitions": len(out),
              **{k: sum(r[k] for r in out) for k in ("files", "rows", "bytes", "missing")}}
    return {"partitions": out, "totals": totals}


__all__ = ["ROW_GROUP_ROWS", "CompactReport", "Partition", "compact", "compact_partition", "plan", "stats"]
