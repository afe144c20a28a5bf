"""`dreams eval`: score consolidation quality on planted-truth scenarios and real transcripts.

- ``metrics``: pure scoring functions over (truth, base memories, changes, candidate, promoted);
- ``runner``: generate scenarios, ingest, create the store, run real dreams through the Prefect
  ``dream`` flow, score, and write JSON + Markdown under ``$DREAMS_HOME/evals/<run>/``;
- ``realdata``: ``--real PATH`` (tau-bench, SWE-bench Django trajectories, LoCoMo).

See docs/eval.md.
"""
