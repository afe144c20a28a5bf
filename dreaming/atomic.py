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


def write_text_atomic(text: str, final: Path, staging_dir: Path) -> Path:
    with staged_path(final, staging_dir) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)
