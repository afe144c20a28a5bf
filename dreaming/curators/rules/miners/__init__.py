"""Miners: one module per kind of pattern the offline curator learns from the sessions' signals.

A miner is a function ``mine(run: Run) -> None`` that reads ``run.inp.signals`` and proposes memories
through ``run._propose`` (which deduplicates against the store, refuses unsafe text and writes the
change). ``MINERS`` is the registry, in the order they run: a new kind of pattern is one module and one
entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from dreaming.curators.rules.miners import commands, corrections, mistakes, preferences, workflows

if TYPE_CHECKING:
    from dreaming.curators.rules.run import Run


class Miner(Protocol):
    def __call__(self, run: Run) -> None: ...


MINERS: dict[str, Callable[[Run], None]] = {
    "mistakes": mistakes.mine,
    "workflows": workflows.mine,
    "commands": commands.mine,
    "preferences": preferences.mine,
    "corrections": corrections.mine,
}
