"""Lake recovery (``dreams lake fsck``; also run at the start of every ingest).

A crashed writer (kill -9, power loss) can leave two kinds of debris:

1. **staging files** under ``$DREAMS_HOME/_staging``. An ingest stages into its own folder
   ``ingest~<host>~<pid>~<uuid>/`` held with an ``flock`` (``atomic.StagingArea``): when the lock
   can be taken, the writer is gone and the folder is removed. A loose staged file
   (``<host>~<pid>~<uuid>~<name>``, from store/changeset writes) is removed when its writer
   process is gone (same host) or it is older than ``staging_grace_s`` (default 1 h). Anything a
   live writer holds is left alone and listed as ``active``.
2. **files in the lake that the catalog does not list** (placed, then the process died before the
   catalog transaction committed). The lake never reads them (it reads the catalog's file list);
   fsck moves them — never deletes — to ``$DREAMS_HOME/quarantine/<UTC stamp>/<same relative
   path>`` and reports each move. It holds the lake's place lock exclusively meanwhile, so a
   concurrent ingest between placing and registering is never mistaken for debris.

Registered files missing on disk are reported (``missing``); fsck cannot bring them back.

On an object store (``DREAMS_LAKE_URL``, ``dreaming.lake_fs``) the same holds for objects: an
unregistered one is moved to ``<lake url>/quarantine/<stamp>/`` once it is older than
``staging_grace_s`` (younger ones may be another machine's ingest between PUT and registration, and
are listed as ``staging_active``); quarantine paths are then relative to the lake URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dreaming.atomic import area_in_use, place_lock, writer_alive
from dreaming.catalog import Catalog
from dreaming.settings import Settings, get_settings


@dataclass
class FsckReport:
    staging_removed: list[str] = field(default_factory=list)  # home-relative paths removed
    staging_active: list[str] = field(default_factory=list)  # held by a live writer: left alone
    quarantined: list[dict] = field(default_factory=list)  # {"from": rel, "to": rel}
    retired_removed: list[str] = field(default_factory=list)  # files a compaction replaced, past the grace
    retired_waiting: list[str] = field(default_factory=list)  # replaced, within the grace: left for readers
    missing: list[str] = field(default_factory=list)  # registered but not on disk
    registered: int = 0  # files the catalog lists (snapshots + originals)

    @property
    def changed(self) -> bool:
        return bool(self.staging_removed or self.quarantined or self.retired_removed)

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _rel(p: Path, home: Path) -> str:
    return p.relative_to(home).as_posix()


def _age(p: Path, now: float) -> float:
    try:
        return now - p.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def clean_staging(settings: Settings, report: FsckReport, grace_s: float | None = None) -> None:
    """Remove what dead writers left in the staging folder (see the module docstring)."""
    staging, home = settings.staging_dir, settings.home
    if not staging.is_dir():
        return
    grace = settings.staging_grace_s if grace_s is None else grace_s
    now = time.time()
    entries = sorted(staging.iterdir())
    for p in entries:
        name = p.name
        if p.is_dir() and name.startswith("ingest~"):
            lock = staging / f"{name}.lock"
            if area_in_use(lock):
                report.staging_active.append(_rel(p, home))
                continue
            alive = writer_alive(name)
            if not lock.exists() and (alive or (alive is None and _age(p, now) < grace)):
                report.staging_active.append(_rel(p, home))  # a writer between creating its lock and folder
                continue
            report.staging_removed += [_rel(f, home) for f in sorted(p.rglob("*")) if f.is_file()] or [_rel(p, home)]
            shutil.rmtree(p, ignore_errors=True)
            if lock.exists() and not area_in_use(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
        elif name.endswith(".lock") and name.startswith("ingest~"):
            if not (staging / name[:-5]).exists() and not area_in_use(p) and _age(p, now) > 5:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                report.staging_removed.append(_rel(p, home))
        elif p.is_file() or p.is_symlink():
            alive = writer_alive(name)
            if alive is False or _age(p, now) > grace:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                report.staging_removed.append(_rel(p, home))
            else:
                report.staging_active.append(_rel(p, home))
        elif p.is_dir() and _age(p, now) > grace:
            report.staging_removed += [_rel(f, home) for f in sorted(p.rglob("*")) if f.is_file()]
            shutil.rmtree(p, ignore_errors=True)


def _quarantine(settings: Settings, registered: set[str], report: FsckReport) -> None:
    home = settings.home
    target = None
    for root in (settings.transcripts_dir, settings.originals_dir):
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            if not (p.is_file() or p.is_symlink()):
                continue
            rel = _rel(p, home)
            if rel in registered:
                continue
            if target is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                target = settings.quarantine_dir / f"{stamp}-{uuid.uuid4().hex[:6]}"
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            report.quarantined.append({"from": rel, "to": _rel(dest, home)})
            with contextlib.suppress(OSError):  # an emptied day folder goes too
                p.parent.rmdir()


def _quarantine_objects(settings: Settings, store, registered: set[str], report: FsckReport,
                        grace_s: float | None) -> set[str]:
    """The object-store lake's ``_quarantine``: unregistered objects older than the grace (another
    machine's ingest may be between its PUT and its catalog row; the place lock is local) are moved to
    ``<lake url>/quarantine/<stamp>/<same relative path>``; younger ones are listed as ``staging_active``.
    Returns the lake-relative paths of the objects there."""
    grace = settings.staging_grace_s if grace_s is None else grace_s
    now = datetime.now(UTC)
    listing = store.listing()
    target = None
    for rel, info in sorted(listing.items()):
        if rel in registered:
            continue
        if info["mtime"] is not None and (now - info["mtime"]).total_seconds() < grace:
            report.staging_active.append(rel)
            continue
        if target is None:
            target = f"quarantine/{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
        store.move(rel, f"{target}/{rel}")
        report.quarantined.append({"from": rel, "to": f"{target}/{rel}"})
    return set(listing)


def fsck(settings: Settings | None = None, catalog: Catalog | None = None, grace_s: float | None = None) -> FsckReport:
    """Remove stale staging files, quarantine unregistered lake files, report missing ones."""
    from dreaming.lake_fs import LakeFiles

    settings = settings or get_settings()
    report = FsckReport()
    clean_staging(settings, report, grace_s)
    store = LakeFiles(settings)
    if store.remote:
        from dreaming.catalog import catalog_exists

        if catalog is None and not catalog_exists(settings):
            return report  # nothing registered: a lake never written (and no catalog created)
    elif not settings.transcripts_dir.exists() and not settings.originals_dir.exists():
        return report
    own = catalog is None
    catalog = catalog or Catalog(settings)
    try:
        with place_lock(settings.home, exclusive=True):
            registered = set(catalog.snapshot_files()) | set(catalog.original_files())
            report.registered = len(registered)
            from dreaming import lake_retired

            # what a compaction replaced: deleted past the grace, else kept for readers (never quarantined)
            report.retired_removed, report.retired_waiting = lake_retired.purge(settings, registered, grace_s)
            known = registered | set(report.retired_waiting)
            if store.remote:
                there = _quarantine_objects(settings, store, known, report, grace_s)
            else:
                _quarantine(settings, known, report)
        if store.remote:
            report.missing = sorted(registered - there)
        else:
            report.missing = sorted(r for r in registered if not (settings.home / r).is_file())
    finally:
        if own:
            catalog.engine.dispose()
    return report


__all__ = ["FsckReport", "clean_staging", "fsck"]
