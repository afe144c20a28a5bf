"""Edits of a memory store through its API: memories created, updated, deleted by path or id, and the
store's own fields (name, description, metadata, archive, delete).

Every memory edit writes a NEW immutable version (``StoreService.write_version``) whose parent is the head
it read, with its actor (``{"type": "api", "id": ...}``), and moves the head to it by compare-and-swap
(``Catalog.cas_head``), as a rollback does (dreaming.history). When the head moved meanwhile (a dream was
promoted, another edit landed), the edit is re-applied on the new head, a few times, then refused
(``Conflict``). A failed check (a path taken, a precondition, a bad path) writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from dreaming.catalog import Catalog
from dreaming.errors import BadInput, Conflict, InvalidState, NotFound, PathConflict, PreconditionFailed
from dreaming.models import Memory, check_path, utcnow
from dreaming.stores import StoreService, _kind_from_path

CAS_ATTEMPTS = 5


def _bad(e: ValidationError, default_field: str) -> BadInput:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or default_field
    msg = str(err.get("msg", e)).removeprefix("Value error, ")
    return BadInput(msg, field=field)


class MemoryEditor:
    """Create, update and delete memories of a store, one new head version per edit."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.stores = StoreService(catalog)

    # --- reads -----------------------------------------------------------------------------------

    def head(self, store_id: str) -> tuple[dict, list[Memory]]:
        store = self.catalog.get_store(store_id)
        return store, self.stores.read_version(store["id"], store["head_version"])

    def get(self, store_id: str, memory_id: str) -> tuple[dict, Memory]:
        store, memories = self.head(store_id)
        for m in memories:
            if m.memory_id == memory_id:
                return store, m
        raise NotFound(f"no memory {memory_id!r} in memory store {store_id}")

    # --- writes ----------------------------------------------------------------------------------

    def _edit(self, store_id: str, change: Callable[[list[Memory]], tuple[list[Memory], Memory]],
              actor: dict, message: str, *, allow_archived: bool = False) -> tuple[dict, Memory]:
        for _ in range(CAS_ATTEMPTS):
            store = self.catalog.get_store(store_id)
            if store["archived_at"] is not None and not allow_archived:
                raise InvalidState(f"memory store {store_id} is archived: its memories can be read and deleted, "
                                   "not created or updated")
            head = store["head_version"]
            memories = self.stores.read_version(store_id, head)
            new, subject = change(memories)
            version = self.stores.write_version(store_id, new, head, actor, message)
            try:
                with self.catalog.tx() as conn:
                    self.catalog.cas_head(conn, store_id, head, version)
            except Conflict:
                continue  # the head moved: apply the edit again on the new head
            return self.catalog.get_store(store_id), subject
        raise Conflict(f"memory store {store_id} kept changing while this edit was applied; try again")

    def create(self, store_id: str, path: str, content: str, actor: dict) -> tuple[dict, Memory]:
        """A new memory at ``path`` (PathConflict when one is there)."""
        now = utcnow()
        try:
            path = check_path(path)
        except ValueError as e:
            raise BadInput(str(e), field="path") from None
        try:
            memory = Memory(path=path, content=content, kind=_kind_from_path(path.lstrip("/")), taint="user",
                            created_at=now, updated_at=now)
        except ValidationError as e:
            raise _bad(e, "content") from None

        def change(memories: list[Memory]) -> tuple[list[Memory], Memory]:
            taken = next((m for m in memories if m.path == path), None)
            if taken is not None:
                raise PathConflict(f"a memory already exists at path {path!r} ({taken.memory_id})")
            return [*memories, memory], memory

        return self._edit(store_id, change, actor, f"api: create {path}")

    def update(self, store_id: str, memory_id: str, actor: dict, *, content: str | None = None,
               path: str | None = None, expected_sha256: str | None = None) -> tuple[dict, Memory]:
        """New content and/or a new path (a rename keeps the id); ``expected_sha256``: only if the current
        content hashes to it (PreconditionFailed otherwise)."""
        if path is not None:
            try:
                path = check_path(path)
            except ValueError as e:
                raise BadInput(str(e), field="path") from None

        def change(memories: list[Memory]) -> tuple[list[Memory], Memory]:
            current = _current(memories, store_id, memory_id, expected_sha256, "it changed since it was read")
            if path is not None and path != current.path:
                other = next((m for m in memories if m.path == path), None)
                if other is not None:
                    raise PathConflict(f"a memory already exists at path {path!r} ({other.memory_id})")
            data = current.model_dump()
            if content is not None:
                data["content"] = content
            if path is not None:
                data["path"] = path
            data["updated_at"] = utcnow()
            try:
                updated = Memory.model_validate(data)
            except ValidationError as e:
                raise _bad(e, "content") from None
            return [updated if m.memory_id == memory_id else m for m in memories], updated

        return self._edit(store_id, change, actor, f"api: update {memory_id}")

    def delete(self, store_id: str, memory_id: str, actor: dict, *,
               expected_sha256: str | None = None) -> tuple[dict, Memory]:
        """Remove a memory from the head (older versions keep it). Allowed on an archived store."""

        def change(memories: list[Memory]) -> tuple[list[Memory], Memory]:
            current = _current(memories, store_id, memory_id, expected_sha256, "nothing was deleted")
            return [m for m in memories if m.memory_id != memory_id], current

        return self._edit(store_id, change, actor, f"api: delete {memory_id}", allow_archived=True)


