"""Memory stores whose versions are immutable Parquet files.

``data/stores/<store_id>/v<version>.parquet`` holds the whole store at that version. A version is
reserved in the catalog, its file written atomically, then marked ready; the head only moves by
compare-and-swap (``Catalog.cas_head``). Nothing here ever rewrites a version file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from dreaming import ids
from dreaming.atomic import write_parquet_atomic, write_text_atomic
from dreaming.catalog import Catalog
from dreaming.errors import BadInput, InvalidState
from dreaming.models import Memory, memories_from_table, memories_to_table, utcnow
from dreaming.schema import MAX_MEMORIES

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ""}
_SCOPE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.*-]+)?$")


@dataclass(frozen=True)
class Scope:
    """A store's tenant/agent boundary: ``tenant`` or ``tenant/agent`` (``tenant/*`` = all agents)."""

    tenant: str
    agent: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Scope":
        if not _SCOPE.match(text or ""):
            raise BadInput(f"scope must look like 'tenant' or 'tenant/agent', got {text!r}", field="scope")
        tenant, _, agent = text.partition("/")
        return cls(tenant, None if agent in ("", "*") else agent)

    def __str__(self) -> str:
        return self.tenant if self.agent is None else f"{self.tenant}/{self.agent}"


def version_relpath(store_id: str, version: int) -> str:
    return f"stores/{store_id}/v{version}.parquet"


class StoreService:
    """Create, read, version and export memory stores."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.settings = catalog.settings

    # --- creation -------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        scope: str = "default",
        description: str = "",
        metadata: dict | None = None,
        memories: list[Memory] | None = None,
        created_by: dict | None = None,
        forked_from: dict | None = None,
        message: str = "created",
    ) -> dict:
        """Create a store whose version 1 holds ``memories`` (empty by default); returns the store."""
        if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
            raise BadInput("store name must be 1-255 characters without control characters", field="name")
        Scope.parse(scope)
        now = utcnow()
        store_id = ids.new_id(ids.STORE)
        with self.catalog.tx() as conn:
            self.catalog.insert_store(
                conn,
                {
                    "id": store_id,
                    "name": name,
                    "description": description,
                    "metadata": metadata or {},
                    "scope": scope,
                    "head_version": None,
                    "forked_from": forked_from,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        version = self.write_version(store_id, memories or [], None, created_by or {"type": "user"}, message)
        with self.catalog.tx() as conn:
            self.catalog.cas_head(conn, store_id, None, version)
        return self.catalog.get_store(store_id)

    def create_from_dir(self, name: str, directory: Path, scope: str = "default", description: str = "") -> dict:
        return self.create(name, scope=scope, description=description, memories=read_memory_dir(directory),
                           message=f"created from {directory}")

    # --- versions -------------------------------------------------------------------------------

    def write_version(
        self,
        store_id: str,
        memories: list[Memory],
        parent_version: int | None,
        created_by: dict,
        message: str,
    ) -> int:
        """Write a new immutable version (not the head). Returns its number."""
        check_store_content(memories)
        version = self.catalog.reserve_version(store_id, parent_version, created_by, message)
        rel = version_relpath(store_id, version)
        final = self.settings.home / rel
        ordered = sorted(memories, key=lambda m: (m.path, m.memory_id))
        write_parquet_atomic(memories_to_table(ordered), final, self.settings.staging_dir)
        with self.catalog.tx() as conn:
            self.catalog.finish_version(conn, store_id, version, rel, ids.sha256_file(final), len(ordered))
        return version

    def read_version(self, store_id: str, version: int | None = None) -> list[Memory]:
        """All memories of a version (default: the head)."""
        if version is None:
            version = self.catalog.get_store(store_id)["head_version"]
        row = self.catalog.get_version(store_id, version)
        return memories_from_table(pq.read_table(self.settings.home / row["path"]))

    def head(self, ref: str) -> tuple[dict, list[Memory]]:
        store = self.catalog.get_store(ref)
        return store, self.read_version(store["id"], store["head_version"])

    def export(self, ref: str, directory: Path, version: int | None = None) -> list[Path]:
        """Write a version (default: head) out as files, one per memory path."""
        store = self.catalog.get_store(ref)
        memories = self.read_version(store["id"], version)
        directory = Path(directory)
        written = []
        for m in memories:
            target = directory / m.path.lstrip("/")
            if directory.resolve() not in target.resolve().parents:
                raise BadInput(f"memory path escapes the export folder: {m.path!r}")
            write_text_atomic(m.content, target, self.settings.staging_dir)
            written.append(target)
        return written


def check_store_content(memories: list[Memory]) -> None:
    """Invariants every version must hold (the GX gate checks more before promotion)."""
    if len(memories) > MAX_MEMORIES:
        raise InvalidState(f"a store holds at most {MAX_MEMORIES} memories, got {len(memories)}")
    seen_paths: dict[str, str] = {}
    seen_ids: set[str] = set()
    for m in memories:
        if m.memory_id in seen_ids:
            raise InvalidState(f"duplicate memory id {m.memory_id}")
        seen_ids.add(m.memory_id)
        if m.path in seen_paths:
            raise InvalidState(f"two memories share the path {m.path!r}: {seen_paths[m.path]} and {m.memory_id}")
        seen_paths[m.path] = m.memory_id


def read_memory_dir(directory: Path) -> list[Memory]:
    """Markdown/text files of a folder as memories, keyed by relative path (Claude Code's shape)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput("not a folder", file=str(directory))
    memories = []
    now = utcnow()
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = f.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or f.suffix.lower() not in TEXT_SUFFIXES:
            continue
        try:
            content = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"not valid UTF-8 at byte {e.start}", file=str(f)) from None
        try:
            memories.append(
                Memory(
                    memory_id=ids.stable_id(ids.MEMORY, "dir", rel.as_posix()),
                    path="/" + rel.as_posix(),
                    content=content,
                    kind=_kind_from_path(rel.as_posix()),
                    taint="user",
                    created_at=now,
                    updated_at=now,
                )
            )
        except ValueError as e:
            raise BadInput(str(e).splitlines()[-1], file=str(f)) from None
    return memories


def _kind_from_path(rel: str) -> str:
    top = rel.split("/", 1)[0].lower().rstrip("s")
    return {"preference": "preference", "mistake": "mistake", "workflow": "workflow", "fact": "fact",
            "insight": "insight"}.get(top, "note")
