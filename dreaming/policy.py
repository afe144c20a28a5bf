"""All curation thresholds in one object, with documented defaults (see docs/curation.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Policy(BaseModel):
    # dedupe
    near_duplicate_ratio: float = Field(
        0.88, description="rapidfuzz token_set_ratio/100 at or above which two memories are near duplicates"
    )
    # mining
    min_sessions: int = Field(2, description="a pattern must recur in at least this many distinct sessions")
    min_workflow_length: int = Field(3, description="shortest tool-call sequence promoted as a workflow")
    max_workflow_length: int = Field(6, description="longest tool-call n-gram considered")
    # pruning
    stale_after_days: int = Field(
        90, description="unpinned memories with no supporting event for this long are pruned (0 = never)"
    )
    # selection
    focus_terms: list[str] = Field(default_factory=list, description="from instructions: 'focus on X'")
    ignore_terms: list[str] = Field(default_factory=list, description="from instructions: 'ignore X'")
