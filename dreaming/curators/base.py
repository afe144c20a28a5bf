"""The curator protocol: ``curate(CurationInput) -> CurationResult``. Both curators implement it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dreaming.models import Change, Memory, Usage
from dreaming.policy import Policy
from dreaming.signals import Signals


@dataclass
class CurationInput:
    dream_id: str
    store: dict  # the catalog row of the input store
    base: list[Memory]  # the base version's memories
    session_ids: list[str]  # the dream's input sessions (sorted)
    signals: Signals
    instructions: str | None
    policy: Policy
    now: datetime  # the dream's reference time (deterministic; for age-based pruning)
    model: str | None = None
    age_out: bool = True  # False: no plausible event time dates this dream; prune nothing by age
    # already-dreamt sessions of the store whose signals are in ``signals`` too: they corroborate a pattern the
    # input shows (support counts them), never a pattern alone
    context_session_ids: list[str] = field(default_factory=list)


@dataclass
class CurationResult:
    changes: list[Change]
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)  # e.g. changes dropped for invented evidence


class Curator(Protocol):
    name: str

    def curate(self, inp: CurationInput) -> CurationResult: ...
