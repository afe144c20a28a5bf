"""Read-only tiers (issue 17): an organisation store, a project store — read-only — and a working store.

A **read-only** store (``stores.read_only``) is never written by this system's ordinary paths: every
version goes through ``StoreService.write_version``, which refuses one (``check_writable``: InvalidState,
exit 2 / HTTP 409) — a dream's output, a rollback, a memory edit over the API, a partial approval. Dreams
of it are refused before anything is recorded. Its name, description and metadata stay editable (they
are not memories). The only way in is ``promote_to``: a person copies one memory of a working store into
it, as a new head version whose ``created_by`` says ``{"type": "promote-to", ...}`` with who, from which
store and which memory: its own audit record in `dreams store history`.

A working store names read-only stores as **context** (``stores.context_stores``, same tenant). Its dreams
read their heads: ``screen`` drops a proposed add whose content a context store already says
(a near duplicate by the rules curator's similarity test, ``dreaming.curators.rules.similarity``) and flags
for a person, in the dream's report, each working memory or proposed change that contradicts one (the same
``key`` with another value, or the same statement with the opposite polarity); ``contradictions`` lists
those of a store's head (`dreams store context STORE --check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dreaming.catalog_schema import stores as stores_table
from dreaming.errors import BadInput, InvalidState

if TYPE_CHECKING:
    from dreaming.catalog import Catalog
    from dreaming.models import Change, Memory
    from dreaming.policy import Policy

PROMOTE_TO = "promote-to"  # the created_by type of a version promote_to wrote
SCREENED_OPS = ("add", "update", "merge")  # the changes that bring content: checked for contradictions
DROPPED_OPS = ("add",)  # left out when a context store already says it (an update or merge tidies what is there)


def is_read_only(store: dict) -> bool:
    return bool(store.get("read_only"))


def check_writable(store: dict, action: str = "write a version of") -> None:
    """InvalidState when ``store`` is read-only: nothing but ``promote_to`` writes to it."""
    if is_read_only(store):
        raise InvalidState(
            f"memory store {store['name']} is read-only (a context tier): cannot {action} it; dreams, rollbacks "
            f"and memory edits never write to it. A person adds a memory with `dreams store promote-to WORKING "
            f"--to {store['name']} --memory ID`")


def set_read_only(catalog: Catalog, store_ref: str, read_only: bool = True) -> dict:
    """Make a store read-only (a context tier) or writable again (refused while a store reads it as context)."""
    store = catalog.get_store(store_ref)
    if not read_only:
        users = [s["name"] for s in _stores(catalog) if store["id"] in (s.get("context_stores") or [])]
        if users:
            raise InvalidState(f"memory store {store['name']} is the context of {', '.join(users)}: remove it "
                               "there first (`dreams store context STORE --remove ...`)")
    _set(catalog, store["id"], read_only=bool(read_only))
    return catalog.get_store(store["id"])


def _stores(catalog: Catalog) -> list[dict]:
    with catalog.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(stores_table)).mappings()]


def _set(catalog: Catalog, store_id: str, **values) -> None:
    from dreaming.models import utcnow

    with catalog.tx() as conn:
        conn.execute(stores_table.update().where(stores_table.c.id == store_id).values(**values,
                                                                                       updated_at=utcnow()))


def _tenant(store: dict) -> str:
    from dreaming.stores import Scope

    return Scope.parse(store["scope"]).tenant


def context_stores(catalog: Catalog, store: dict) -> list[dict]:
    """The read-only stores ``store`` reads as context (those still there), in the order they were added."""
    out = []
    for sid in store.get("context_stores") or []:
        try:
            out.append(catalog.get_store(sid))
        except Exception:  # noqa: BLE001 - a deleted context store is simply gone
            continue
    return out


def add_context(catalog: Catalog, store_ref: str, context_ref: str) -> dict:
    """Make the read-only ``context_ref`` a context store of ``store_ref`` (same tenant; idempotent)."""
    store, ctx = catalog.get_store(store_ref), catalog.get_store(context_ref)
    if ctx["id"] == store["id"]:
        raise BadInput(f"memory store {store['name']} cannot be its own context", field="add")
    if not is_read_only(ctx):
        raise InvalidState(f"memory store {ctx['name']} is not read-only: only a read-only store can be a context "
                           f"tier (`dreams store create NAME --read-only`, then `dreams store promote-to`)")
    if _tenant(ctx) != _tenant(store):
        raise InvalidState(f"memory store {ctx['name']} belongs to tenant {_tenant(ctx)}, not {_tenant(store)}")
    have = list(store.get("context_stores") or [])
    if ctx["id"] not in have:
        _set(catalog, store["id"], context_stores=[*have, ctx["id"]])
    return catalog.get_store(store["id"])


def remove_context(catalog: Catalog, store_ref: str, context_ref: str) -> dict:
    store, ctx = catalog.get_store(store_ref), catalog.get_store(context_ref)
    have = list(store.get("context_stores") or [])
    if ctx["id"] in have:
        _set(catalog, store["id"], context_stores=[s for s in have if s != ctx["id"]] or None)
    return catalog.get_store(store["id"])


# --- the curator's screen -------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextMemory:
    store_name: str
    memory: Memory


@dataclass(frozen=True)
class Contradiction:
    path: str  # the working memory's (or the proposed change's) path
    content: str
    context_store: str
    context_path: str
    context_content: str
    why: str

    def note(self) -> str:
        return (f"for a person: {self.path} contradicts {self.context_store}:{self.context_path} ({self.why}): "
                f"{_clip(self.content)!r} vs {_clip(self.context_content)!r}")


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def context_memories(catalog: Catalog, store: dict) -> list[ContextMemory]:
    from dreaming.stores import StoreService

    svc = StoreService(catalog)
    out = []
    for ctx in context_stores(catalog, store):
        if ctx["head_version"] is not None:
            out += [ContextMemory(ctx["name"], m) for m in svc.read_version(ctx["id"], ctx["head_version"])]
    return out


def _says(fp, ctx_fps, policy: Policy) -> int | None:
    from dreaming.curators.rules.similarity import near_duplicate

    for i, c in enumerate(ctx_fps):
        if near_duplicate(fp, c, policy) is not None:
            return i
    return None


def _contradicts(text: str, key: str | None, fp, ctx: list[ContextMemory], ctx_fps, policy: Policy) -> tuple | None:
    """(index, why) of a context memory that ``text`` contradicts: the same key with another value, or the
    same content words with the opposite polarity (negation or an antonym)."""
    from rapidfuzz import fuzz

    from dreaming.curators.rules.similarity import near_duplicate

    for i, (c, cfp) in enumerate(zip(ctx, ctx_fps, strict=True)):
        if key and c.memory.key == key:
            if near_duplicate(fp, cfp, policy) is None:
                return i, f"key {key} has another value"
            continue
        if fp.polarity != cfp.polarity and fp.stems and cfp.stems and \
                fuzz.token_set_ratio(" ".join(sorted(fp.stems)), " ".join(sorted(cfp.stems))) >= 90:
            return i, "the same statement with the opposite sense"
    return None


def contradictions(memories: list[Memory], ctx: list[ContextMemory], policy: Policy | None = None
                   ) -> list[Contradiction]:
    """The memories among ``memories`` that contradict a context memory."""
    from dreaming.curators.rules.similarity import _Fp
    from dreaming.policy import Policy

    policy = policy or Policy()
    ctx_fps = [_Fp(c.memory.content) for c in ctx]
    out = []
    for m in memories:
        hit = _contradicts(m.content, m.key, _Fp(m.content), ctx, ctx_fps, policy)
        if hit is not None:
            c = ctx[hit[0]]
            out.append(Contradiction(m.path, m.content, c.store_name, c.memory.path, c.memory.content, hit[1]))
    return out


def screen(catalog: Catalog, store: dict, base: list[Memory], changes: list[Change], policy: Policy | None = None
           ) -> tuple[list[Change], list[str]]:
    """``changes`` without those that add what a context store already says; plus the notes for the report:
    what was left out, and every working memory or remaining change that contradicts a context store."""
    ctx = context_memories(catalog, store) if store.get("context_stores") else []
    if not ctx:
        return changes, []
    from dreaming.curators.rules.similarity import _Fp
    from dreaming.policy import Policy

    policy = policy or Policy()
    ctx_fps = [_Fp(c.memory.content) for c in ctx]
    kept, notes = [], []
    for c in changes:
        if c.op in DROPPED_OPS and c.after:
            hit = _says(_Fp(c.after), ctx_fps, policy)
            if hit is not None:
                cm = ctx[hit]
                notes.append(f"{c.op} {c.path or c.memory_id}: already said by read-only store "
                             f"{cm.store_name} ({cm.memory.path}); not proposed")
                continue
        kept.append(c)
    removed = {c.memory_id for c in kept if c.op in ("prune", "supersede", "merge") and c.memory_id}
    removed |= {m for c in kept if c.op == "merge" for m in c.merged_ids}
    working = [m for m in base if m.memory_id not in removed]
    notes += [x.note() for x in contradictions(working, ctx, policy)]
    for c in kept:
        if c.op in SCREENED_OPS and c.after:
            hit = _contradicts(c.after, c.key, _Fp(c.after), ctx, ctx_fps, policy)
            if hit is not None:
                cm = ctx[hit[0]]
                notes.append(Contradiction(c.path or c.memory_id or "", c.after, cm.store_name, cm.memory.path,
                                           cm.memory.content, hit[1]).note() + f" (proposed by {c.change_id})")
    return kept, notes


# --- the one way in ---------------------------------------------------------------------------------


def promote_to(catalog: Catalog, store_ref: str, target_ref: str, memory_id: str, actor: str) -> int:
    """Copy memory ``memory_id`` (id or path) of ``store_ref``'s head into the read-only ``target_ref`` as a new
    head version (replacing a memory at the same path), recorded as ``{"type": "promote-to", "id": actor,
    "from_store": ..., "memory_id": ...}``. Returns the new version."""
    from dreaming.errors import Conflict, NotFound
    from dreaming.models import utcnow
    from dreaming.stores import StoreService

    src, dst = catalog.get_store(store_ref), catalog.get_store(target_ref)
    if not is_read_only(dst):
        raise InvalidState(f"memory store {dst['name']} is not read-only: write to it as usual "
                           "(`dreams store promote-to` is the way into a read-only tier)")
    if src["id"] == dst["id"]:
        raise BadInput("--to names the store the memory comes from", field="to")
    if _tenant(src) != _tenant(dst):
        raise InvalidState(f"memory store {dst['name']} belongs to tenant {_tenant(dst)}, not {_tenant(src)}")
    svc = StoreService(catalog)
    memories = svc.read_version(src["id"], src["head_version"])
    found = [m for m in memories if memory_id in (m.memory_id, m.path)]
    if not found:
        raise NotFound(f"no memory {memory_id!r} in the head of memory store {src['name']} "
                       f"(see `dreams store show {src['name']}`)")
    m = found[0]
    head = dst["head_version"]
    current = svc.read_version(dst["id"], head) if head is not None else []
    now = utcnow()
    same = next((x for x in current if x.path == m.path), None)
    if same is not None and same.content_sha256 == m.content_sha256:
        raise InvalidState(f"memory store {dst['name']} already holds {m.path} with this content (v{head})")
    copy = m.model_copy(update={"memory_id": same.memory_id if same else m.memory_id, "pinned": True,
                                "updated_at": now, "created_at": same.created_at if same else now})
    new = [x for x in current if x.path != m.path and x.memory_id != copy.memory_id] + [copy]
    who = actor.removeprefix("user:") or actor
    created_by = {"type": PROMOTE_TO, "id": who, "from_store": src["id"], "memory_id": m.memory_id}
    version = svc.write_version(dst["id"], new, head, created_by,
                                f"promote-to by {who}: {m.path} from {src['name']} ({m.memory_id})",
                                allow_read_only=True)
    with catalog.tx() as conn:
        try:
            catalog.cas_head(conn, dst["id"], head, version)
        except Conflict:
            raise Conflict(f"memory store {dst['name']} changed meanwhile; run `dreams store promote-to` again") \
                from None
    return version
