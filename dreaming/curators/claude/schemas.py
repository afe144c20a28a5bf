"""The answers Claude returns, as pydantic models, and the tools that carry them.

The model answers only by calling a tool: ``record_findings`` (map: candidate findings from a batch of
session digests) or ``propose_changes`` (single pass and reduce: the changeset, mirroring ``Change``).
The tools' ``input_schema`` is generated from the same classes that validate the answer
(``compact_schema`` drops what costs tokens and tells the model nothing), so the two never drift.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from dreaming.models import Kind, Op, check_path


class EvidenceRef(BaseModel):
    session_id: str = Field(description="a session id from a 'session …' header line")
    event_id: str = Field(description="the event tag from a bracketed [...] of that session, e.g. e12")


class Finding(BaseModel):
    kind: Kind = Field(description="fact | preference | mistake | workflow | insight | note")
    content: str = Field(min_length=1, max_length=4000, description="the memory text, short and actionable")
    path: str | None = Field(None, description="suggested memory path, starting with '/'")
    key: str | None = Field(None, description="slot for contradiction detection, e.g. pref:indentation")
    evidence: list[EvidenceRef] = Field(min_length=1)
    confidence: float = Field(ge=0, le=1)
    reason: str = Field("", description="why this recurs or matters")

    @field_validator("path")
    @classmethod
    def _path(cls, v):
        return None if v is None else check_path(v)


class FindingsOutput(BaseModel):
    """Candidate findings from one batch of session digests."""

    findings: list[Finding]


class ChangeSpec(BaseModel):
    op: Op = Field(description="add | update | merge | supersede | prune | keep")
    memory_id: str | None = Field(None, description="the existing memory this change targets (all ops but add)")
    merged_ids: list[str] = Field(default_factory=list, description="merge: memories folded into memory_id")
    path: str | None = Field(None, description="add: the new memory's path; update: a new path (rename)")
    content: str | None = Field(
        None, max_length=100_000, description="add/update/merge/supersede: the full new content (supersede without it removes the memory)"
    )
    key: str | None = None
    kind: Kind | None = None
    reason: str = Field(min_length=1)
    evidence: list[EvidenceRef] = Field(default_factory=list, description="required for every op but keep")
    confidence: float = Field(ge=0, le=1)

    @field_validator("path")
    @classmethod
    def _path(cls, v):
        return None if v is None else check_path(v)

    @model_validator(mode="after")
    def _shape(self):
        if self.op == "add" and (not self.path or not self.content):
            raise ValueError("op=add needs path and content")
        if self.op != "add" and not self.memory_id:
            raise ValueError(f"op={self.op} needs memory_id")
        if self.op == "update" and self.content is None and self.path is None:
            raise ValueError("op=update needs content or path")
        if self.op == "merge" and not self.merged_ids:
            raise ValueError("op=merge needs merged_ids")
        if self.op != "keep" and not self.evidence:
            raise ValueError(f"op={self.op} needs evidence")
        return self


class ChangesetOutput(BaseModel):
    """The changeset for the store."""

    changes: list[ChangeSpec]


def compact_schema(node):
    """pydantic's JSON schema without what costs tokens and tells the model nothing: titles, null
    defaults, and ``anyOf [X, null]`` (written as ``type: [X, "null"]``)."""
    if isinstance(node, list):
        return [compact_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: compact_schema(v) for k, v in node.items() if k != "title" and not (k == "default" and v is None)}
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and len(any_of) == 2 and {"type": "null"} in any_of:
        other = next(a for a in any_of if a != {"type": "null"})
        if isinstance(other.get("type"), str):
            del out["anyOf"]
            out = {**other, **out, "type": [other["type"], "null"]}
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
    return out


TOOLS = [
    {
        "name": "record_findings",
        "description": "Record candidate findings (recurring mistakes, workflows, preferences, facts) from a batch "
        "of session digests, each with evidence ids copied from the data.",
        "input_schema": compact_schema(FindingsOutput.model_json_schema()),
    },
    {
        "name": "propose_changes",
        "description": "Propose the changeset that turns the existing memory store into the new version.",
        "input_schema": compact_schema(ChangesetOutput.model_json_schema()),
    },
]
OUTPUT_MODELS: dict[str, type[BaseModel]] = {"record_findings": FindingsOutput, "propose_changes": ChangesetOutput}


def short_validation(exc: ValidationError, limit: int = 10) -> str:
    """A validation error as one line for the model: ``loc: msg; …`` (at most ``limit`` errors)."""
    parts = []
    for e in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc or '(input)'}: {e.get('msg')}")
    more = f" (+{exc.error_count() - limit} more)" if exc.error_count() > limit else ""
    return "; ".join(parts) + more
