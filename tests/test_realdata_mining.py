"""Mining real transcripts (tau-bench airline, SWE-bench Verified Django by mini-swe-agent).

Skipped when ../shared/research-data is absent. Run with ``pytest -s`` to see the mined items.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dreaming.changeset import apply_changes
from dreaming.curators.base import CurationInput
from dreaming.curators.rules import RulesCurator
from dreaming.lake import Lake
from dreaming.policy import Policy
from dreaming.signals import extract_signals

pytestmark = pytest.mark.realdata


def test_mine_tau_bench_and_swebench_django(research_data, catalog, lake):
    ingest = pytest.importorskip("dreaming.ingest")
    tau = research_data / "tau-bench-historical" / "gpt-4o-airline.json"
    swe = sorted((research_data / "swebench-verified-mini-swe-agent-gemini3pro" / "trajs_django").glob("*.traj.json"))
    if not tau.exists() or not swe:
        pytest.skip("tau-bench or SWE-bench Django trajectories missing")
    swe = swe[:80]  # enough sessions for recurring patterns, small enough for a quick test
    rep_tau = ingest.ingest_files([tau], catalog, tenant="research", agent="tau-airline")
    rep_swe = ingest.ingest_files(swe, catalog, tenant="research", agent="swe-django")
    assert rep_tau.ok and rep_swe.ok, (rep_tau.failed, rep_swe.failed)

    with Lake(lake) as lk:
        sessions = [s["session_id"] for s in lk.sessions(tenant="research")]
        assert len(sessions) >= 200
        policy = Policy()
        sig = extract_signals(lk.con, sessions, policy)
    inp = CurationInput(dream_id="drm_realdata", store={"id": "memstore_real", "name": "real"}, base=[],
                        session_ids=sorted(sessions), signals=sig, instructions=None, policy=policy,
                        now=datetime(2026, 1, 1, tzinfo=UTC))
    res = RulesCurator().curate(inp)
    adds = [c for c in res.changes if c.op == "add"]
    mistakes = [c for c in adds if c.kind == "mistake"]

    print(f"\n{len(sessions)} sessions, {len(sig.errors)} error events, {len(sig.preferences)} preference "
          f"statements, {sum(1 for s in sig.tool_sequences if s['success'])} successful sessions")
    for kind in ("mistake", "workflow", "preference"):
        items = [c for c in adds if c.kind == kind]
        print(f"\n== {kind}s ({len(items)})")
        for c in items:
            print(f"- [{c.support} sessions, conf {c.confidence}, {c.taint}] {c.path}\n    {c.after}")

    assert mistakes, "recurring errors exist in these transcripts"
    for c in mistakes:
        assert len({e.session_id for e in c.evidence}) >= 2, c
        harness = "EXACTLY ONE action" in (c.after or "")
        # mined from tool output → tainted; the harness's rejection is the environment's own word
        assert c.support >= 2 and c.taint == ("trusted" if harness else "tool_output"), c
        assert all(e.session_id in set(sessions) for e in c.evidence)
    # SWE-bench's harness rejection ("provide EXACTLY ONE action…, found N actions") is one mistake,
    # never a person's preference and never split per tool or per N
    assert sum("EXACTLY ONE action" in (c.after or "") for c in mistakes) == 1
    assert not any("EXACTLY ONE action" in (c.after or "") for c in adds if c.kind == "preference")
    assert any(c.kind == "workflow" for c in adds)
    out = apply_changes([], res.changes, now=inp.now)
    assert len(out) == len(adds) and len({m.path for m in out}) == len(out)
