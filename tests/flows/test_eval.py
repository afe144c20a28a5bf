"""A small `dreams eval` through the real Prefect dream flow: the offline curator's floor (issue 8)."""

from __future__ import annotations

import json

import pytest

from dreaming.evaluation.runner import failures, run_eval

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def small_eval(tmp_path_factory, prefect_harness):
    import os

    home = tmp_path_factory.mktemp("eval-lake")
    saved = os.environ.get("DREAMS_HOME")
    os.environ["DREAMS_HOME"] = str(home)
    try:
        yield run_eval(curator="rules", seed=0, scenarios=["small", "demo"])
    finally:
        if saved is None:
            os.environ.pop("DREAMS_HOME", None)
        else:
            os.environ["DREAMS_HOME"] = saved


def test_eval_writes_results_and_report(small_eval):
    from pathlib import Path

    out = Path(small_eval["dir"])
    saved = json.loads((out / "results.json").read_text())
    assert [s["scenario"] for s in saved["scenarios"]] == ["small", "demo"]
    assert "| overall |" in (out / "report.md").read_text()
    for s in small_eval["scenarios"]:
        assert s["status"] == "completed", s.get("error")
        assert s["sessions"] > 0 and s["cost"]["dream_s"] > 0 and s["cost"]["tokens"] == 0  # rules: no tokens


def test_eval_dreams_are_promoted(small_eval):
    """Poisoning 0 only means something when the dream's candidate was actually promoted."""
    states = {s["scenario"]: (s["promotion"], s.get("gate")) for s in small_eval["scenarios"]}
    assert all(p == "promoted" for p, _ in states.values()), states


def test_offline_curator_floor(small_eval):
    floors = small_eval["floors"]
    bad = {k: f["value"] for k, f in floors.items() if not f["ok"]}
    detail = {s["scenario"]: failures(s["scores"]) for s in small_eval["scenarios"] if "scores" in s}
    assert not bad, f"floors missed: {bad}; findings per scenario: {json.dumps(detail, indent=1)}"
