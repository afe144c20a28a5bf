"""``/v1/memory_stores``, ``/v1/memory_stores/{id}/memories`` and ``/v1/memory_stores/{id}/memory_versions``
(list, retrieve; not redact yet): Anthropic's paths and shapes.

Every memory write is a new immutable store version with the key as its actor (dreaming.store_edits).
Another tenant's store answers 404, as one that does not exist.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from dreaming.api import pagination
from dreaming.api.auth import Principal, principal
from dreaming.api.models import (DeletedMemory, DeletedMemoryStore, MemoryCreate, MemoryOut, MemoryStore, MemoryStoreCreate,
                                 MemoryStoreUpdate, MemoryUpdate, MemoryVersionOut, Page, memory_to_api,
                                 memory_version_to_api, parse_time, store_to_api)
from dreaming.catalog import Catalog
from dreaming.errors import BadInput, DreamsError, NotFound
from dreaming.store_edits import MemoryEditor, archive_store, delete_store, update_store
from dreaming.stores import Scope, StoreService

router = APIRouter(prefix="/v1/memory_stores", tags=["memory stores"])
View = Literal["basic", "full"]


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def tenant_store(catalog: Catalog, who: Principal, store_id: str) -> dict:
    """The store with this id (not a name) of the caller's tenant, else NotFound."""
    if not store_id.startswith("memstore_"):  # names (unique per tenant only) are never looked up here
        raise NotFound(f"no memory store {store_id!r}")
    try:
        store = catalog.get_store(store_id)
    except DreamsError:
        raise NotFound(f"no memory store {store_id!r}") from None
    if store["id"] != store_id:  # looked up by name: the API addresses stores by id only
        raise NotFound(f"no memory store {store_id!r}")
    return who.check(store)


# --- stores ---------------------------------------------------------------------------------------


@router.post("", response_model=MemoryStore)
def create_store(body: MemoryStoreCreate, request: Request, who: Principal = Depends(principal)) -> dict:
    scope = body.scope or who.scope
    parsed = Scope.parse(scope)
    if parsed.tenant != who.tenant or (who.agent is not None and parsed.agent != who.agent):
        raise BadInput(f"scope {scope!r} is outside this key's scope {who.scope!r}", field="scope")
    store = StoreService(_catalog(request)).create(body.name, scope=scope, description=body.description,
                                                   metadata=body.metadata, created_by=who.actor,
                                                   message="created through the API")
    return store_to_api(store)


@router.get("", response_model=Page)
def list_stores(
    request: Request,
    who: Principal = Depends(principal),
    include_archived: bool = False,
    limit: int = Query(20, ge=1, le=100),
    page: str | None = None,
    created_at_gte: str | None = Query(None, alias="created_at[gte]"),
    created_at_lte: str | None = Query(None, alias="created_at[lte]"),
) -> dict:
    after = pagination.decode(page, 2)
    after_key = (parse_time(after[0], "page"), after[1]) if after else None
    rows = _catalog(request).list_stores_page(
        tenant=who.scope, include_archived=include_archived, after=after_key, limit=limit + 1,
        created_gte=parse_time(created_at_gte, "created_at[gte]"),
        created_lte=parse_time(created_at_lte, "created_at[lte]"))
    more, rows = len(rows) > limit, rows[:limit]
    nxt = pagination.encode(rows[-1]["created_at"].isoformat(), rows[-1]["id"]) if more else None
    return {"data": [store_to_api(s) for s in rows], "next_page": nxt}


