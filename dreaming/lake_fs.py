"""Where the lake's files are: the local lake folder (the default) or an object store (``DREAMS_LAKE_URL``).

The catalog keeps lake-relative paths (``transcripts/tenant=<t>/day=<d>/<snapshot>.parquet``,
``originals/tenant=<t>/<snapshot>.parquet``) wherever the files are. Locally they lie under
``$DREAMS_HOME``, exactly as before; with ``DREAMS_LAKE_URL=s3://bucket/prefix`` they are the
objects ``s3://bucket/prefix/<relative path>``, reached through an fsspec filesystem (s3fs: the
``s3`` extra). The catalog, the locks, staging, the memory stores and the dreams stay under
``$DREAMS_HOME`` (or the catalog on PostgreSQL).

The atomic rules on an object store (``dreaming.ingest.commit``):

1. **stage**: the file is written and fsynced in the ingest's local staging folder, as locally;
2. **place**: it is uploaded to its final key with one PUT (an object appears whole or not at all),
   then **validated**: the object's size is the staged file's and its Parquet footer has the staged
   row count, or it is deleted and the group fails;
3. **register**: one catalog transaction inserts the snapshot and its index rows.

An object that is not registered does not exist: the lake reads only the catalog's list, and
``dreams lake fsck`` moves unregistered objects to ``<lake url>/quarantine/<stamp>/``. Because on
object storage another machine's ingest may be between its PUT and its registration (the place
lock is a local ``flock``), fsck leaves unregistered objects younger than ``staging_grace_s`` alone.
DuckDB reads the objects through the same filesystem, registered on the process's database
(``DuckDBPyConnection.register_filesystem``): no DuckDB extension is downloaded.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

from dreaming.settings import Settings

LAKE_ROOTS = ("transcripts", "originals")  # the lake-relative folders that hold lake files


class LakeFiles:
    """The lake files of ``settings``: local (``remote`` False, every method as the code did before) or
    on an object store. Cheap to create; the filesystem is built on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        url = (settings.lake_url or "").strip()
        self.url = url.rstrip("/") if url else None
        self.remote = self.url is not None
        self._fs = None
        self._home = str(settings.home)

    # --- naming ----------------------------------------------------------------------------------

    def uri(self, rel: str) -> str:
        """Where DuckDB reads ``rel``: a local path, or ``s3://bucket/prefix/rel``."""
        if self.remote:
            return f"{self.url}/{rel}"
        return os.path.join(self._home, rel)  # = str(home / rel), without pathlib's cost (a lake lists every file)

    def key(self, rel: str) -> str:
        """The filesystem's path of ``rel`` (``bucket/prefix/rel``, no protocol)."""
        return self.fs._strip_protocol(self.uri(rel))

    def rel_of(self, final: Path) -> str:
        """The lake-relative path of a local final path (what ``stage`` computes under ``$DREAMS_HOME``)."""
        return Path(final).relative_to(self.settings.home).as_posix()

    @property
    def fs(self):
        if self._fs is None:
            self._fs = filesystem(self.settings)
        return self._fs

    # --- presence ----------------------------------------------------------------------------------

    def listing(self, roots: tuple[str, ...] = LAKE_ROOTS) -> dict[str, dict]:
        """``rel -> {"size", "mtime" (UTC datetime or None)}`` of every object under ``roots`` (remote only)."""
        out: dict[str, dict] = {}
        for root in roots:
            base = self.key(root)
            try:
                found = self.fs.find(base, detail=True)
            except FileNotFoundError:
                continue
            for path, info in found.items():
                if info.get("type") == "directory":
                    continue
                rel = f"{root}/{path[len(base):].lstrip('/')}"
                out[rel] = {"size": info.get("size") or 0, "mtime": _mtime(info)}
        return out

    def present(self, rels) -> set[str]:
        """Which of ``rels`` exist: a file check each locally; on an object store one listing per
        distinct folder (a tenant/day), or of the whole lake when there are many folders."""
        rels = list(dict.fromkeys(rels))
        if not self.remote:
            home = self.settings.home
            return {r for r in rels if (home / r).is_file()}
        folders = dict.fromkeys(r.rsplit("/", 1)[0] for r in rels)
        if len(folders) > 32:
            have = set(self.listing())
            return {r for r in rels if r in have}
        have: set[str] = set()
        for folder in folders:
            base = self.key(folder)
            try:
                names = self.fs.ls(base, detail=False, refresh=True)
            except FileNotFoundError:
                continue
            have |= {f"{folder}/{n.rstrip('/').rsplit('/', 1)[-1]}" for n in names}
        return {r for r in rels if r in have}

    # --- writing -------------------------------------------------------------------------------------

    def place(self, pairs: list[tuple[Path, Path]]) -> list[Path]:
        """Put each staged file at its final place. Locally ``atomic.place_staged`` (rename, fsync the
        folders). On an object store: one PUT per file to its final key, then check the object (size,
        Parquet row count) against the staged file; the staged file is removed once it is checked. All
        or nothing: on any error the objects already put are deleted before the error propagates."""
        if not self.remote:
            from dreaming.atomic import place_staged

            return place_staged(pairs)
        placed: list[Path] = []
        try:
            for tmp, final in pairs:
                rel = self.rel_of(final)
                self.fs.put_file(str(tmp), self.key(rel))
                placed.append(Path(final))
                self._validate(Path(tmp), rel)
        except BaseException:
            self.remove(placed)
            raise
        for tmp, _ in pairs:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp).unlink()
        return placed

    def _validate(self, staged: Path, rel: str) -> None:
        import pyarrow.parquet as pq

        info = self.fs.info(self.key(rel), refresh=True)
        size = staged.stat().st_size
        if (info.get("size") or 0) != size:
            raise OSError(f"{self.uri(rel)}: the object has {info.get('size')} bytes, the staged file {size}")
        want = pq.ParquetFile(staged).metadata.num_rows
        with self.fs.open(self.key(rel), "rb") as f:
            got = pq.ParquetFile(f).metadata.num_rows
        if got != want:
            raise OSError(f"{self.uri(rel)}: the object has {got} rows, the staged file {want}")

    def remove(self, finals: list[Path]) -> None:
        """Remove placed files (local: the file, then its folder if it is empty; remote: the object)."""
        if not self.remote:
            from dreaming.ingest.commit import remove

            return remove(finals)
        for final in finals:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.key(self.rel_of(final)))
        return None

    def move(self, rel: str, dest_rel: str) -> None:
        """Move an object within the lake (copy, then delete: fsck's quarantine)."""
        self.fs.copy(self.key(rel), self.key(dest_rel))
        self.fs.rm_file(self.key(rel))

    # --- reading -------------------------------------------------------------------------------------

    def read_table(self, rel: str, columns: list[str] | None = None):
        import pyarrow.parquet as pq

        if not self.remote:
            return pq.read_table(self.settings.home / rel, columns=columns)
        with self.fs.open(self.key(rel), "rb") as f:
            return pq.read_table(f, columns=columns)

    def num_rows(self, rel: str) -> int:
        """The row count in ``rel``'s Parquet footer."""
        import pyarrow.parquet as pq

        if not self.remote:
            return pq.ParquetFile(self.settings.home / rel).metadata.num_rows
        with self.fs.open(self.key(rel), "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows

    def attach(self, con) -> None:
        """Let DuckDB's database behind ``con`` read this lake's URLs (remote only; once per filesystem)."""
        if self.remote:
            attach_duckdb(con, self.fs)


def filesystem(settings: Settings):
    """The fsspec filesystem of ``settings.lake_url``. S3 (``s3://``) through s3fs: the endpoint is
    ``DREAMS_S3_ENDPOINT_URL`` when set, else what botocore reads itself (``AWS_ENDPOINT_URL_S3``,
    ``AWS_ENDPOINT_URL``, or AWS); credentials and region come from the standard AWS variables and files.
    Listings are never cached: another process may have written meanwhile."""
    import fsspec
    from fsspec.core import split_protocol

    from dreaming.errors import DreamsError

    protocol = split_protocol(settings.lake_url)[0]
    if protocol is None or protocol == "file":
        raise DreamsError(f"DREAMS_LAKE_URL={settings.lake_url!r}: give an object store URL (s3://bucket/prefix); "
                          "a local lake is DREAMS_HOME's transcripts/ folder (leave DREAMS_LAKE_URL unset)")
    options: dict = {"use_listings_cache": False}
    if protocol in ("s3", "s3a"):
        try:
            import s3fs  # noqa: F401
        except ImportError as e:
            raise DreamsError(f"DREAMS_LAKE_URL={settings.lake_url}: the S3 filesystem is not installed; "
                              "install the s3 extra (pip install 'dreams[s3]')") from e
        if settings.s3_endpoint_url:
            options["endpoint_url"] = settings.s3_endpoint_url
    try:
        return fsspec.filesystem(protocol, **options)
    except (ImportError, ValueError) as e:
        raise DreamsError(f"DREAMS_LAKE_URL={settings.lake_url}: no filesystem for {protocol}:// ({e})") from e


_ATTACHED: dict[str, object] = {}  # protocol -> the filesystem last registered for it


def attach_duckdb(con, fs) -> None:
    """Register ``fs`` for its protocol on the database of ``con`` (a registration holds for every cursor
    of that database), replacing a filesystem of the same protocol registered before (another endpoint).
    The process's lake database (``dreaming.lake._connect``) is the one that matters; a connection of
    another database is registered on when it has no filesystem of that protocol yet."""
    name = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    registered = con.filesystem_is_registered(name)
    if registered and _ATTACHED.get(name) is fs:
        return
    if registered:
        con.unregister_filesystem(name)
    con.register_filesystem(fs)
    _ATTACHED[name] = fs


def _mtime(info: dict) -> datetime | None:
    t = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if isinstance(t, datetime):
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    if isinstance(t, int | float):
        return datetime.fromtimestamp(t, UTC)
    return None


__all__ = ["LAKE_ROOTS", "LakeFiles", "attach_duckdb", "filesystem"]
