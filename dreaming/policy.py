"""All curation thresholds in one object, with documented defaults (see docs/curation.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Policy(BaseModel):
    # dedupe
    near_duplicate_ratio: float = Field(
        0.88, description="rapidfuzz token_set_ratio/100 at or above which two memories are near duplicates"
    )
    near_duplicate_sort_ratio: float = Field(
        0.75,
        description="rapidfuzz token_sort_ratio/100 two near duplicates must also reach (stops a short memory "
        "merging into a much longer one that merely contains its words)",
    )
    lsh_threshold: float = Field(
        0.3, description="MinHash LSH Jaccard threshold that makes two memories a candidate pair (blocking only)"
    )
    lsh_num_perm: int = Field(64, description="MinHash permutations used for the near-duplicate blocking")
    # mining
    min_sessions: int = Field(2, description="a pattern must recur in at least this many distinct sessions")
    context_sessions: int = Field(
        200,
        description="the offline curator also reads up to this many of the store's already-dreamt sessions (the "
        "most recently dreamt first) so that a mistake whose occurrences fell into different dreams still "
        "recurs; a pattern is written only when the dream's own input shows it (0: input sessions only)",
    )
    min_workflow_length: int = Field(3, description="shortest tool-call sequence promoted as a workflow")
    max_workflow_length: int = Field(6, description="longest tool-call n-gram considered")
    max_workflows: int = Field(10, description="at most this many workflows are proposed per dream (by support)")
    workflow_subsume_ratio: float = Field(
        0.8,
        description="a workflow contained in a longer kept one is dropped when the longer one has at least this "
        "share of its sessions",
    )
    workflow_min_cohesion: float = Field(
        0.6,
        description="a workflow must be a converged sequence: for each step, of the successful sessions that use "
        "both it and the step before, at least this share run them back to back (generic filler steps that "
        "co-occur everywhere but follow nothing in particular score low)",
    )
    max_mistakes: int = Field(50, description="at most this many mistakes are proposed per dream (by support)")
    max_preferences: int = Field(50, description="at most this many preferences are proposed per dream (by support)")
    workaround_max_gap: int = Field(
        20, description="the workaround must come within this many events after the error (same session)"
    )
    success_reward: float = Field(
        1.0, description="a numeric session outcome (reward) at or above this counts as success"
    )
    max_evidence: int = Field(
        20, description="evidence rows kept per change (one per session, earliest first); support stays exact"
    )
    max_preference_chars: int = Field(300, description="longer user sentences are not preference statements")
    # pruning
    stale_after_days: int = Field(
        90, description="unpinned memories with no supporting event for this long are pruned (0 = never)"
    )
    prune_unsourced: bool = Field(
        False,
        description="also prune stale memories that have no sources at all (hand-written notes); stale-ness is "
        "then measured from updated_at/created_at",
    )
    # selection
    focus_terms: list[str] = Field(default_factory=list, description="from instructions: 'focus on X'")
    ignore_terms: list[str] = Field(default_factory=list, description="from instructions: 'ignore X'")
