"""Crash points for chaos tests (bench/chaos_dream.py, tests): TEST-ONLY.

``crash_point(name)`` kills this process with SIGKILL when the environment variable
``DREAMS_TEST_CRASH_AT`` equals ``name`` — the hardest crash there is (no cleanup, no hooks), at a
precise step. With the variable unset (always, outside tests) it does nothing.

``DREAMS_TEST_STALL_AT=name`` makes the process sleep there instead (``DREAMS_TEST_STALL_S`` seconds,
default 300): a dream caught mid-run, for the tests that signal the CLI (tests/test_cli_signals.py).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "DREAMS_TEST_CRASH_AT"
STALL_ENV = "DREAMS_TEST_STALL_AT"

#: every named point, in the order a dream reaches them
POINTS = (
    "create.after_insert",      # the dream is recorded pending
    "read.running",             # marked running, nothing read yet
    "curate.done",              # the changeset exists in memory only
    "output.version_written",   # the candidate version file and row exist; no changeset yet
    "output.changeset_written", # candidate and changeset written; the dream is still running
    "output.completed",         # completed, not yet gated or promoted
    "promote.before_commit",    # gated, about to compare-and-swap
    "promote.fork_file_written",  # create_new: the fork's v1 file is in place, no catalog row yet
    "promote.in_commit",        # inside the promotion transaction, before it commits
    "reject.before_commit",     # a rejection about to be recorded
)


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STALL_ENV) == name:
        time.sleep(float(os.environ.get("DREAMS_TEST_STALL_S", "300")))
