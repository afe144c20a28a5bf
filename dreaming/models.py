"""The object model of DESIGN §2 as pydantic classes, with Arrow round-trips.

``Memory`` is a row of a store version, ``Change`` a row of a changeset, ``Dream`` the job record
(Anthropic's dream fields plus ours). ``to_api()`` gives the JSON shape the CLI prints with --json.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator

from dreaming import ids
from dreaming.schema import MAX_CONTENT_BYTES, MAX_PATH_BYTES

if TYPE_CHECKING:  # pyarrow is imported by the round-trips below: reading the catalog needs none
    import pyarrow as pa

Kind = Literal["fact", "preference", "mistake", "workflow", "insight", "note"]
Op = Literal["add", "update", "merge", "supersede", "prune", "keep"]
Decision = Literal["proposed", "accepted", "rejected", "edited"]
Taint = Literal["trusted", "user", "tool_output", "untrusted"]
DreamStatus = Literal["pending", "running", "completed", "failed", "canceled"]
DREAM_STATUSES: tuple[str, ...] = get_args(DreamStatus)
Promotion = Literal["not_requested", "awaiting_approval", "promoted", "rejected", "gate_failed", "conflict"]


def utcnow() -> datetime:
    """Now in UTC, to the millisecond (one clock read: two could straddle a second boundary)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_path(path: str) -> str:
    """Validate a memory path as Anthropic's Memory Store does; returns it NFC-normalised."""
    path = unicodedata.normalize("NFC", path)
    if not path.startswith("/"):
        raise ValueError(f"memory path must start with '/': {path!r}")
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise ValueError(f"memory path longer than {MAX_PATH_BYTES} bytes: {path[:60]!r}...")
    segments = path[1:].split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"memory path has an empty, '.' or '..' segment: {path!r}")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in path):
        raise ValueError(f"memory path has a control or format character: {path!r}")
    return path


class Source(BaseModel):
    """Where a memory or a change comes from: one transcript event."""

    session_id: str
    event_id: str | None = None
    ts: datetime | None = None

    def sort_key(self) -> tuple:
        return (self.ts or datetime.min.replace(tzinfo=UTC), self.session_id, self.event_id or "")


def merge_sources(*groups: list[Source]) -> list[Source]:
    """Union of sources, deduplicated by (session, event), ordered by time."""
    seen: dict[tuple, Source] = {}
    for group in groups:
        for s in group or []:
            seen.setdefault((s.session_id, s.event_id), s)
    return sorted(seen.values(), key=Source.sort_key)


