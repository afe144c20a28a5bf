"""Store history and rollback: the versions on a store's head line, a memory's life along it, and
rollback (a new head whose content is an old version's; nothing is deleted).
"""

from __future__ import annotations

import pyarrow.parquet as pq

from dreaming import ids
from dreaming.catalog import Catalog
from dreaming.errors import InvalidState, NotFound
from dreaming.stores import StoreService


def rollback(catalog: Catalog, store_ref: str, to_version: int, actor: str) -> int:
    """A new head version whose content is ``to_version``'s; nothing is deleted. Returns it.

    Only a version that was the head (one on the head's line) may be the target: an unpromoted
    candidate never passed review, and rolling "back" to it would promote it behind the gate.
    ``actor`` is who asks, recorded once (``user:carol`` and ``carol`` are both recorded as
    ``{"type": "user", "id": "carol"}``)."""
    store = catalog.get_store(store_ref)
    svc = StoreService(catalog)
    try:
        memories = svc.read_version(store["id"], to_version)
    except NotFound:
        raise NotFound(f"store {store['name']} has no version {to_version} (see `dreams store history "
                       f"{store['name']}`)") from None
    if to_version not in head_lineage(catalog, store["id"]):
        raise InvalidState(f"store {store['name']} v{to_version} was never its head (an unpromoted candidate); "
                           "only versions on the head's line can be rollback targets — promote it through "
                           "review instead (see `dreams store history`)")
    head = store["head_version"]
    who = actor.removeprefix("user:") or actor
    version = svc.write_version(store["id"], memories, head, {"type": "user", "id": who},
                                f"rollback to v{to_version}")
    with catalog.tx() as conn:
        catalog.cas_head(conn, store["id"], head, version)
    return version


def head_lineage(catalog: Catalog, store_id: str, versions: list[dict] | None = None) -> list[int]:
    """Version numbers from v1 (or the first) to the head, following parent links."""
    versions = versions if versions is not None else catalog.list_versions(store_id)
    by_v = {v["version"]: v for v in versions}
    out = []
    cur = catalog.get_store(store_id)["head_version"]
    while cur is not None and cur in by_v and cur not in out:
        out.append(cur)
        cur = by_v[cur]["parent_version"]
    return list(reversed(out))


def store_history(catalog: Catalog, store_ref: str) -> list[dict]:
    """Every ready version of a store, oldest first, with actor, message and whether it was (or is)
    on the head's line (unpromoted candidates are not)."""
    store = catalog.get_store(store_ref)
    versions = catalog.list_versions(store["id"])
    line = set(head_lineage(catalog, store["id"], versions))
    return [
        {
            "store_id": store["id"],
            "version": v["version"],
            "parent_version": v["parent_version"],
            "created_by": v["created_by"],
            "message": v["message"],
            "created_at": v["created_at"],
            "memory_count": v["memory_count"],
            "file_sha256": v["file_sha256"],
            "is_head": v["version"] == store["head_version"],
            "on_head_line": v["version"] in line,
        }
        for v in versions
    ]


def memory_history(catalog: Catalog, store_ref: str, memory_id_or_path: str) -> list[dict]:
    """A memory's life along the head's line: created / modified / deleted per version.

    Given a path, follows every memory id that ever held that path.
    """
    store = catalog.get_store(store_ref)
    versions = {v["version"]: v for v in catalog.list_versions(store["id"])}
    line = head_lineage(catalog, store["id"], list(versions.values()))
    snapshots: list[tuple[int, dict[str, dict]]] = []
    for v in line:
        t = pq.read_table(catalog.settings.home / versions[v]["path"],
                          columns=["memory_id", "path", "content_sha256"])
        snapshots.append((v, {r["memory_id"]: r for r in t.to_pylist()}))
    if memory_id_or_path.startswith("/"):
        wanted = {mid for _, snap in snapshots for mid, r in snap.items() if r["path"] == memory_id_or_path}
    else:
        wanted = {memory_id_or_path}
    if not any(mid in snap for _, snap in snapshots for mid in wanted):
        raise NotFound(f"store {store['name']} has no memory {memory_id_or_path!r} in any version on its head line")
    out = []
    prev: dict[str, dict] = {}
    for v, snap in snapshots:
        for mid in sorted(wanted):
            before, now = prev.get(mid), snap.get(mid)
            event = None
            if now and not before:
                event = "created"
            elif before and not now:
                event = "deleted"
            elif now and before and (now["content_sha256"] != before["content_sha256"] or now["path"] != before["path"]):
                event = "modified"
            if event:
                row = now or before
                meta = versions[v]
                out.append({
                    "version": v, "event": event, "memory_id": mid, "path": row["path"],
                    "content_sha256": now["content_sha256"] if now else None,
                    "previous_path": before["path"] if before and now and before["path"] != now["path"] else None,
                    "created_by": meta["created_by"], "message": meta["message"], "created_at": meta["created_at"],
                })
        prev = snap
    return out


def memory_versions(catalog: Catalog, store_id: str) -> list[dict]:
    """Every change of every memory along the store's head line, newest first: one row per memory per store
    version where it was ``created``, ``modified`` (content or path) or ``deleted``, with the version's actor
    and time, and the memory's path, content and hash as of that version (None for a deletion).

    ``memory_version_id`` (``memver_…``) is stable: for a created/modified row it is the id the memory
    carries while its path, content and ``updated_at`` stay (``memory_version_id`` below), so a memory
    names the version that holds its current content."""
    versions = {v["version"]: v for v in catalog.list_versions(store_id)}
    line = head_lineage(catalog, store_id, list(versions.values()))
    out: list[dict] = []
    prev: dict[str, dict] = {}
    for v in line:
        meta = versions[v]
        t = pq.read_table(catalog.settings.home / meta["path"],
                          columns=["memory_id", "path", "content", "content_sha256", "updated_at"])
        snap = {r["memory_id"]: r for r in t.to_pylist()}
        for mid in sorted(set(prev) | set(snap)):
            before, now = prev.get(mid), snap.get(mid)
            if now and not before:
                op = "created"
            elif before and not now:
                op = "deleted"
            elif now["content_sha256"] != before["content_sha256"] or now["path"] != before["path"]:
                op = "modified"
            else:
                continue
            row = {"store_version": v, "memory_id": mid, "operation": op, "created_by": meta["created_by"],
                   "created_at": meta["created_at"], "message": meta["message"]}
            if now:
                row.update(path=now["path"], content=now["content"], content_sha256=now["content_sha256"],
                           id=memory_version_id(store_id, mid, now["path"], now["content_sha256"], now["updated_at"]))
            else:
                row.update(path=before["path"], content=None, content_sha256=None,
                           id=ids.stable_id(ids.MEMORY_VERSION, store_id, mid, "deleted", v))
            out.append(row)
        prev = snap
    out.reverse()
    return out


def memory_version_id(store_id: str, memory_id: str, path: str, content_sha256: str, updated_at) -> str:
    """The ``memver_`` id of a memory's content: the same while its path, content and ``updated_at`` stay."""
    from dreaming.models import iso

    stamp = iso(updated_at) if hasattr(updated_at, "astimezone") else updated_at
    return ids.stable_id(ids.MEMORY_VERSION, store_id, memory_id, path, content_sha256, stamp)
