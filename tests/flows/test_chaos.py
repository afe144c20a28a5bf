"""The fast subset of bench/chaos_dream.py: real `dreams` subprocesses killed with SIGKILL at two
crash points (mid-output of `dreams run`, inside the promotion transaction of `dreams approve`), then
reaped and rerun: no partial head, no lost session, nothing left running, a clean catalog."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.flow, pytest.mark.gx]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos_dream.py"


def test_killed_dreams_are_reaped_and_rerun_without_loss(prefect_harness, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the subprocesses use the harness server
    spec = importlib.util.spec_from_file_location("chaos_dream", BENCH)
    chaos = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "chaos_dream", chaos)  # its dataclasses resolve their module
    spec.loader.exec_module(chaos)
    totals = chaos.run(quick=True)
    assert totals["trials"] == 2 and totals["killed"] == 2, totals
    assert {k: totals[k] for k in chaos.TARGETS} == dict.fromkeys(chaos.TARGETS, 0), totals
    assert os.environ["PREFECT_API_URL"] == PREFECT_API_URL.value()  # the harness's server was not stopped
