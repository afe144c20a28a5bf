"""The fast subset of bench/chaos_ingest.py's fuzzer: malformed inputs over all four adapters.

Each case must end ingested (every line in the lake or reported), skipped, or failed with a
message naming file and line — never an internal error, never a silent drop.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dreaming.ingest import ingest_files
from dreaming.lake import Lake

_spec = importlib.util.spec_from_file_location(
    "chaos_ingest", Path(__file__).resolve().parents[1] / "bench" / "chaos_ingest.py")
chaos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chaos)

CASES = chaos.fuzz_cases(104, seed=7)
OK = {"refused_naming_file_and_line", "refused_with_field", "ingested", "ingested_with_reported_lines",
      "skipped_files"}


def test_the_cases_cover_every_adapter_and_mutation():
    assert {f for f, _, _ in CASES} == {"anthropic", "claude-code", "openai", "mini-swe-agent"}
    assert len({m for _, m, _ in CASES}) == 12


@pytest.mark.parametrize("k", range(len(CASES)), ids=[f"{k}-{f}-{m}" for k, (f, m, _) in enumerate(CASES)])
def test_fuzzed_input_is_ingested_reported_or_refused_with_its_line(tmp_path, lake, catalog, k):
    fmt, mut, data = CASES[k]
    p = tmp_path / f"case.{'jsonl' if chaos.base_docs()[fmt][0] == 'jsonl' else 'json'}"
    p.write_bytes(data)
    [res] = ingest_files([p], catalog).files
    raws = set()
    if res.status == "ingested":
        with Lake(lake) as lk:
            raws = {r[0] for r in lk.con.execute("select raw from events").fetchall()}
    verdict, detail = chaos.classify(p, res, res, raws)
    assert verdict in OK, (verdict, detail)
    if res.status == "failed":
        assert catalog.list_snapshots() == [] and not list(lake.home.rglob("*.parquet"))


def test_a_clean_case_ingests_every_line(tmp_path, lake, catalog):
    """The check above can fail: the unmutated transcript must come back ingested, all lines matched."""
    import json

    kind, recs = chaos.base_docs()["anthropic"]
    p = tmp_path / "clean.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    [res] = ingest_files([p], catalog).files
    with Lake(lake) as lk:
        raws = {r[0] for r in lk.con.execute("select raw from events").fetchall()}
    assert chaos.classify(p, res, res, raws)[0] == "ingested"
    assert chaos.classify(p, res, res, raws - {json.dumps(recs[2])})[0] == "silent_drops"
