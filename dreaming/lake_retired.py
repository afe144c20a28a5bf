"""Retired lake files: what a compaction replaced, kept on disk for a grace period before it is deleted.

Locally and on an object store alike (``dreaming.lake_fs``; the manifests live under ``$DREAMS_HOME``).
A ``Lake`` lists its files from the catalog when it opens and reads them later (a dream's read step,
seconds to minutes). Deleting a compacted partition's old files at once would make such a reader find
them gone and read fewer events than the lake holds. So a compaction records the files it retires in a
manifest (``<DREAMS_HOME>/retired/<snapshot id>.json``: ``retired_at`` and the lake-relative ``files``),
written *before* its catalog transaction, and leaves them where they are. They are then:

- not read by any ``Lake`` opened after the transaction (the catalog no longer lists them);
- not quarantined by ``dreams lake fsck`` as orphans (they are known copies, not debris);
- deleted by the next ``fsck`` or ``compact`` once the manifest is older than ``staging_grace_s``
  (default 1 h) — only those that are not registered: a manifest left by a compaction that crashed
  before its transaction names files that are still the partition's, and those stay.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from dreaming.atomic import write_text_atomic
from dreaming.settings import Settings

log = logging.getLogger(__name__)


def retired_dir(settings: Settings) -> Path:
    return settings.home / "retired"


def record(settings: Settings, key: str, files: list[str]) -> Path:
    """Write the manifest of the files a compaction is about to retire (before its catalog transaction)."""
    path = retired_dir(settings) / f"{key}.json"
    body = {"retired_at": datetime.now(UTC).isoformat(), "files": sorted(files)}
    return write_text_atomic(json.dumps(body) + "\n", path, settings.staging_dir)


def drop(settings: Settings, key: str) -> None:
    """Forget a manifest whose compaction did not happen (its transaction failed or was refused)."""
    with contextlib.suppress(FileNotFoundError):
        (retired_dir(settings) / f"{key}.json").unlink()


def _manifests(settings: Settings) -> list[tuple[Path, dict]]:
    folder = retired_dir(settings)
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            body = json.loads(p.read_text(encoding="utf-8"))
            when = datetime.fromisoformat(body["retired_at"])
            out.append((p, {"retired_at": when, "files": list(body["files"])}))
        except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable: not a manifest we wrote
            log.warning("%s: not a retired-files manifest (%s); left alone", p, e)
    return out


def purge(settings: Settings, registered: set[str], grace_s: float | None = None) -> tuple[list[str], list[str]]:
    """Delete the retired files whose manifest is older than the grace, unless the catalog registers them;
    drop those manifests. Returns (removed, still waiting) lake-relative paths: fsck leaves the waiting ones
    alone (they are known copies, not orphans)."""
    grace = settings.staging_grace_s if grace_s is None else grace_s
    now = datetime.now(UTC)
    removed, waiting = [], []
    for path, m in _manifests(settings):
        if (now - m["retired_at"]).total_seconds() < grace:
            waiting += [f for f in m["files"] if f not in registered]
            continue
        gone = [rel for rel in m["files"] if rel not in registered]  # registered: never swapped out, they stay
        if gone:
            from dreaming.lake_fs import LakeFiles

            store = LakeFiles(settings)  # a file (and its emptied day folder) locally; an object remotely
            there = store.present(gone)
            store.remove([settings.home / rel for rel in gone if rel in there])
            removed += [rel for rel in gone if rel in there]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return sorted(removed), sorted(waiting)


__all__ = ["drop", "purge", "record", "retired_dir"]