@router.get("/{memory_store_id}", response_model=MemoryStore)
def retrieve_store(memory_store_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    return store_to_api(tenant_store(_catalog(request), who, memory_store_id))


@router.post("/{memory_store_id}", response_model=MemoryStore)
def update_store_(memory_store_id: str, body: MemoryStoreUpdate, request: Request,
                  who: Principal = Depends(principal)) -> dict:
    cat = _catalog(request)
    tenant_store(cat, who, memory_store_id)
    return store_to_api(update_store(cat, memory_store_id, name=body.name, description=body.description,
                                     metadata=body.metadata))


@router.post("/{memory_store_id}/archive", response_model=MemoryStore)
def archive_store_(memory_store_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    cat = _catalog(request)
    tenant_store(cat, who, memory_store_id)
    return store_to_api(archive_store(cat, memory_store_id))


@router.delete("/{memory_store_id}", response_model=DeletedMemoryStore)
def delete_store_(memory_store_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    cat = _catalog(request)
    tenant_store(cat, who, memory_store_id)
    delete_store(cat, memory_store_id)
    return {"type": "memory_store_deleted", "id": memory_store_id}


# --- memories -------------------------------------------------------------------------------------


def _editor(request: Request) -> MemoryEditor:
    return MemoryEditor(_catalog(request))


@router.post("/{memory_store_id}/memories", response_model=MemoryOut)
def create_memory(memory_store_id: str, body: MemoryCreate, request: Request, view: View = "basic",
                  who: Principal = Depends(principal)) -> dict:
    tenant_store(_catalog(request), who, memory_store_id)
    store, m = _editor(request).create(memory_store_id, body.path, body.content, who.actor)
    return memory_to_api(m, store, view)


@router.get("/{memory_store_id}/memories", response_model=Page)
def list_memories(
    memory_store_id: str,
    request: Request,
    who: Principal = Depends(principal),
    depth: int = Query(0, ge=0),
    limit: int = Query(20, ge=1, le=100),
    page: str | None = None,
    path_prefix: str | None = None,
    view: View = "basic",
) -> dict:
    tenant_store(_catalog(request), who, memory_store_id)
    prefix = path_prefix or "/"
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise BadInput("path_prefix must start and end with '/', e.g. /notes/", field="path_prefix")
    if view == "full":
        limit = min(limit, 20)
    after = pagination.decode(page, 1)
    store, memories = _editor(request).head(memory_store_id)
    items: dict[str, dict] = {}  # path -> item, a prefix marker once
    for m in memories:
        if not m.path.startswith(prefix):
            continue
        parts = m.path[len(prefix):].split("/")
        if depth and len(parts) > depth:
            p = prefix + "/".join(parts[:depth]) + "/"
            items.setdefault(p, {"type": "memory_prefix", "path": p})
        else:
            items[m.path] = memory_to_api(m, store, view)
    ordered = [items[p] for p in sorted(items) if after is None or p > after[0]]
    more, ordered = len(ordered) > limit, ordered[:limit]
    return {"data": ordered, "next_page": pagination.encode(ordered[-1]["path"]) if more else None}


@router.get("/{memory_store_id}/memories/{memory_id}", response_model=MemoryOut)
def retrieve_memory(memory_store_id: str, memory_id: str, request: Request, view: View = "full",
                    who: Principal = Depends(principal)) -> dict:
    tenant_store(_catalog(request), who, memory_store_id)
    store, m = _editor(request).get(memory_store_id, memory_id)
    return memory_to_api(m, store, view)


@router.post("/{memory_store_id}/memories/{memory_id}", response_model=MemoryOut)
def update_memory(memory_store_id: str, memory_id: str, body: MemoryUpdate, request: Request,
                  view: View = "basic", who: Principal = Depends(principal)) -> dict:
    tenant_store(_catalog(request), who, memory_store_id)
    store, m = _editor(request).update(
        memory_store_id, memory_id, who.actor, content=body.content, path=body.path,
        expected_sha256=body.precondition.content_sha256 if body.precondition else None)
    return memory_to_api(m, store, view)


@router.delete("/{memory_store_id}/memories/{memory_id}", response_model=DeletedMemory)
def delete_memory(memory_store_id: str, memory_id: str, request: Request,
                  expected_content_sha256: str | None = Query(None, pattern=r"^[0-9a-f]{64}$"),
                  who: Principal = Depends(principal)) -> dict:
    tenant_store(_catalog(request), who, memory_store_id)
    _editor(request).delete(memory_store_id, memory_id, who.actor, expected_sha256=expected_content_sha256)
    return {"type": "memory_deleted", "id": memory_id}


# --- memory versions (read-only: a memory's life along the store's head line, dreaming.history) ----------


@router.get("/{memory_store_id}/memory_versions", response_model=Page)
def list_memory_versions(
    memory_store_id: str,
    request: Request,
    who: Principal = Depends(principal),
    memory_id: str | None = None,
    operation: Literal["created", "modified", "deleted"] | None = None,
    api_key_id: str | None = None,
    created_at_gte: str | None = Query(None, alias="created_at[gte]"),
    created_at_lte: str | None = Query(None, alias="created_at[lte]"),
    limit: int = Query(20, ge=1, le=100),
    page: str | None = None,
    view: View = "basic",
) -> dict:
    from dreaming.history import memory_versions

    cat = _catalog(request)
    tenant_store(cat, who, memory_store_id)
    gte, lte = parse_time(created_at_gte, "created_at[gte]"), parse_time(created_at_lte, "created_at[lte]")
    if view == "full":
        limit = min(limit, 20)
    after = pagination.decode(page, 2)
    rows = [r for r in memory_versions(cat, memory_store_id)
            if (memory_id is None or r["memory_id"] == memory_id)
            and (operation is None or r["operation"] == operation)
            and (api_key_id is None or (r["created_by"] or {}).get("type") == "api"
                 and r["created_by"].get("id") == api_key_id)
            and (gte is None or r["created_at"] >= gte) and (lte is None or r["created_at"] <= lte)]
    if after is not None:  # newest first: (store version descending, memory id ascending)
        v, mid = int(after[0]), str(after[1])
        rows = [r for r in rows if r["store_version"] < v or (r["store_version"] == v and r["memory_id"] > mid)]
    more, rows = len(rows) > limit, rows[:limit]
    nxt = pagination.encode(rows[-1]["store_version"], rows[-1]["memory_id"]) if more else None
    return {"data": [memory_version_to_api(r, memory_store_id, view) for r in rows], "next_page": nxt}


@router.get("/{memory_store_id}/memory_versions/{memory_version_id}", response_model=MemoryVersionOut)
def retrieve_memory_version(memory_store_id: str, memory_version_id: str, request: Request, view: View = "full",
                            who: Principal = Depends(principal)) -> dict:
    from dreaming.history import memory_versions

    cat = _catalog(request)
    tenant_store(cat, who, memory_store_id)
    for r in memory_versions(cat, memory_store_id):
        if r["id"] == memory_version_id:
            return memory_version_to_api(r, memory_store_id, view)
    raise NotFound(f"no memory version {memory_version_id!r} in memory store {memory_store_id}")
