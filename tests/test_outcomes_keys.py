"""The lean read of `outcomes` (dreaming.outcomes.keys) finds exactly the pattern keys the dream's signals give.

Every session's keys — error groups (the mistakes miner's ``_tool_key`` and ``_cause``), statements and rule
keys, slot keys, workflow n-gram keys — and the corrections, the per-event keys and the sessions counted as
corrected are built twice: from ``extract_signals`` (what a dream reads) and from ``pattern_signals`` (the
slim SQL); they must be equal. On the generated scenarios (the demo scenario's tenants, the benchmark lake,
the recurrence plans) and, marked ``realdata``, on the SWE-bench Django and tau-bench research transcripts.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dreaming import ingest
from dreaming.catalog import Catalog
from dreaming.lake import Lake
from dreaming.models import utcnow
from dreaming.outcomes.keys import _slim_events, failed_calls, pattern_signals
from dreaming.outcomes.patterns import SessionPatterns
from dreaming.policy import Policy
from dreaming.signals import _selection, extract_signals, queries


def _corrected(sig) -> set[str]:
    """The sessions `_daily` counts as corrected (tracking._daily's rule)."""
    return ({c["session_id"] for c in sig.corrections}
            | {p["session_id"] for p in sig.preferences if p.get("polarity") == "correction" and not p.get("in_task")
               and p.get("voice", "team") == "team"})


def assert_same_keys(settings, tenant: str) -> dict:
    """Build both and compare; returns a few counts so a test can check the data had something to compare."""
    policy = Policy()
    with Lake(settings) as lk:
        ids_ = [s["session_id"] for s in lk.sessions(tenant=tenant)]
        assert ids_, f"no sessions of tenant {tenant}"
        with lk.scoped(ids_, tenant=tenant) as sc:
            full = extract_signals(sc, ids_, policy, tenant=tenant)
    want = SessionPatterns(full, policy)
    want._with_workflows()
    # every workflow key the sessions show, cited by the first session that shows it; and two cited by a
    # session that does not show them (the lean read then looks in every session)
    wf: dict[str, set[str]] = {}
    for sid in sorted(want.keys):
        for k in want.keys[sid]:
            if k[0] == "key" and k[1].startswith("workflow:"):
                wf.setdefault(k[1], {sid})
    shows = {k: {s for s, ks in want.keys.items() if ("key", k) in ks} for k in wf}
    for k in sorted(wf)[:2]:
        wf[k] = set(sorted(set(ids_) - shows[k])[:1])
    with Lake(settings) as lk, lk.scoped(ids_, tenant=tenant) as sc:
        lean, shown = pattern_signals(sc, ids_, policy, tenant=tenant, workflows=wf)
        # the failed calls found from the error results are the ones the dream's pairing of every call marks
        con = sc.con
        con.register("_t_sel", _selection(con, ids_, tenant))
        _slim_events(con, "_t_sel", "_t_ev", "_t_lab")
        queries.uses(con, "_t_ev", "_t_uses")
        failed_calls(con, "_t_ev", "_t_failed")
        assert (set(con.execute("SELECT session_id, seq FROM _t_failed").fetchall())
                == set(con.execute("SELECT session_id, seq FROM _t_uses WHERE failed").fetchall()))
    got = SessionPatterns(lean, policy, shown)
    got._with_workflows()

    def nonempty(d):
        return {k: v for k, v in d.items() if v}

    assert nonempty(got.failures) == nonempty(want.failures)
    assert ({s: sorted(map(sorted, v)) for s, v in nonempty(got.corrections).items()}
            == {s: sorted(map(sorted, v)) for s, v in nonempty(want.corrections).items()})
    assert nonempty(got.keys) == nonempty(want.keys)
    assert got.by_event == want.by_event
    assert got.label == want.label
    assert _corrected(lean) == _corrected(full)
    assert shown == shows
    few = dict(sorted(wf.items())[1:4])  # a few keys (one cited by a session without it): matched one by one
    with Lake(settings) as lk, lk.scoped(ids_, tenant=tenant) as sc:
        assert pattern_signals(sc, ids_, policy, tenant=tenant, workflows=few)[1] == {k: shows[k] for k in few}
    return {"sessions": len(ids_), "errors": sum(map(len, want.failures.values())),
            "statements": sum(map(len, want.corrections.values())), "workflows": len(wf)}


def test_same_keys_on_the_demo_scenario(tmp_path, lake):
    from dreaming.scenarios import generate_scenario

    sc = generate_scenario(tmp_path / "scen", seed=3, name="large")
    cat = Catalog(lake)
    for rep in sc.ingest(cat):
        assert rep.ok, rep.failed
    counts = [assert_same_keys(lake, t) for t in sc.tenants]
    assert sum(c["errors"] for c in counts) and sum(c["statements"] for c in counts)
    assert sum(c["workflows"] for c in counts)


def test_same_keys_on_the_bench_lake_and_recurrence(lake):
    from dreaming.scenarios import generate_bench_lake
    from dreaming.scenarios.recurrence import daily, write_recurrence

    generate_bench_lake(lake, 400, seed=1)
    write_recurrence(lake, daily("sesn_r", utcnow() - timedelta(days=9), 8, ("mistake:pip", "mistake:migrate")),
                     tenant="recur")
    c = assert_same_keys(lake, "acme")
    assert c["errors"] and c["statements"] and c["workflows"]
    assert assert_same_keys(lake, "recur")["errors"] >= 16


@pytest.mark.realdata
def test_same_keys_on_swebench_django(research_data, lake):
    files = sorted((research_data / "swebench-verified-mini-swe-agent-gemini3pro" / "trajs_django").glob("*.traj.json"))
    if not files:
        pytest.skip("SWE-bench Django trajectories missing")
    rep = ingest.ingest_files(files, Catalog(lake), tenant="swe", agent="django")
    assert rep.ok, rep.failed
    c = assert_same_keys(lake, "swe")
    assert c["sessions"] == len(files) and c["errors"] > 100 and c["workflows"]


@pytest.mark.realdata
def test_same_keys_on_tau_bench(research_data, lake):
    tau = research_data / "tau-bench-historical" / "gpt-4o-airline.json"
    if not tau.is_file():
        pytest.skip("tau-bench airline transcripts missing")
    rep = ingest.ingest_files([tau], Catalog(lake), tenant="tau", agent="airline")
    assert rep.ok, rep.failed
    c = assert_same_keys(lake, "tau")
    assert c["sessions"] >= 100 and c["errors"]
