"""Corroborating sessions: a dream of the offline curator also reads the store's already-dreamt sessions, so a
mistake whose occurrences fell into different dreams (the 100-session cap splits a team's history) is still
learned, while nothing is proposed on old evidence alone. Real lake, real DuckDB signals, the real gate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.policy import Policy
from dreaming.promotion import promote
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

lake = lake_both  # on SQLite and on PostgreSQL (tests/pg.py): the context query orders NULLs differently there

V1 = "from django.conf import settings\nsettings.configure(INSTALLED_APPS=[])\nfrom app.models import A\n"
V2 = ("import django\nfrom django.conf import settings\nsettings.configure(INSTALLED_APPS=[])\n"
      "django.setup()\nfrom app.models import A\n")
LESSON = ("When a `python` script fails with 'django.core.exceptions.AppRegistryNotReady: Apps aren't loaded yet.', "
          "add `django.setup()` to the script before it runs.")


def _repro(i: int, *, fails: bool = True) -> dict:
    """A task whose reproduction script fails until ``django.setup()`` is added (or one that never fails)."""
    run_ok = ("tool_result", "<returncode>0</returncode><output>ok</output>")
    events = [("user", f"Fix issue {i}: the admin crashes on model number {i} with a long verbose name"),
              ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{V1 if fails else V2}EOF"}),
              ("tool_result", "<returncode>0</returncode>"),
              ("tool_use", "bash", {"command": f"python3 repro_{i}.py"})]
    if fails:
        events += [("tool_result", "<returncode>1</returncode><output>Traceback (most recent call last):\n"
                                   "django.core.exceptions.AppRegistryNotReady: Apps aren't loaded yet.</output>", True),
                   ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{V2}EOF"}),
                   ("tool_result", "<returncode>0</returncode>"),
                   ("tool_use", "bash", {"command": f"python3 repro_{i}.py"})]
    return {"session_id": f"h{i}", "start": T0 + timedelta(hours=i), "events": [*events, run_ok]}


@pytest.fixture
def svc(lake):
    cat = Catalog(lake)
    StoreService(cat).create("s", scope="acme")
    return DreamService(cat)


def _dream(svc: DreamService, policy: Policy | None = None):
    """create → read → curate → output → promote (the automatic gate, then a person where it asks for one:
    a fix taken from tool output always does), as `dreams run --all` and `dreams approve` do."""
    d = svc.create("s", Selection(all_new=True), output_behavior="update_existing")
    inputs = svc.read(d.id, policy)
    svc.output(inputs, svc.curate(inputs, policy))
    d = promote(svc.catalog, d.id, "auto")
    gate = {r["name"]: r["success"] for r in d.promotion.gate["results"]} if d.promotion.gate else {}
    if d.promotion.state == "awaiting_approval":
        d = promote(svc.catalog, d.id, "alice")
    return d, (svc.changes(d.id) if d.candidate_version else []), gate


def _mistakes(changes, *ops):
    return [c for c in changes if c.kind == "mistake" and c.op in ops]


def test_a_mistake_split_across_two_dreams_is_learned_by_the_second(svc, lake):
    write_sessions(lake, [_repro(0)])
    first, changes, _ = _dream(svc)
    assert first.session_ids == ["h0"] and first.context_session_ids == []
    assert not _mistakes(changes, "add", "update")  # one task: not yet a lesson
    assert first.promotion.state == "promoted"  # the session is dreamt over all the same

    write_sessions(lake, [_repro(1)])
    second, changes, gate = _dream(svc)
    assert second.session_ids == ["h1"] and second.context_session_ids == ["h0"]
    (m,) = _mistakes(changes, "add")
    assert m.after == LESSON and m.support == 2
    assert {s.session_id for s in m.evidence} == {"h0", "h1"}  # the context session is cited, and the gate takes it
    assert gate["evidence_from_input_sessions"] is True and second.promotion.state == "promoted"
    assert "context_session_ids" in second.to_api()


def test_without_context_the_split_lesson_is_lost(svc, lake):
    """The same history with context off (``context_sessions=0``): what every dream did before."""
    off = Policy(context_sessions=0)
    write_sessions(lake, [_repro(0)])
    _dream(svc, off)
    write_sessions(lake, [_repro(1)])
    second, changes, _ = _dream(svc, off)
    assert second.context_session_ids == [] and not _mistakes(changes, "add", "update")


def test_context_alone_proposes_nothing(svc, lake):
    """Two old sessions show the mistake; the new dream's input does not: no second look at old evidence."""
    write_sessions(lake, [_repro(0), _repro(1)])
    first, changes, _ = _dream(svc)
    assert len(_mistakes(changes, "add")) == 1
    write_sessions(lake, [_repro(2, fails=False)])
    second, changes, gate = _dream(svc)
    assert second.context_session_ids == ["h0", "h1"]
    assert not _mistakes(changes, "add", "update", "supersede")


