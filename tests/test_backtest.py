"""`dreams backtest` on a generated lake with a known split (dreaming.scenarios.recurrence).

Before the split a pip mistake and a commit-style rule recur daily; after it they recur in 5 sessions
(covered by what a dream over the history before the split writes) and a rate-limit mistake and a branch
rule appear in 3 others (new). The coverage the backtest reports equals that planted truth, and nothing is
written to the catalog or the store.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from dreaming.catalog import Catalog
from dreaming.outcomes.backtest import backtest, rolling_splits
from dreaming.scenarios.recurrence import carrying, daily, write_recurrence
from dreaming.stores import StoreService
from tests.factories import T0

OLD = ("mistake:pip", "pref:commit-style")
NEW = ("mistake:429", "pref:branch")
SPLIT = T0 + timedelta(days=5) - timedelta(hours=9)  # midnight before day 5


@pytest.fixture
def history(lake):
    plans = (daily("sesn_h", T0, 5, OLD) + daily("sesn_x", T0 + timedelta(hours=3), 5)
             + daily("sesn_o", T0 + timedelta(days=5), 5, OLD) + daily("sesn_n", T0 + timedelta(days=5, hours=2), 3, NEW))
    write_recurrence(lake, plans)
    cat = Catalog(lake)
    StoreService(cat).create("s", scope="acme")
    return cat, plans


def test_coverage_equals_the_planted_truth(history):
    cat, plans = history
    versions = cat.list_versions(cat.get_store("s")["id"])
    bt = backtest("s", split=SPLIT, catalog=cat)
    (row,) = bt["splits"]
    after = [p for p in plans if p.start >= SPLIT]
    assert row["sessions_before"] == 10 and row["sessions_after"] == len(after) == 8
    covered = len([s for s in carrying(after, "mistake:pip")])
    new = len(carrying(after, "mistake:429"))
    assert row["failures"] == {"covered": covered, "new": new, "coverage": round(covered / (covered + new), 4)}
    assert (covered, new) == (5, 3)
    assert row["corrections"]["covered"] == len(carrying(after, "pref:commit-style")) == 5
    assert row["corrections"]["new"] == len(carrying(after, "pref:branch")) == 3
    kinds = {m["kind"] for m in row["memory_list"] if m["patterned"]}
    assert {"mistake", "preference"} <= kinds
    assert row["tokens"] == sum(m["tokens"] for m in row["memory_list"]) > 0
    top = {t["pattern"]: t for t in row["top_patterns"]}
    assert any(t["covered"] and t["sessions"] == 5 for t in top.values())
    assert any(not t["covered"] and t["sessions"] == 3 for t in top.values())
    # nothing was written: no dream, no version
    assert cat.list_dreams(include_archived=True) == []
    assert cat.list_versions(cat.get_store("s")["id"]) == versions


def test_a_split_before_everything_covers_nothing(history):
    cat, plans = history
    (row,) = backtest("s", split=T0 - timedelta(days=1), catalog=cat)["splits"]
    assert row["sessions_before"] == 0 and row["memories"] == 0 and row["tokens"] == 0
    assert row["failures"]["covered"] == 0 and row["failures"]["new"] == 13  # 10 pip sessions, 3 rate-limit ones


def test_rolling_splits_grow_coverage(history):
    cat, _ = history
    bt = backtest("s", every=timedelta(days=2), catalog=cat)
    splits = [s["split"][:10] for s in bt["splits"]]
    assert splits == ["2026-11-04", "2026-11-06", "2026-11-08", "2026-11-10"]
    before = [s["sessions_before"] for s in bt["splits"]]
    assert before == sorted(before) and before[0] == 4
    assert all(s["failures"]["covered"] > 0 for s in bt["splits"])


def test_rolling_split_dates():
    days = rolling_splits(T0, T0 + timedelta(days=7), timedelta(days=7))
    assert [d.isoformat() for d in days] == ["2026-11-09T00:00:00+00:00"]
    assert rolling_splits(T0, T0 + timedelta(hours=3), timedelta(days=1)) == []


def test_cli(history, tmp_path):
    from typer.testing import CliRunner

    from dreaming.cli import app

    html = tmp_path / "bt.html"
    res = CliRunner().invoke(app, ["backtest", "--store", "s", "--split", SPLIT.date().isoformat(), "--json",
                                   "--html", str(html)])
    assert res.exit_code == 0, res.output
    bt = json.loads(res.stdout)
    assert bt["splits"][0]["failures"]["covered"] == 5 and "covered" in html.read_text()
    for args in (["backtest", "--store", "s"], ["backtest", "--store", "s", "--split", "7d"],
                 ["backtest", "--store", "s", "--every", "soon"], ["backtest", "--store", "nope", "--every", "7d"],
                 ["backtest", "--store", "s", "--every", "7d", "--curator", "nope"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
