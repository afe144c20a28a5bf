"""Transcript ingest: source files → immutable Parquet snapshots in the lake + one catalog row each.

    report = ingest_files([Path("sessions/")], Catalog(), fmt="auto", tenant="acme", agent="support")

For each source file (directories expand recursively to their ``*.json``/``*.jsonl``/``*.ndjson``
files; a file named explicitly is always read):

1. read it once (sha256 of the bytes; strict UTF-8; JSON or JSONL) and pick the adapter
   (``fmt="auto"`` sniffs the content, see ``detect.py``);
2. if the catalog already has a snapshot of the same (sha256, tenant, agent, format) → ``skipped``;
3. the adapter maps every record onto ``dreaming.schema.EVENT_SCHEMA``;
4. one Parquet file per UTC day touched is written atomically to
   ``$DREAMS_HOME/transcripts/tenant=<t>/day=<YYYY-MM-DD>/<snapshot_id>.parquet``;
5. one catalog transaction inserts the ``snapshots`` row (re-checking for a concurrent twin).

Each file is all or nothing: any error removes the files it placed and records the file as
``failed`` with a message naming file and line; the other files of the batch still ingest.
Overlapping exports are not merged here: their events keep the same ``event_id`` and the
``events`` view (dreaming/lake.py) counts each once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from dreaming import ids
from dreaming.atomic import write_parquet_atomic
from dreaming.catalog import Catalog, snapshots
from dreaming.errors import BadInput, DreamsError
from dreaming.ingest.common import EventRows, read_source
from dreaming.ingest.detect import FORMATS, detect_format, get_adapter

__all__ = [
    "FORMATS",
    "INGEST_SUFFIXES",
    "FileResult",
    "IngestReport",
    "check_name",
    "expand_paths",
    "ingest_file",
    "ingest_files",
]

INGEST_SUFFIXES = (".json", ".jsonl", ".ndjson")
"""File endings picked up when a directory is given (explicitly named files are always read)."""

INGEST_THREADS = 4
"""Files ingested concurrently in a batch (1 = one after the other)."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class FileResult:
    path: str
    status: str  # ingested | skipped | failed
    format: str | None = None
    snapshot_id: str | None = None
    sessions: int = 0
    events: int = 0
    tool_calls: int = 0
    errors: int = 0  # error events seen in the file (is_error or session.error)
    error: str | None = None  # why the file failed (names file:line)
    note: str | None = None  # why a file was skipped
    files: list[str] = field(default_factory=list)  # lake-relative parquet files written
    days: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def _with(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def ingested(self) -> list[FileResult]:
        return self._with("ingested")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def sessions(self) -> int:
        return sum(f.sessions for f in self.ingested)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.ingested)

    @property
    def tool_calls(self) -> int:
        return sum(f.tool_calls for f in self.ingested)

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.ingested)

    @property
    def ok(self) -> bool:
        return not self.failed

    def totals(self) -> dict:
        return {
            "files": len(self.files),
            "ingested": len(self.ingested),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "sessions": self.sessions,
            "events": self.events,
            "tool_calls": self.tool_calls,
            "errors": self.errors,
        }

    def to_dict(self) -> dict:
        return {"totals": self.totals(), "files": [f.to_dict() for f in self.files]}


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest, in a stable order: directories recursively (hidden entries and files with
    other endings left out), explicitly named files as given, duplicates once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file()
                and f.name.endswith(INGEST_SUFFIXES)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            found = [p]
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def check_name(value: str | None, what: str) -> None:
    if value is not None and not _SAFE_NAME.match(value):
        raise BadInput(
            f"{what} {value!r} must be 1-128 characters of letters, digits, '.', '_' or '-'", field=what
        )


