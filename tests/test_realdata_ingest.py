"""Ingest of the real transcripts in ../shared/research-data (skipped when absent).

The expected numbers come from the data sets' READMEs; they are checked through the lake's
`sessions` / `events` views, not the ingest report.
"""

from __future__ import annotations

import csv

import pytest

from dreaming.ingest import ingest_files
from dreaming.lake import Lake

pytestmark = pytest.mark.realdata


def test_tau_bench(research_data, lake, catalog):
    f = research_data / "tau-bench-historical" / "gpt-4o-airline.json"
    report = ingest_files([f], catalog, tenant="tau", agent="gpt-4o-airline")
    assert report.ok, [x.error for x in report.failed]
    assert report.files[0].format == "openai"
    with Lake(lake) as lk:
        sessions = lk.sessions(tenant="tau")
        tool_calls = lk.con.execute(
            "select count(*) from events where tenant = 'tau' and type = 'agent.tool_use'").fetchall()[0][0]
        error_results = lk.con.execute(
            "select count(*), count(distinct session_id) from events "
            "where tenant = 'tau' and type = 'agent.tool_result' and is_error").fetchall()[0]
        results = lk.con.execute(
            "select count(*) from events where tenant = 'tau' and type = 'agent.tool_result'").fetchall()[0][0]
    assert len(sessions) == 200
    assert sum(s["tool_calls"] for s in sessions) == 1164 == tool_calls
    assert error_results == (73, 36)
    assert sum(s["errors"] for s in sessions) == 73
    assert results == 1164  # every call has its result
    assert sum(1 for s in sessions if s["outcome"] == "1.0") == 84
    assert {s["agent_id"] for s in sessions} == {"gpt-4o-airline"}

    again = ingest_files([f], catalog, tenant="tau", agent="gpt-4o-airline")
    assert [x.status for x in again.files] == ["skipped"]


def test_swebench_django_trajectories(research_data, lake, catalog):
    root = research_data / "swebench-verified-mini-swe-agent-gemini3pro"
    report = ingest_files([root / "trajs_django"], catalog, tenant="swe")
    assert report.ok, [x.error for x in report.failed][:3]
    assert len(report.ingested) == 231 and {x.format for x in report.files} == {"mini-swe-agent"}
    with Lake(lake) as lk:
        sessions = lk.sessions(tenant="swe")
        [(n_events, n_ids)] = lk.con.execute(
            "select count(*), count(distinct event_id) from events where tenant = 'swe'").fetchall()
    assert len(sessions) == 231
    with open(root / "results_summary.csv") as fh:
        django = {r["instance_id"] for r in csv.DictReader(fh) if r["instance_id"].startswith("django__")}
    assert {s["session_id"] for s in sessions} == django
    # results_summary.csv beside the trajectories is joined at ingest: the outcome is the evaluation's label
    assert {s["outcome"] for s in sessions} == {"resolved", "unresolved"}
    assert sum(s["outcome"] == "resolved" for s in sessions) == 179
    assert all(s["tool_calls"] > 0 for s in sessions)
    assert sum(s["errors"] for s in sessions) > 0
    assert n_events == n_ids == sum(s["events"] for s in sessions)
    # real timestamps (Nov 2025 runs), not synthetic ones
    assert min(s["started_at"] for s in sessions).year == 2025
