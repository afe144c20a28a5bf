"""The offline, deterministic curator ("rules").

Same inputs -> byte-identical changeset: no wall clock (``inp.now`` is the reference time), no
randomness, stable ids (``dreaming.ids.stable_id``), every collection sorted before it is emitted.

Two halves (docs/curation.md lists every rule and threshold):

- ``housekeeping`` of the base store: redact secrets; prune expired entries; supersede contradicted
  entries on the same ``key`` (latest event time wins); merge exact and near duplicates (``similarity``:
  MinHash LSH blocking, rapidfuzz scoring, number/negation/literal guards); prune stale unsupported
  entries (never pinned ones);
- ``miners`` over the sessions' signals: tool errors with the fix a later call made, converged
  workflows, a person's rules and corrections. Recurrence counts distinct tasks (``Signals.contexts``),
  not sessions; what the store already holds is updated (new sources) rather than added again.

``run.Run`` holds one run's state; ``instructions`` turns the dream's instructions into policy.
"""

from __future__ import annotations

from dreaming.curators.base import CurationInput, CurationResult
from dreaming.curators.rules import housekeeping
from dreaming.curators.rules.instructions import effective_policy, parse_instructions
from dreaming.curators.rules.miners import MINERS
from dreaming.curators.rules.run import Run
from dreaming.curators.rules.similarity import cluster_duplicates, near_duplicate, norm_text


class RulesCurator:
    """Deterministic offline curator (see module docstring)."""

    name = "rules"

    def curate(self, inp: CurationInput) -> CurationResult:
        run = Run(inp)
        housekeeping.redact_base(run)
        housekeeping.prune_expired(run)
        housekeeping.supersede_by_key(run)
        housekeeping.merge_duplicates(run)
        for mine in MINERS.values():
            mine(run)
        housekeeping.prune_stale(run)
        return run.result()


__all__ = ["RulesCurator", "cluster_duplicates", "effective_policy", "near_duplicate", "norm_text",
           "parse_instructions"]
