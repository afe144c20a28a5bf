"""`dreams eval --real` on ../shared/research-data (skipped when absent): LoCoMo adapter and budgets."""

from __future__ import annotations

import json

import pytest

from dreaming.evaluation import realdata as R


def _conv(research_data, n: str = "26") -> tuple:
    f = research_data / "locomo10" / "conversations" / f"{n}.json"
    return f, json.loads(f.read_text(encoding="utf-8"))


def test_locomo_is_detected(research_data):
    assert R.is_locomo(research_data / "locomo10")
    assert not R.is_locomo(research_data / "tau-bench-historical" / "gpt-4o-airline.json")
    assert len(R.locomo_files(research_data / "locomo10")) == 10


def test_locomo_adapter_ingests_with_dialog_ids_as_event_ids(research_data, catalog, tmp_path):
    from dreaming.ingest import ingest_files
    from dreaming.lake import Lake

    f, conv = _conv(research_data)
    paths = R.write_locomo_jsonl(conv, "26", tmp_path / "src")
    n_sessions = sum(1 for k in conv if k.startswith("session_") and k[8:].isdigit() and conv[k])
    n_turns = sum(len(conv[k]) for k in conv if k.startswith("session_") and k[8:].isdigit())
    assert len(paths) == n_sessions
    ingest_files(paths, catalog, fmt="anthropic", tenant="locomo-26", agent="conversation")
    with Lake(catalog.settings) as lk:
        rows = lk.con.execute("SELECT event_id, role, text, ts FROM events WHERE tenant = 'locomo-26' "
                              "ORDER BY ts, seq").fetchall()
    assert len(rows) == n_turns
    dia = {t["dia_id"]: t for k in conv if k.startswith("session_") and k[8:].isdigit() for t in conv[k]}
    assert {r[0] for r in rows} == set(dia)
    first = conv["session_1"][0]
    row = next(r for r in rows if r[0] == first["dia_id"])
    assert row[1] == "user" and row[2].startswith(f"{first['speaker']}: ")
    assert rows[0][3].year == 2023


def test_baselines_cover_more_evidence_with_more_budget(research_data):
    _, conv = _conv(research_data)
    qa = conv["qa"]
    table = R.budget_table(qa, {"observations": R.observation_units(conv), "summaries": R.summary_units(conv)},
                           budgets=(500, 4000, 10 ** 7))
    by = {(r["system"], r["budget"]): r for r in table}
    for system in ("observations", "summaries"):
        covs = [by[(system, b)]["coverage"]["all"]["coverage"] for b in (500, 4000, 10 ** 7)]
        assert covs[0] <= covs[1] <= covs[2] and covs[0] < covs[2]
        assert by[(system, 500)]["tokens"] <= 500
    # unlimited summaries cite every dialog turn, so every evidence id that exists is covered
    assert by[("summaries", 10 ** 7)]["coverage"]["all"]["coverage"] > 0.95
    assert set(by[("observations", 500)]["coverage"]) >= {"1", "2", "3", "4", "all"}


@pytest.mark.flow
def test_eval_real_locomo_one_conversation(research_data, lake, prefect_harness, tmp_path):
    f, conv = _conv(research_data)
    rep = R.run_real(f, out_dir=tmp_path / "out")
    assert rep["kind"] == "locomo" and len(rep["conversations"]) == 1
    c = rep["conversations"][0]
    assert c["sessions"] == sum(1 for k in conv if k.startswith("session_") and k[8:].isdigit() and conv[k])
    systems = {r["system"] for r in c["budgets"]}
    assert systems == {"dream", "observations", "summaries"}
    for r in c["budgets"]:
        assert r["tokens"] <= r["budget"]
        assert 0.0 <= r["coverage"]["all"]["coverage"] <= 1.0
    assert (tmp_path / "out" / "results.json").is_file()
