"""Mining real transcripts (tau-bench airline, SWE-bench Verified Django by mini-swe-agent).

Skipped when ../shared/research-data is absent. Run with ``pytest -s`` to see the mined items.
"""

from __future__ import annotations

import re

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
    from dreaming import ingest
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

    assert mistakes, "recurring errors with a recurring fix exist in these transcripts"
    for c in mistakes:
        assert len({e.session_id for e in c.evidence}) >= 2 and c.support >= 2, c
        assert c.taint == "tool_output" and all(e.session_id in set(sessions) for e in c.evidence), c
    for c in adds:  # the defect classes of issue 13, on data nobody here wrote
        assert "EXACTLY ONE action" not in c.after, c  # the harness's format error is a control signal
        assert not re.search(r"<(?:n|q|id|hex|path|url)>", c.after), c  # no placeholders
        assert "seen in" not in c.after and "sessions)" not in c.after, c  # no statistics in the rule
        assert not re.search(r"use `(?:think|cat|echo|ls|/)[^`]*` instead", c.after), c  # a no-op or a path as fix
    # the lesson a Django engineer writes down: a model defined in a script has no table until it is created
    assert any("no such table" in c.after and "schema_editor" in c.after for c in mistakes)
    out = apply_changes([], res.changes, now=inp.now)
    assert len(out) == len(adds) and len({m.path for m in out}) == len(out)
