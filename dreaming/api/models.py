"""Request and response bodies of the HTTP API, in Anthropic's shapes (anthropic SDK ``types/beta``).

Requests are strict (an unknown field is a 400 naming it); responses allow extra fields, which carry
our extensions beside the compatible ones (docs/api.md). The object → dict conversions live here too:
routes only call services and these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dreaming.models import Memory, iso

MAX_METADATA_PAIRS = 16


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


Metadata = dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=512)]]


# --- memory stores ----------------------------------------------------------------------------------


class MemoryStoreCreate(_Request):
    name: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=1024)
    metadata: Metadata = Field(default_factory=dict, max_length=MAX_METADATA_PAIRS)
    scope: str | None = Field(default=None, description="Ours: `tenant` or `tenant/agent`, within the key's tenant "
                              "(default: the key's tenant).")


class MemoryStoreUpdate(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=1024)
    metadata: dict[Annotated[str, Field(min_length=1, max_length=64)],
                   Annotated[str, Field(max_length=512)] | None] | None = None


class MemoryStore(_Response):
    type: Literal["memory_store"] = "memory_store"
    id: str
    name: str
    description: str
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    archived_at: str | None = None


class DeletedMemoryStore(_Response):
    type: Literal["memory_store_deleted"] = "memory_store_deleted"
    id: str


def store_to_api(s: dict) -> dict:
    return {
        "type": "memory_store",
        "id": s["id"],
        "name": s["name"],
        "description": s["description"] or "",
        "metadata": s["metadata"] or {},
        "created_at": iso(s["created_at"]),
        "updated_at": iso(s["updated_at"]),
        "archived_at": iso(s["archived_at"]),
        # ours
        "scope": s["scope"],
        "head_version": s["head_version"],
        "forked_from": s.get("forked_from"),
    }


# --- memories -------------------------------------------------------------------------------------


class MemoryCreate(_Request):
    path: str
    content: str


class Precondition(_Request):
    type: Literal["content_sha256"]
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class MemoryUpdate(_Request):
    content: str | None = None
    path: str | None = None
    precondition: Precondition | None = None


class MemoryOut(_Response):
    type: Literal["memory"] = "memory"
    id: str
    memory_store_id: str
    path: str
    content: str | None = None
    content_sha256: str
    content_size_bytes: int
    memory_version_id: str
    created_at: str
    updated_at: str


class MemoryPrefix(_Response):
    type: Literal["memory_prefix"] = "memory_prefix"
    path: str


class DeletedMemory(_Response):
    type: Literal["memory_deleted"] = "memory_deleted"
    id: str


def memory_version_id(store_id: str, m: Memory) -> str:
    """The ``memver_`` id of the memory's current content (dreaming.history.memory_version_id)."""
    from dreaming.history import memory_version_id as mvid

    return mvid(store_id, m.memory_id, m.path, m.content_sha256, m.updated_at)


def memory_to_api(m: Memory, store: dict, view: str = "basic") -> dict:
    created = m.created_at or m.first_seen or store["created_at"]
    return {
        "type": "memory",
        "id": m.memory_id,
        "memory_store_id": store["id"],
        "path": m.path,
        "content": m.content if view == "full" else None,
        "content_sha256": m.content_sha256,
        "content_size_bytes": len(m.content.encode("utf-8")),
        "memory_version_id": memory_version_id(store["id"], m),
        "created_at": iso(created),
        "updated_at": iso(m.updated_at or m.last_seen or created),
        # ours
        "kind": m.kind,
        "key": m.key,
        "pinned": m.pinned,
        "support": m.support,
        "confidence": m.confidence,
        "taint": m.taint,
    }


def actor_to_api(created_by: dict | None) -> dict | None:
    """A version's actor in Anthropic's actor shapes (``api_actor``, ``user_actor``); ours for a dream."""
    if not created_by:
        return None
    kind, who = created_by.get("type"), created_by.get("id")
    if kind == "api":
        return {"type": "api_actor", "api_key_id": who or "unknown"}
    if kind == "user":
        return {"type": "user_actor", "user_id": who or "user"}
    return {"type": f"{kind}_actor", "id": who}


