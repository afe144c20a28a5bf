"""`dreams outcomes` on a generated lake with time-ordered recurrence (dreaming.scenarios.recurrence).

A pip mistake and a migrations mistake recur daily; a dream mines both and its memories are promoted; after
the promotion the pip mistake stops and the migrations one keeps recurring. `outcomes` credits the first,
flags the second, with the exact counts the plan holds.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.models import utcnow
from dreaming.outcomes import stats
from dreaming.outcomes.tracking import outcomes
from dreaming.promotion import promote
from dreaming.scenarios.recurrence import carrying, daily, spaced, write_recurrence
from dreaming.stores import StoreService
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

BOTH = ("mistake:pip", "mistake:migrate")


def _dream_and_promote(cat: Catalog) -> None:
    svc = DreamService(cat)
    d = svc.create("s", Selection(all_new=True), output_behavior="update_existing")
    inputs = svc.read(d.id)
    svc.output(inputs, svc.curate(inputs))
    d = promote(cat, d.id, decided_by="test")
    if d.promotion.state == "awaiting_approval":  # the gate asks a person: approve everything
        d = promote(cat, d.id, decided_by="test")
    assert d.promotion.state == "promoted", d.promotion


@pytest.fixture
def recurred(lake_both):
    """8 days before the promotion (a session a day with both mistakes, one filler a day), then 16 sessions
    after it (8 with the migrations mistake only, 8 filler). Returns (catalog, before plans, after plans)."""
    return build_recurred(lake_both)  # the catalog on SQLite and on PostgreSQL (tests/pg.py)


def build_recurred(lake):
    """The ``recurred`` scenario on ``lake``: store ``s``, one promoted dream (also tests/e2e/test_ui.py)."""
    now = utcnow()
    before = daily("sesn_b", now - timedelta(days=8), 8, BOTH) + daily("sesn_f", now - timedelta(days=8, hours=-2), 8)
    write_recurrence(lake, before)
    cat = Catalog(lake)
    StoreService(cat).create("s", scope="acme")
    _dream_and_promote(cat)
    at = cat.get_dream(cat.list_dreams()[0].id).promotion.decided_at
    after = (spaced("sesn_a", at + timedelta(minutes=1), 8, timedelta(minutes=10), ("mistake:migrate",))
             + spaced("sesn_g", at + timedelta(minutes=5), 8, timedelta(minutes=10)))
    write_recurrence(lake, after, seed=1)
    return cat, before, after


def _entry(report: dict, path_part: str) -> dict:
    found = [e for e in report["memories"] if path_part in e["path"]]
    assert len(found) == 1, [e["path"] for e in report["memories"]]
    return found[0]


def test_credits_the_mistake_that_stopped_and_flags_the_one_that_recurs(recurred):
    cat, before, after = recurred
    rep = outcomes("s", catalog=cat)
    assert rep["sessions"] == len(before) + len(after) == 32
    pip, mig = _entry(rep, "pip"), _entry(rep, "undefinedtable")
    assert pip["kind"] == mig["kind"] == "mistake"
    assert pip["before"]["sessions"] == mig["before"]["sessions"] == 16
    assert pip["before"]["count"] == len(carrying(before, "mistake:pip")) == 8
    assert pip["after"] == {**pip["after"], "sessions": 16, "count": 0}
    assert pip["verdict"] == stats.CREDITED and pip["why"].startswith("vanished")
    assert mig["before"]["count"] == 8
    assert mig["after"]["sessions"] == 16 and mig["after"]["count"] == len(carrying(after, "mistake:migrate")) == 8
    assert mig["verdict"] == stats.NOT_HELPING
    # the Wilson interval of 0 of 16 (scipy), and of 8 of 16
    assert pip["after"]["low"] == 0.0 and pip["after"]["high"] == pytest.approx(0.1936, abs=1e-3)
    assert mig["after"]["low"] == pytest.approx(0.2799, abs=1e-3) and mig["after"]["high"] == pytest.approx(0.7201, abs=1e-3)
    assert rep["verdicts"][stats.CREDITED] >= 1 and rep["verdicts"][stats.NOT_HELPING] >= 1
    assert len(rep["promotions"]) == 1 and rep["promotions"][0]["version"] == 2


def test_too_early_with_few_sessions_after(recurred):
    cat, _, _ = recurred
    rep = outcomes("s", catalog=cat, min_after=17)
    assert {_entry(rep, "pip")["verdict"], _entry(rep, "undefinedtable")["verdict"]} == {stats.TOO_EARLY}


def test_daily_figures_and_top_patterns(recurred):
    cat, before, after = recurred
    rep = outcomes("s", catalog=cat)
    days = rep["daily"]
    assert sum(d["sessions"] for d in days) == 32
    errs = sum(round(d["error_rate"] * d["sessions"]) for d in days)
    assert errs == 8 + 8  # the sessions with a tool error: 8 before (both mistakes), 8 after (migrations)
    assert all(d["with_outcome"] == d["sessions"] and d["success_rate"] == 1.0 for d in days)
    assert all(d["tool_calls_per_session"] >= 1 for d in days)
    top = {t["memory"]: t for t in rep["top_patterns"] if t["kind"] == "failure"}
    mig = next(t for t in rep["top_patterns"] if t["memory"] and "undefinedtable" in t["memory"])
    assert mig["sessions"] == 16 and mig["covered"]
    assert any("pip" in (m or "") for m in top)


def test_since_limits_the_window(recurred):
    cat, _, after = recurred
    rep = outcomes("s", catalog=cat, since=after[0].start - timedelta(minutes=1))
    pip = _entry(rep, "pip")
    assert rep["sessions"] == 16 and pip["before"]["sessions"] == 0 and pip["verdict"] == stats.TOO_EARLY


def test_wilson_and_verdict_rules():
    r = stats.rate(0, 0)
    assert r.rate is None and r.low is None
    assert stats.verdict(stats.rate(5, 10), stats.rate(0, 4))[0] == stats.TOO_EARLY
    assert stats.verdict(stats.rate(5, 10), stats.rate(0, 20))[0] == stats.CREDITED
    assert stats.verdict(stats.rate(1, 10), stats.rate(0, 6))[0] == stats.TOO_EARLY  # 0 of 6 cannot beat 10 %
    assert stats.verdict(stats.rate(5, 10), stats.rate(5, 10))[0] == stats.NOT_HELPING
    assert stats.verdict(stats.rate(1, 10), stats.rate(9, 10), "up")[0] == stats.CREDITED
    assert stats.verdict(stats.rate(5, 10), stats.rate(5, 10), "up")[0] == stats.NOT_HELPING


def test_cli_json_and_html(recurred, tmp_path):
    from typer.testing import CliRunner

    from dreaming.cli import app

    html = tmp_path / "out.html"
    res = CliRunner().invoke(app, ["outcomes", "s", "--json", "--html", str(html)])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert {e["verdict"] for e in rep["memories"] if e["verdict"]} >= {stats.CREDITED, stats.NOT_HELPING}
    text = html.read_text()
    assert "<h2>memories</h2>" in text
    # self-contained: the charts are inline SVG (matplotlib), no script and nothing fetched from a network
    assert "<script" not in text and not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    import xml.etree.ElementTree as ET

    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == 2  # the rates per day and the most recurring patterns
    words = [" ".join("".join(ET.fromstring(s).itertext()).split()) for s in svgs]
    assert "v2" in words[0] and "error rate" in words[0]  # the promotion marked, the error rate drawn
    assert any(e["pattern"] and e["pattern"][:20] in words[1] for e in rep["memories"])
    from dreaming.outcomes.charts import page
    assert page(rep) == text  # deterministic: the same report writes the same page


def test_cli_unknown_store_is_exit_2(lake):
    from typer.testing import CliRunner

    from dreaming.cli import app

    res = CliRunner().invoke(app, ["outcomes", "nope"])
    assert res.exit_code == 2


def test_markdown_artifact_text(recurred):
    from dreaming.outcomes.artifact import markdown, publish, sparkline

    cat, _, _ = recurred
    rep = outcomes("s", catalog=cat)
    md = markdown(rep)
    assert "| v2 | `/mistakes/pip-error-externally-managed-environment.md` | 8/16" in md
    assert "credited" in md and "not helping" in md
    assert sparkline([0.0, 0.5, 1.0, None]) == "▁▅█ "
    assert publish(rep) is None  # outside a flow run nothing is published


@pytest.mark.flow
def test_published_as_a_prefect_artifact_in_a_flow(recurred, prefect_harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from dreaming.outcomes.artifact import record

    @flow
    def nightly_outcomes():
        return record("s")["verdicts"]

    verdicts = nightly_outcomes()
    assert verdicts[stats.CREDITED] >= 1
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["outcomes-s"])))
    assert arts and arts[0].type == "markdown" and "not helping" in str(arts[0].data)


def test_patterns_of_workflows_preferences_and_rules():
    from dreaming import ids
    from dreaming.curators.rules.similarity import norm_text
    from dreaming.models import Memory, Source
    from dreaming.outcomes.patterns import SessionPatterns
    from dreaming.signals import Signals

    def seq(sid, tools):
        return {"session_id": sid, "tools": tools,
                "tool_events": [{"event_id": f"{sid}-{i}", "failed": False} for i in range(len(tools))]}

    said = "Always use uv, never pip"
    sig = Signals(
        tool_sequences=[seq("s1", ["deploy", "migrate", "verify"]), seq("s2", ["deploy", "verify", "migrate"])],
        preferences=[{"session_id": "s1", "event_id": "e1", "text": said, "key": "package-manager", "voice": "team",
                      "in_task": False},
                     {"session_id": "s3", "event_id": "e3", "text": said, "key": None, "voice": "user:42",
                      "in_task": False}],  # a served customer's words are about their request: not counted
        corrections=[{"session_id": "s2", "event_id": "e2", "text": f"No. {said}. Thanks", "voice": "team"}])
    sp = SessionPatterns(sig)
    wf = Memory(path="/workflows/deploy.md", content="Sequence …", kind="workflow",
                key="workflow:" + ids.sha256_text("deploy\x1fmigrate\x1fverify")[:16])
    keys = sp.of_memory(wf)
    assert sp.shows("s1", keys) and not sp.shows("s2", keys)
    pref = Memory(path="/preferences/pm.md", content=f"{said}.", kind="preference", key="package-manager",
                  sources=[Source(session_id="s1", event_id="e1")])
    pk = sp.of_memory(pref)
    assert ("key", "package-manager") in pk and ("stmt", norm_text(said)) in pk
    assert sp.shows("s1", pk) and sp.shows("s2", pk) and not sp.shows("s3", pk)
    rule = Memory(path="/rules/uv.md", content=f"{said}.", kind="preference",
                  key="rule:" + ids.sha256_text(norm_text(said))[:16])
    assert sp.shows("s2", sp.of_memory(rule))  # the corrections miner's key, rebuilt from the person's words
    note = Memory(path="/notes/x.md", content="hand-written", kind="note")
    assert sp.of_memory(note) == set()