def test_a_seen_again_mistake_gains_the_new_session(svc, lake):
    write_sessions(lake, [_repro(0), _repro(1)])
    _dream(svc)
    write_sessions(lake, [_repro(2)])  # one more task hits it: with context it recurs in three
    second, changes, gate = _dream(svc)
    (m,) = _mistakes(changes, "update")
    assert [s.session_id for s in m.evidence] == ["h2"] and m.support == 3
    assert second.promotion.state == "promoted"


def test_context_is_the_most_recently_dreamt_sessions_and_capped(svc, lake):
    write_sessions(lake, [_repro(i, fails=False) for i in range(3)])
    _dream(svc)
    write_sessions(lake, [_repro(3, fails=False)])
    d = svc.create("s", Selection(all_new=True))
    assert svc.context_for(d, Policy(context_sessions=2)) == ["h0", "h1"]  # one dream: by session id
    assert svc.context_for(d, Policy(context_sessions=0)) == []
    claude = d.model_copy(update={"curator": "claude"})
    assert svc.context_for(claude, Policy()) == []  # the Claude digest is the input alone


def test_context_is_chosen_once_and_gone_sessions_are_dropped(svc, lake):
    write_sessions(lake, [_repro(0)])
    _dream(svc)
    write_sessions(lake, [_repro(1)])
    d = svc.create("s", Selection(all_new=True))
    svc.catalog.update_dream(d.id, lambda x: setattr(x, "context_session_ids", ["h0", "h_gone"]))
    inputs = svc.read(d.id)
    assert inputs.dream.context_session_ids == ["h0"]  # a session no longer in the lake is not cited
    assert svc.read(d.id).dream.context_session_ids == ["h0"]


def _table(i: int, table: str) -> dict:
    """A script that fails with 'no such table: <table>' until it creates its tables (one more line)."""
    v1 = "import django\ndjango.setup()\nfrom app.models import A\nA.objects.count()\n"
    v2 = ("import django\ndjango.setup()\nfrom django.core.management import call_command\n"
          "call_command('migrate', run_syncdb=True, verbosity=0)\nfrom app.models import A\nA.objects.count()\n")
    return {"session_id": f"t{i}", "start": T0 + timedelta(hours=i), "events": [
        ("user", f"Fix issue {i}: counting model {i} objects crashes in the admin"),
        ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{v1}EOF"}), ("tool_result", "<returncode>0</returncode>"),
        ("tool_use", "bash", {"command": f"python3 repro_{i}.py"}),
        ("tool_result", f"<returncode>1</returncode><output>Traceback (most recent call last):\n"
                        f"django.db.utils.OperationalError: no such table: {table}</output>", True),
        ("tool_use", "bash", {"command": f"cat <<'EOF' > repro_{i}.py\n{v2}EOF"}), ("tool_result", "<returncode>0</returncode>"),
        ("tool_use", "bash", {"command": f"python3 repro_{i}.py"}), ("tool_result", "<returncode>0</returncode><output>0</output>"),
    ]}


def test_a_stored_mistake_keeps_the_error_line_it_quotes(svc, lake):
    """Later sessions spell the same error with another table name more often: the memory gains them as
    evidence, but its text keeps the line it quotes (a flip between spellings is no news for a reviewer)."""
    write_sessions(lake, [_table(0, "app_article"), _table(1, "app_article")])
    _, changes, _ = _dream(svc)
    (added,) = _mistakes(changes, "add")
    assert "no such table: app_article" in added.after
    write_sessions(lake, [_table(i, "app_user") for i in range(2, 5)])
    _, changes, _ = _dream(svc)
    (upd,) = _mistakes(changes, "update")
    assert upd.after is None and {s.session_id for s in upd.evidence} == {"t2", "t3", "t4"} and upd.support == 5