def _current(memories: list[Memory], store_id: str, memory_id: str, expected_sha256: str | None,
             otherwise: str) -> Memory:
    """The head's memory ``memory_id`` (NotFound), whose content hashes to ``expected_sha256`` when one is
    given (PreconditionFailed, saying ``otherwise``)."""
    current = next((m for m in memories if m.memory_id == memory_id), None)
    if current is None:
        raise NotFound(f"no memory {memory_id!r} in memory store {store_id}")
    if expected_sha256 is not None and current.content_sha256 != expected_sha256:
        raise PreconditionFailed(f"memory {memory_id} content_sha256 is {current.content_sha256}, "
                                 f"not {expected_sha256}: {otherwise}")
    return current


# --- the store's own fields ----------------------------------------------------------------------


def update_store(catalog: Catalog, store_id: str, *, name: str | None = None, description: str | None = None,
                 metadata: dict[str, str | None] | None = None) -> dict:
    """Rename, describe, or change metadata keys (a ``None`` value removes the key). Not on an archived store."""
    store = catalog.get_store(store_id)
    if store["archived_at"] is not None:
        raise InvalidState(f"memory store {store_id} is archived and cannot be updated")
    fields: dict = {}
    if name is not None:
        if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
            raise BadInput("store name must be 1-255 characters without control characters", field="name")
        fields["name"] = name
    if description is not None:
        fields["description"] = description
    if metadata is not None:
        merged = dict(store["metadata"] or {})
        for k, v in metadata.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        if len(merged) > 16:
            raise BadInput(f"a store holds at most 16 metadata pairs, this update leaves {len(merged)}",
                           field="metadata")
        fields["metadata"] = merged
    if not fields:
        return store
    return catalog.update_store(store_id, **fields)


def archive_store(catalog: Catalog, store_id: str) -> dict:
    """Archive a store (idempotent): it stays readable; dreams and memory writes are refused."""
    store = catalog.get_store(store_id)
    if store["archived_at"] is not None:
        return store
    return catalog.update_store(store_id, archived_at=utcnow())


def delete_store(catalog: Catalog, store_id: str) -> None:
    """Delete a store with all its versions (catalog rows first, in one transaction; then its version files).
    Refused while one of its dreams is pending or running. Its dreams' records stay (with a store id that no
    longer resolves)."""
    import shutil

    catalog.delete_store(store_id)
    folder = catalog.settings.stores_dir / store_id
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
