"""Atomic file writes: write to a staging path, fsync, then ``os.replace`` into place.

Readers never see a half-written file; a crash leaves at most a stray file in staging.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_path(final: Path, staging_dir: Path) -> Iterator[Path]:
    """Yield a staging path; on clean exit fsync it and rename it onto ``final``.

    On an exception the staging file is removed and ``final`` is untouched.
    """
    final = Path(final)
    staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir / f"{uuid.uuid4().hex}-{final.name}"
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet_atomic(table: pa.Table, final: Path, staging_dir: Path) -> Path:
    """Write ``table`` to ``final`` atomically (zstd-compressed Parquet)."""
    with staged_path(final, staging_dir) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(final)


def write_parquet_staged(table: pa.Table, final: Path, staging_dir: Path) -> Path:
    """Write ``table`` (zstd Parquet) to a fresh staging file and fsync it; ``place_staged`` moves
    it to ``final`` later. Split in two so that a batch can place many files with one directory
    fsync per folder; the staging file is removed if writing fails."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir / f"{uuid.uuid4().hex}-{Path(final).name}"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp


def place_staged(pairs: list[tuple[Path, Path]]) -> list[Path]:
    """Rename each staged file onto its final path, then fsync every destination folder once.

    Returns the final paths placed. If a rename fails, the files already placed are moved back
    out of the way (removed) before the error propagates, so the caller sees all or nothing."""
    placed: list[Path] = []
    try:
        for tmp, final in pairs:
            final = Path(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for p in placed:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise
    for folder in dict.fromkeys(p.parent for p in placed):
        _fsync_dir(folder)
    return placed


def write_text_atomic(text: str, final: Path, staging_dir: Path) -> Path:
    with staged_path(final, staging_dir) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)
