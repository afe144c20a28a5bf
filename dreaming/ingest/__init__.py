"""Transcript ingest: source files → immutable Parquet snapshots in the lake + one catalog row each.

    report = ingest_files([Path("sessions/")], Catalog(), fmt="auto", tenant="acme", agent="support")

For each source file (directories expand recursively to their ``*.json``/``*.jsonl``/``*.ndjson``
files, SWE-bench's outcome labels files left out; a file named explicitly is always read):

1. read it once (sha256 of the bytes; strict UTF-8; JSON or JSONL) and pick the adapter
   (``fmt="auto"`` sniffs the content, see ``detect.py``);
2. if the catalog already has a snapshot of the same (sha256, tenant, agent, format) → ``skipped``;
3. the adapter maps every record onto ``dreaming.schema.EVENT_SCHEMA`` (implausible times refused,
   see ``checks.py``), then secrets are redacted;
4. one Parquet file per UTC day touched is written to staging and fsynced;
5. in groups of up to ``COMMIT_GROUP`` files, the staged files are renamed to
   ``$DREAMS_HOME/transcripts/tenant=<t>/day=<YYYY-MM-DD>/<snapshot_id>.parquet`` (each lake
   folder fsynced once) and one catalog transaction inserts their ``snapshots`` rows
   (re-checking for a concurrent twin).

Before anything, ``dreaming.fsck`` recovers from crashed ingests (stale staging files removed,
files without a catalog row quarantined); each batch stages into its own locked folder
(``atomic.StagingArea``). Every event's ``text``, ``tool_input`` and ``raw`` is redacted
(``secrets.py``); lines skipped or repaired are reported per file (``FileResult.issues``).

Each file is all or nothing: a file that fails to read or map is never placed and is recorded
as ``failed`` with a message naming file, line and field; the other files of the batch still
ingest. If the catalog transaction fails, the group's files are removed again and reported failed.
Overlapping exports are not merged here: their events keep the same ``event_id`` and the
``events`` view (dreaming/lake.py) counts each once.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from dreaming import ids
from dreaming.atomic import StagingArea
from dreaming.catalog import Catalog
from dreaming.errors import BadInput, DreamsError
from dreaming.ingest.checks import TimeBounds
from dreaming.ingest.commit import Staged, counts_of, known_snapshots, place_and_register, stage
from dreaming.ingest.common import EventRows, Source, read_source
from dreaming.ingest.detect import FORMATS, detect_format, get_adapter
from dreaming.ingest.mini_swe_agent import LABEL_FILES, read_labels
from dreaming.ingest.report import FileResult, IngestReport

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

COMMIT_GROUP = 64
"""Files placed and registered together: one catalog transaction and one fsync per lake folder
for up to this many files (a commit and a directory fsync per file cost more than a small file's
parsing). Each file is still all or nothing: a file that fails is never placed."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
                and f.name not in LABEL_FILES  # SWE-bench's evaluation files are outcome labels, not transcripts
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



class _Batch:
    """What every file of one ingest call shares: where to stage, the time bounds, the options."""

    def __init__(self, catalog: Catalog, fmt: str, tenant: str, agent: str | None, keep_secrets: bool,
                 staging: Path, labels: Path | None = None):
        self.catalog, self.fmt, self.tenant, self.agent = catalog, fmt, tenant, agent
        self.keep_secrets, self.staging, self.labels = keep_secrets, staging, labels
        self.bounds = TimeBounds.from_settings(catalog.settings)


def ingest_files(
    paths: list[Path],
    catalog: Catalog,
    fmt: str = "auto",
    tenant: str = "default",
    agent: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_secrets: bool | None = None,
    recover: bool = True,
    labels: Path | None = None,
) -> IngestReport:
    """Ingest source files into the lake; see the module docstring. Never raises for a bad file
    (it is reported as failed); raises BadInput for a bad ``fmt``/``tenant``/``agent``/``labels``.

    ``keep_secrets`` (default: the ``keep_secrets`` setting) also keeps the unredacted originals of
    redacted rows in a sidecar under ``originals/``; ``recover=False`` skips the fsck at the start;
    ``labels``: an outcome labels file for mini-swe-agent trajectories (else one found beside them,
    see ``mini_swe_agent.LABEL_FILES``), read before anything is ingested."""
    check_name(tenant, "tenant")
    check_name(agent, "agent")
    if fmt != "auto":
        get_adapter(fmt)
    if labels is not None:
        read_labels(labels)
    settings = catalog.settings
    keep = settings.keep_secrets if keep_secrets is None else keep_secrets
    recovery = None
    if recover:
        from dreaming.fsck import fsck

        done_fsck = fsck(settings, catalog)
        recovery = done_fsck.to_dict() if done_fsck.changed else None
    files = expand_paths(paths)
    total = len(files)
    if progress:
        progress(0, total)
    results: dict[int, FileResult] = {}
    group: list[tuple[int, FileResult, Staged]] = []
    known: dict[tuple[str, str], str] = {}
    conn = catalog.engine.connect()  # one catalog connection for the batch (this thread only)
    area = StagingArea(settings.staging_dir)
    batch = _Batch(catalog, fmt, tenant, agent, keep, area.dir, labels)

    def flush() -> None:  # place and register the group, in input order (the first twin wins)
        place_and_register(catalog, conn, [(r, st) for _, r, st in sorted(group, key=_first)], known)
        group.clear()

    def done(i: int, res: FileResult, staged: Staged | None) -> None:
        results[i] = res
        if staged is not None:
            group.append((i, res, staged))
        if len(group) >= COMMIT_GROUP:
            flush()
        if progress:
            progress(len(results), total)

    try:
        known.update(known_snapshots(conn, tenant, agent))
        conn.rollback()  # end the read (and its lock) while files are parsed
        with _gc_paused():
            if total <= 1 or INGEST_THREADS <= 1:
                for i, path in enumerate(files):
                    done(i, *_prepare(path, batch, known))
            else:
                # Files are independent: threads overlap one file's reads and fsyncs with another's
                # parsing. Registration happens here, in groups, in this thread.
                with ThreadPoolExecutor(max_workers=min(INGEST_THREADS, total), thread_name_prefix="ingest") as pool:
                    futures = {pool.submit(_prepare, p, batch, known): i for i, p in enumerate(files)}
                    for f in as_completed(futures):
                        done(futures[f], *f.result())
            if group:
                flush()
    except BaseException:  # interrupted: leave nothing staged behind
        for _, _, st in group:
            st.discard()
        raise
    finally:
        conn.close()
        area.close()
    return IngestReport(files=[results[i] for i in range(total)], recovery=recovery)