class Memory(BaseModel):
    memory_id: str = Field(default_factory=lambda: ids.new_id(ids.MEMORY))
    path: str
    content: str
    content_sha256: str = ""
    kind: Kind = "note"
    key: str | None = None
    sources: list[Source] = Field(default_factory=list)
    support: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    valid_until: datetime | None = None
    confidence: float = 1.0
    taint: Taint = "trusted"
    pinned: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # a rule split out of a hand-written instruction file (dreaming/instructions_file.py): the
    # file's path relative to the imported folder ("CLAUDE.md") and the heading trail it sat under
    # (["Commands", "Frontend"]); None / [] for every other memory. Added after v1 of the schema:
    # version files written before it lack both columns and read as None / [].
    origin: str | None = None
    heading: list[str] = Field(default_factory=list)

    @field_validator("heading", mode="before")
    @classmethod
    def _heading(cls, v: Any) -> Any:
        return [] if v is None else v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_path(v)

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        if len(v.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise ValueError(f"memory content larger than {MAX_CONTENT_BYTES} bytes")
        return v

    def model_post_init(self, _ctx: Any) -> None:
        self.content_sha256 = ids.sha256_text(self.content)
        if self.sources:
            self.support = max(self.support, len({s.session_id for s in self.sources}))
            times = [s.ts for s in self.sources if s.ts]
            if times:
                self.first_seen = self.first_seen or min(times)
                self.last_seen = max([*times, self.last_seen] if self.last_seen else times)

    def to_api(self) -> dict:
        d = self.model_dump(mode="json")
        d["id"] = d.pop("memory_id")
        d["type"] = "memory"
        d["content_size_bytes"] = len(self.content.encode("utf-8"))
        return d


class Change(BaseModel):
    change_id: str = ""
    dream_id: str = ""
    op: Op
    memory_id: str | None = None
    merged_ids: list[str] = Field(default_factory=list)
    superseded_by: str | None = None
    path: str | None = None
    kind: Kind | None = None
    key: str | None = None
    before: str | None = None
    after: str | None = None
    reason: str = ""
    evidence: list[Source] = Field(default_factory=list)
    support: int | None = None
    confidence: float = 1.0
    taint: Taint | None = None
    decision: Decision = "proposed"

    def removes(self) -> list[str]:
        """Ids of base memories this change removes from the store."""
        if self.op == "prune":
            return [self.memory_id] if self.memory_id else []
        if self.op == "merge":
            return list(self.merged_ids)
        if self.op == "supersede" and self.after is None:
            return [self.memory_id] if self.memory_id else []
        return []


# --- Arrow round-trips ---------------------------------------------------------------------------


def memories_to_table(memories: list[Memory]) -> pa.Table:
    rows = [m.model_dump() for m in memories]
    for r in rows:
        r["sources"] = [s for s in r["sources"]]
    import pyarrow as pa

    from dreaming.schema import MEMORY_SCHEMA

    return pa.Table.from_pylist(rows, schema=MEMORY_SCHEMA)


def memories_from_table(table: pa.Table) -> list[Memory]:
    return [Memory.model_validate(r) for r in table.to_pylist()]


def changes_to_table(changes: list[Change]) -> pa.Table:
    import pyarrow as pa

    from dreaming.schema import CHANGE_SCHEMA

    return pa.Table.from_pylist([c.model_dump() for c in changes], schema=CHANGE_SCHEMA)


def changes_from_table(table: pa.Table) -> list[Change]:
    return [Change.model_validate(r) for r in table.to_pylist()]


# --- the dream record ----------------------------------------------------------------------------


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def add(self, other: "Usage | dict") -> None:
        o = other if isinstance(other, Usage) else Usage.model_validate(other)
        self.input_tokens += o.input_tokens
        self.output_tokens += o.output_tokens
        self.cache_creation_input_tokens += o.cache_creation_input_tokens
        self.cache_read_input_tokens += o.cache_read_input_tokens

    @property
    def total(self) -> int:
        return (
            self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
        )


class DreamError(BaseModel):
    type: str
    message: str


class PromotionState(BaseModel):
    state: Promotion = "not_requested"
    target_store_id: str | None = None
    promoted_version: int | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    accepted_change_ids: list[str] | None = None
    gate: dict | None = None


class Dream(BaseModel):
    id: str = Field(default_factory=lambda: ids.new_id(ids.DREAM))
    status: DreamStatus = "pending"
    store_id: str
    session_ids: list[str] = Field(default_factory=list)
    outputs: list[dict] = Field(default_factory=list)
    model: dict = Field(default_factory=lambda: {"id": "rules"})
    instructions: str | None = None
    output_behavior: dict = Field(default_factory=lambda: {"type": "create_new"})
    usage: Usage = Field(default_factory=Usage)
    error: DreamError | None = None
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    archived_at: datetime | None = None
    # ours
    curator: Literal["rules", "claude"] = "rules"
    base_version: int | None = None
    candidate_version: int | None = None
    flow_run_id: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    promotion: PromotionState = Field(default_factory=PromotionState)
    require_approval: bool = False
    session_id: str | None = None  # Anthropic: the session that runs the dream; we have none
    # ours: already-dreamt sessions of the store that the offline curator reads to corroborate a pattern seen in
    # the input (a lesson whose two occurrences fell into different dreams); chosen once at read, None before
    context_session_ids: list[str] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed", "canceled")

    @property
    def evidence_session_ids(self) -> list[str]:
        """The sessions a change may cite: the inputs and the corroborating context sessions."""
        return [*self.session_ids, *(self.context_session_ids or [])]

    def to_api(self) -> dict:
        """Anthropic's dream object (wire-compatible fields first) plus our extensions."""
        d = self.model_dump(mode="json")
        return {
            "type": "dream",
            "id": d["id"],
            "status": d["status"],
            "inputs": [
                {"type": "memory_store", "memory_store_id": d["store_id"]},
                {"type": "sessions", "session_ids": sorted(d["session_ids"])},
            ],
            "outputs": d["outputs"],
            "model": d["model"],
            "instructions": d["instructions"],
            "output_behavior": d["output_behavior"],
            "session_id": d["session_id"],
            "usage": d["usage"],
            "error": d["error"],
            "created_at": iso(self.created_at),
            "ended_at": iso(self.ended_at),
            "archived_at": iso(self.archived_at),
            "curator": d["curator"],
            "base_version": d["base_version"],
            "candidate_version": d["candidate_version"],
            "flow_run_id": d["flow_run_id"],
            "counts": d["counts"],
            "require_approval": d["require_approval"],
            "promotion": d["promotion"],
            "context_session_ids": sorted(d["context_session_ids"] or []),
        }
