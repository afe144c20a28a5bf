"""Atomic file writes: write to a staging path, fsync, then ``os.replace`` into place.

Readers never see a half-written file; a crash leaves at most a stray file in staging, which
``dreaming.fsck`` recognises and removes: every staged name carries its writer
(``<host>~<pid>~<uuid>~<name>``), and an ingest stages into its own folder guarded by an
``flock`` that the kernel releases when the process dies (``StagingArea``). Placing files into
the lake and registering them happens under the lake's *place lock* (shared); fsck takes it
exclusively, so it never sees a placed file whose catalog row is still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
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


HOST = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname() or "host")[:64]
_WRITER = re.compile(r"^(?:ingest~)?(?P<host>[A-Za-z0-9._-]+)~(?P<pid>\d+)~")


def staged_name(final_name: str) -> str:
    """A fresh staging file name that says who writes it: ``<host>~<pid>~<uuid>~<final name>``."""
    return f"{HOST}~{os.getpid()}~{uuid.uuid4().hex}~{final_name}"


def writer_alive(name: str) -> bool | None:
    """Whether the process that staged ``name`` still runs: True/False for a writer on this host,
    None when the name carries no writer or one from another host (then only age can tell)."""
    m = _WRITER.match(name)
    if not m or m["host"] != HOST:
        return None
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class StagingArea:
    """One writer's private staging folder ``<staging>/ingest~<host>~<pid>~<uuid>/``, held with an
    exclusive ``flock`` on the sibling ``….lock`` file for as long as the area is open. The kernel
    drops the lock when the process dies (kill -9 included), which is how fsck tells a dead
    writer's leftovers from a live writer's work in progress. ``close()`` removes both."""

    def __init__(self, staging_dir: Path):
        staging_dir.mkdir(parents=True, exist_ok=True)
        self.name = f"ingest~{HOST}~{os.getpid()}~{uuid.uuid4().hex}"
        self.lock_path = staging_dir / f"{self.name}.lock"
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.dir = staging_dir / self.name
        self.dir.mkdir()

    def close(self) -> None:
        if self._fd is None:
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.lock_path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "StagingArea":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def area_in_use(lock_path: Path) -> bool:
    """True while a live StagingArea holds ``lock_path`` (tries the lock without waiting)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


@contextlib.contextmanager
def place_lock(home: Path, exclusive: bool = False) -> Iterator[None]:
    """The lake's place lock (``$DREAMS_HOME/.locks/place.lock``): writers hold it shared while
    they move files into the lake and register them; fsck holds it exclusively while it looks for
    unregistered files. Released by the kernel if the holder dies."""
    folder = home / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "place.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_path(final: Path, staging_dir: Path) -> Iterator[Path]:
    """Yield a staging path; on clean exit fsync it and rename it onto ``final``.

    On an exception the staging file is removed and ``final`` is untouched.
    """
    final = Path(final)
    staging_dir.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir / staged_name(final.name)
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
    tmp = staging_dir / staged_name(Path(final).name)
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