def _first(item: tuple) -> int:
    return item[0]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a batch. Mapping allocates a tuple and strings
    per event, which keeps triggering collections that walk the whole parsed document again; none
    of it is cyclic garbage (reference counting frees it). Pausing saves ~8 % of ingest time.
    Concurrent batches are fine: the collector is re-enabled by whichever batch paused it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def ingest_file(path: Path, catalog: Catalog, fmt: str = "auto", tenant: str = "default",
                agent: str | None = None, known: dict[tuple[str, str], str] | None = None,
                keep_secrets: bool | None = None, labels: Path | None = None) -> FileResult:
    """Ingest one file, all or nothing (no fsck first). Returns its FileResult (status failed on
    bad input). ``known`` (from a batch) saves a catalog look-up; without it the catalog is asked."""
    keep = catalog.settings.keep_secrets if keep_secrets is None else keep_secrets
    with catalog.engine.connect() as conn, StagingArea(catalog.settings.staging_dir) as area:
        if known is None:
            known = known_snapshots(conn, tenant, agent)
            conn.rollback()
        res, staged = _prepare(path, _Batch(catalog, fmt, tenant, agent, keep, area.dir, labels), known)
        if staged is not None:
            place_and_register(catalog, conn, [(res, staged)], known)
    return res


def _map(src: Source, rows: EventRows, fmt: str) -> None:
    """Run the adapter; an unexpected failure (a bug, a value no check anticipated) still names
    the file and the line being mapped, never only an exception type."""
    try:
        get_adapter(fmt).parse(src, rows)
    except DreamsError:
        raise
    except RecursionError:
        rec = rows.marks[-1][1] if rows.marks else None
        raise src.error("JSON nested too deeply to map", rec) from None
    except Exception as e:
        rec = rows.marks[-1][1] if rows.marks else None
        raise src.error(f"cannot map this record: {type(e).__name__}: {e}", rec) from None


def _report_lines(res: FileResult, src: Source, rows: EventRows) -> None:
    seen: set = set()
    for rec, eid in rows.dupes:
        key = id(rec)
        if key not in seen:
            seen.add(key)
            n = sum(1 for r, _ in rows.dupes if r is rec)
            src.skip(rec, "id", f"event id {eid!r} already read earlier in this file: the repeat is left out", n)
    res.issues = [i.to_dict() for i in src.issues]
    res.ignored = dict(src.ignored)


def _prepare(path: Path, batch: _Batch, known: dict[tuple[str, str], str]) -> tuple[FileResult, Staged | None]:
    """Read, detect, map, redact and stage one file. Never raises: a bad file comes back failed."""
    fmt = batch.fmt
    res = FileResult(path=str(path), status="failed", format=None if fmt == "auto" else fmt)
    try:
        if not path.exists():
            raise BadInput("no such file", file=str(path))
        if not path.is_file():
            raise BadInput("not a regular file", file=str(path))
        src = read_source(path, batch.bounds)
        src.labels = batch.labels
        sha = src.sha256
        # cheap no-op for a re-ingest, before mapping anything
        for f in FORMATS if fmt == "auto" else (fmt,):
            prev = known.get((sha, f))
            if prev:
                res.status, res.format, res.snapshot_id = "skipped", f, prev
                res.note = f"already ingested as {prev} (same content, tenant, agent and format)"
                return res, None
        chosen = detect_format(src) if fmt == "auto" else fmt
        res.format = chosen
        snapshot_id = ids.new_id(ids.SNAPSHOT)
        rows = EventRows(batch.tenant, batch.agent, chosen, snapshot_id)
        _map(src, rows, chosen)
        _report_lines(res, src, rows)
        if len(rows) == 0:
            res.status = "skipped"
            res.note = "no events in this file (only non-message records)"
            return res, None
        from dreaming.ingest.secrets import redact_table

        table, kinds, originals = redact_table(rows.table(src), batch.keep_secrets)
        res.redactions = dict(sorted(kinds.items()))
        staged = stage(batch.catalog, batch.staging, src, table, snapshot_id, batch.tenant, batch.agent, chosen,
                       counts_of(table, rows.sessions), originals)
        res.snapshot_id = snapshot_id
        res.originals = staged.original["path"] if staged.original else None
        res.status = "staged"
        return res, staged
    except DreamsError as e:
        res.status, res.error = "failed", str(e) if getattr(e, "file", None) or str(path) in str(e) else f"{path}: {e}"
    except Exception as e:  # an unexpected bug must not sink the batch; report it like bad input
        res.status, res.error = "failed", f"{path}: internal error while ingesting: {type(e).__name__}: {e}"
    res.issues, res.ignored = [], {}
    return res, None
