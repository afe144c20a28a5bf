"""`dreams backtest` and `dreams outcomes` end to end on the research transcripts (skipped when absent).

SWE-bench Verified Django trajectories by mini-swe-agent (a subset, oldest first) into a store's scope: a
backtest with two rolling splits, then a real dream over the sessions before the last split, promoted, and
the outcomes of its memories. The numbers are explained in docs/outcomes.md.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dreaming import ingest
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.outcomes import stats
from dreaming.outcomes.backtest import backtest
from dreaming.outcomes.tracking import outcomes
from dreaming.promotion import promote
from dreaming.stores import StoreService

pytestmark = pytest.mark.realdata


@pytest.fixture
def swe(research_data, lake):
    files = sorted((research_data / "swebench-verified-mini-swe-agent-gemini3pro" / "trajs_django").glob("*.traj.json"))
    if not files:
        pytest.skip("SWE-bench Django trajectories missing")
    cat = Catalog(lake)
    rep = ingest.ingest_files(files[:120], cat, tenant="swe", agent="django")
    assert rep.ok, rep.failed
    StoreService(cat).create("swe", scope="swe")
    return cat


def test_backtest_on_swebench(swe):
    bt = backtest("swe", every=timedelta(minutes=30), catalog=swe)
    assert bt["sessions"] == 120 and bt["splits"]
    for s in bt["splits"]:
        assert s["sessions_before"] + s["sessions_after"] == 120
        f = s["failures"]
        assert f["coverage"] is None or f["coverage"] == round(f["covered"] / (f["covered"] + f["new"]), 4)
        assert s["tokens"] == sum(m["tokens"] for m in s["memory_list"])
    # the setup errors (no such table, no module named …) recur across tasks: some split sees them covered
    assert any(s["memories"] >= 1 and s["failures"]["covered"] >= 1 for s in bt["splits"])
    assert bt["splits"][0]["sessions_before"] < bt["splits"][-1]["sessions_before"]
    assert [s["sessions_before"] for s in bt["splits"]] == sorted(s["sessions_before"] for s in bt["splits"])


def test_outcomes_on_swebench(swe):
    svc = DreamService(swe)
    d = svc.create("swe", Selection(all_new=True), output_behavior="update_existing")
    inputs = svc.read(d.id)
    svc.output(inputs, svc.curate(inputs))
    d = promote(swe, d.id, decided_by="test")
    if d.promotion.state == "awaiting_approval":
        d = promote(swe, d.id, decided_by="test")
    assert d.promotion.state == "promoted"
    rep = outcomes("swe", catalog=swe)
    assert rep["sessions"] == 120 and rep["memories"]
    for e in rep["memories"]:
        if e["pattern"] is None:
            continue
        # every session of the data set predates the promotion: all before, none after, too early to judge
        assert e["before"]["sessions"] == 120 and e["after"]["sessions"] == 0 and e["verdict"] == stats.TOO_EARLY
        assert e["before"]["count"] >= 2  # a mistake memory needs two tasks showing it
    assert sum(d["sessions"] for d in rep["daily"]) == 120
    assert any(t["covered"] for t in rep["top_patterns"])