def ingest_files(
    paths: list[Path],
    catalog: Catalog,
    fmt: str = "auto",
    tenant: str = "default",
    agent: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest source files into the lake; see the module docstring. Never raises for a bad file
    (it is reported as failed); raises BadInput for a bad ``fmt``/``tenant``/``agent``."""
    check_name(tenant, "tenant")
    check_name(agent, "agent")
    if fmt != "auto":
        get_adapter(fmt)
    files = expand_paths(paths)
    report = IngestReport()
    total = len(files)
    if progress:
        progress(0, total)
    known = _known_snapshots(catalog, tenant, agent)
    if total <= 1 or INGEST_THREADS <= 1:
        for n, path in enumerate(files, start=1):
            report.files.append(ingest_file(path, catalog, fmt=fmt, tenant=tenant, agent=agent, known=known))
            if progress:
                progress(n, total)
        return report
    # Files are independent; threads overlap one file's fsyncs and catalog commit with the next
    # file's parsing. Results keep the input order.
    with ThreadPoolExecutor(max_workers=min(INGEST_THREADS, total), thread_name_prefix="ingest") as pool:
        futures = [pool.submit(ingest_file, p, catalog, fmt, tenant, agent, known) for p in files]
        for n, _ in enumerate(as_completed(futures), start=1):
            if progress:
                progress(n, total)
        report.files = [f.result() for f in futures]
    return report


def _known_snapshots(catalog: Catalog, tenant: str, agent: str | None) -> dict[tuple[str, str], str]:
    """(source sha256, format) → snapshot id for this tenant/agent: one query for a whole batch."""
    q = sa.select(snapshots.c.source_sha256, snapshots.c.source_format, snapshots.c.id).where(
        (snapshots.c.tenant == tenant)
        & (snapshots.c.agent_id.is_(None) if agent is None else snapshots.c.agent_id == agent)
    )
    with catalog.engine.connect() as conn:
        return {(sha, f): sid for sha, f, sid in conn.execute(q)}


def ingest_file(path: Path, catalog: Catalog, fmt: str = "auto", tenant: str = "default",
                agent: str | None = None, known: dict[tuple[str, str], str] | None = None) -> FileResult:
    """Ingest one file, all or nothing. Returns its FileResult (status failed on bad input).

    ``known`` (from a batch) saves a catalog look-up per file; without it the catalog is asked."""
    res = FileResult(path=str(path), status="failed", format=None if fmt == "auto" else fmt)
    try:
        if not path.exists():
            raise BadInput("no such file", file=str(path))
        if not path.is_file():
            raise BadInput("not a regular file", file=str(path))
        src = read_source(path)
        sha = src.sha256
        # cheap no-op for a re-ingest, before mapping anything
        if known is None:
            known = _known_snapshots(catalog, tenant, agent)
        for f in FORMATS if fmt == "auto" else (fmt,):
            prev = known.get((sha, f))
            if prev:
                res.status, res.format, res.snapshot_id = "skipped", f, prev
                res.note = f"already ingested as {prev} (same content, tenant, agent and format)"
                return res
        chosen = detect_format(src) if fmt == "auto" else fmt
        res.format = chosen
        snapshot_id = ids.new_id(ids.SNAPSHOT)
        rows = EventRows(tenant, agent, chosen, snapshot_id)
        get_adapter(chosen).parse(src, rows)
        if len(rows) == 0:
            res.status = "skipped"
            res.note = "no events in this file (only non-message records)"
            return res
        table = rows.table()
        _write_snapshot(catalog, src, table, res, snapshot_id, tenant, agent, chosen, rows.sessions)
        if res.status == "skipped":
            return res
        res.status = "ingested"
        res.snapshot_id = snapshot_id
        if known is not None:
            known[(sha, chosen)] = snapshot_id
        res.sessions, res.events = rows.sessions, len(rows)
        res.tool_calls, res.errors = rows.tool_calls, rows.errors
    except DreamsError as e:
        res.status, res.error = "failed", str(e) if getattr(e, "file", None) or str(path) in str(e) else f"{path}: {e}"
    except Exception as e:  # an unexpected bug must not sink the batch; report it like bad input
        res.status, res.error = "failed", f"{path}: internal error while ingesting: {type(e).__name__}: {e}"
    return res


def _write_snapshot(catalog: Catalog, src, table: pa.Table, res: FileResult, snapshot_id: str,
                    tenant: str, agent: str | None, fmt: str, n_sessions: int) -> None:
    settings = catalog.settings
    days = pc.strftime(table["ts"], format="%Y-%m-%d")
    placed: list[Path] = []
    try:
        for day in sorted(set(days.to_pylist())):
            part = table.filter(pc.equal(days, day))
            final = settings.transcripts_dir / f"tenant={tenant}" / f"day={day}" / f"{snapshot_id}.parquet"
            placed.append(write_parquet_atomic(part, final, settings.staging_dir))
            res.days.append(day)
        res.files = [p.relative_to(settings.home).as_posix() for p in placed]
        row = {
            "id": snapshot_id,
            "tenant": tenant,
            "agent_id": agent,
            "source_path": str(src.path.resolve()),
            "source_sha256": src.sha256,
            "source_format": fmt,
            "files": res.files,
            "days": res.days,
            "rows": table.num_rows,
            "sessions": n_sessions,
            "created_at": datetime.now(UTC),
        }
        with catalog.tx() as conn:
            twin = conn.execute(
                sa.select(snapshots.c.id).where(
                    (snapshots.c.source_sha256 == row["source_sha256"])
                    & (snapshots.c.tenant == tenant)
                    & (snapshots.c.agent_id.is_(None) if agent is None else snapshots.c.agent_id == agent)
                    & (snapshots.c.source_format == fmt)
                )
            ).first()
            if twin is None:
                catalog.insert_snapshot(conn, row)
        if twin is not None:  # a concurrent ingest of the same file won: drop ours
            _remove(placed)
            res.status, res.snapshot_id, res.files, res.days = "skipped", twin[0], [], []
            res.note = f"already ingested as {twin[0]} (concurrently)"
    except BaseException:
        _remove(placed)
        res.files, res.days = [], []
        raise


def _remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        with contextlib.suppress(OSError):  # leave no empty day folder behind
            p.parent.rmdir()