def memory_version_to_api(row: dict, store_id: str, view: str = "basic") -> dict:
    deleted = row["operation"] == "deleted"
    return {
        "type": "memory_version",
        "id": row["id"],
        "memory_id": row["memory_id"],
        "memory_store_id": store_id,
        "operation": row["operation"],
        "path": row["path"],
        "content": row["content"] if view == "full" and not deleted else None,
        "content_sha256": row["content_sha256"],
        "content_size_bytes": None if deleted else len((row["content"] or "").encode("utf-8")),
        "created_at": iso(row["created_at"]),
        "created_by": actor_to_api(row["created_by"]),
        "redacted_at": None,
        "redacted_by": None,
        # ours
        "store_version": row["store_version"],
        "message": row["message"],
    }


class MemoryVersionOut(_Response):
    type: Literal["memory_version"] = "memory_version"
    id: str
    memory_id: str
    memory_store_id: str
    operation: Literal["created", "modified", "deleted"]
    created_at: str


# --- dreams ---------------------------------------------------------------------------------------


class MemoryStoreInput(_Request):
    type: Literal["memory_store"]
    memory_store_id: str = Field(min_length=1)


class SessionsInput(_Request):
    type: Literal["sessions"]
    session_ids: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=100)


DreamInput = Annotated[MemoryStoreInput | SessionsInput, Field(discriminator="type")]


class ModelConfig(_Request):
    id: str = Field(min_length=1, max_length=256)
    speed: Literal["standard"] | None = None


class CreateNew(_Request):
    type: Literal["create_new"]


class UpdateExisting(_Request):
    type: Literal["update_existing"]
    memory_store_id: str = Field(min_length=1)


OutputBehavior = Annotated[CreateNew | UpdateExisting, Field(discriminator="type")]


class DreamCreate(_Request):
    inputs: list[DreamInput] = Field(min_length=1)
    model: str | ModelConfig
    instructions: str | None = Field(default=None, min_length=1, max_length=4096)
    output_behavior: OutputBehavior | None = None
    require_approval: bool = Field(default=False, description="Ours: stop before promotion, for `dreams approve`.")

    @property
    def model_id(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.id


class DreamOut(_Response):
    type: Literal["dream"] = "dream"
    id: str
    status: Literal["pending", "running", "completed", "failed", "canceled"]
    inputs: list[dict]
    outputs: list[dict]
    model: dict
    instructions: str | None = None
    output_behavior: dict
    session_id: str | None = None
    usage: dict
    error: dict | None = None
    created_at: str
    ended_at: str | None = None
    archived_at: str | None = None


class DreamApprove(_Request):
    """Ours: approve a dream awaiting approval — all its changes, or only ``change_ids``."""

    change_ids: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    note: str | None = Field(default=None, max_length=2000)


class DreamReject(_Request):
    """Ours: reject a dream awaiting approval; the store's head stays where it is."""

    reason: str | None = Field(default=None, max_length=2000)


def change_to_api(c) -> dict:
    return {"type": "dream_change", **c.model_dump(mode="json")}


# --- sessions (ours) -------------------------------------------------------------------------------


class SessionOut(_Response):
    type: Literal["session"] = "session"
    id: str
    tenant: str
    agent_id: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    events: int
    tool_calls: int
    errors: int
    outcome: str | None = None
    source_format: str | None = None


class SessionIngestOut(_Response):
    type: Literal["session_ingest"] = "session_ingest"
    file: str
    status: Literal["ingested", "skipped"]
    format: str | None = None
    snapshot_id: str | None = None
    session_ids: list[str]
    sessions: int
    events: int
    tool_calls: int
    errors: int
    note: str | None = None
    issues: list[dict] = Field(default_factory=list)
    redactions: dict[str, int] = Field(default_factory=dict)


def session_to_api(r: dict) -> dict:
    """A row of the lake's ``sessions`` view (dreaming.lake) as our ``session`` object."""
    return {"type": "session", "id": r["session_id"], "tenant": r["tenant"], "agent_id": r.get("agent_id"),
            "started_at": iso(r.get("started_at")), "ended_at": iso(r.get("ended_at")),
            "events": int(r.get("events") or 0), "tool_calls": int(r.get("tool_calls") or 0),
            "errors": int(r.get("errors") or 0), "outcome": r.get("outcome"), "source_format": r.get("source_format")}


# --- lists and errors -----------------------------------------------------------------------------


class Page(_Response):
    data: list[dict]
    next_page: str | None = None


class ErrorObject(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorObject
    request_id: str | None = None


def parse_time(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 query parameter as an aware UTC datetime (BadInput naming ``field``)."""
    if value is None or value == "":
        return None
    from datetime import UTC

    from dreaming.errors import BadInput

    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"not an RFC 3339 time: {value!r}", field=field) from None
    return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(UTC)
