"""A hand-written instruction file in the store is consolidated rule by rule (issue 13): a rule the sessions
contradict is superseded with evidence, one they repeat gains evidence instead of a second memory."""

from __future__ import annotations

from datetime import timedelta

from dreaming.curators.base import CurationInput
from dreaming.curators.rules import RulesCurator
from dreaming.instructions_file import split_instruction_file
from dreaming.lake import Lake
from dreaming.policy import Policy
from dreaming.signals import extract_signals
from tests.factories import T0, write_sessions

CLAUDE_MD = """# Project notes

## Testing

- Run the tests with `pytest -q` before every commit.
- Keep fixtures in `tests/conftest.py`.

## Style

- Use 4 spaces for indentation.
"""


def _session(i: int, command: str) -> dict:
    return {"session_id": f"s{i}", "start": T0 + timedelta(hours=i), "outcome": "resolved", "events": [
        ("user", f"Fix bug {i} in the admin changelist for models with many related objects"),
        ("tool_use", "bash", {"command": f"cd /testbed && {command}"}),
        ("tool_result", "<returncode>0</returncode><output>OK</output>"),
    ]}


def _curate(lake, base, sessions):
    write_sessions(lake, sessions)
    ids_ = [s["session_id"] for s in sessions]
    with Lake(lake) as lk:
        sig = extract_signals(lk.con, ids_, Policy())
    inp = CurationInput(dream_id="drm_t", store={"id": "memstore_t"}, base=base, session_ids=ids_, signals=sig,
                        instructions=None, policy=Policy(), now=T0 + timedelta(days=2), age_out=False)
    return RulesCurator().curate(inp)


def test_a_rule_the_sessions_contradict_is_superseded_with_evidence(lake):
    base = split_instruction_file("CLAUDE.md", CLAUDE_MD)
    (rule,) = [m for m in base if "pytest -q" in m.content]
    sessions = [_session(i, f"./tests/runtests.py app{i} --verbosity 2") for i in range(3)]
    res = _curate(lake, base, sessions)
    (sup,) = [c for c in res.changes if c.op == "supersede"]
    assert sup.memory_id == rule.memory_id and sup.key == rule.key
    # named after its new first line, in the same file and heading (the old name would contradict the text)
    assert rule.path == "/CLAUDE.md/testing/run-the-tests-with-pytest-q-before-every.md"
    assert sup.path == "/CLAUDE.md/testing/run-the-tests-with-tests-runtests-py-verbosity.md"
    assert sup.after.startswith("Run the tests with `./tests/runtests.py --verbosity` followed by the tests")
    assert "which no session ran" in sup.reason and {s.session_id for s in sup.evidence} == {"s0", "s1", "s2"}
    assert not [c for c in res.changes if c.op == "add"]  # replaced in place, not a second memory
    untouched = {m.memory_id for m in base} - {rule.memory_id}
    assert not [c for c in res.changes if c.memory_id in untouched and c.op != "keep"]


def test_a_rule_the_sessions_follow_gains_evidence(lake):
    base = split_instruction_file("CLAUDE.md", CLAUDE_MD)
    (rule,) = [m for m in base if "pytest -q" in m.content]
    res = _curate(lake, base, [_session(i, f"pytest -q tests/test_{i}.py") for i in range(3)])
    (upd,) = [c for c in res.changes if c.memory_id == rule.memory_id]
    assert upd.op == "update" and {s.session_id for s in upd.evidence} == {"s0", "s1", "s2"}
    assert not [c for c in res.changes if c.op in ("add", "supersede")]


def test_the_test_runner_is_learned_when_agents_tried_another_one_first(lake):
    def sess(i):
        return {"session_id": f"r{i}", "start": T0 + timedelta(hours=i), "outcome": "resolved", "events": [
            ("user", f"Fix bug {i} in the queryset union ordering when combined with values_list"),
            ("tool_use", "bash", {"command": "python -m pytest tests/queries"}),
            ("tool_result", "<returncode>1</returncode><output>/usr/bin/python: No module named pytest</output>", True),
            ("tool_use", "bash", {"command": f"cd /testbed && ./tests/runtests.py queries{i}"}),
            ("tool_result", "<returncode>0</returncode><output>OK</output>"),
        ]}
    res = _curate(lake, [], [sess(i) for i in range(3)])
    (wf,) = [c for c in res.changes if c.path == "/workflows/run-the-tests.md"]
    assert wf.op == "add" and wf.support == 3
    assert wf.after.startswith("Run the tests with `./tests/runtests.py` followed by the tests to run, e.g. "
                               "`./tests/runtests.py queries")


def test_a_rule_a_person_named_keeps_its_path_when_superseded(lake):
    """Only a name derived from the rule's text follows the text; a path a person chose stays."""
    base = split_instruction_file("CLAUDE.md", CLAUDE_MD)
    (rule,) = [m for m in base if "pytest -q" in m.content]
    named = rule.model_copy(update={"path": "/CLAUDE.md/testing/how-we-test.md"})
    base = [named if m.memory_id == rule.memory_id else m for m in base]
    res = _curate(lake, base, [_session(i, f"./tests/runtests.py app{i} --verbosity 2") for i in range(3)])
    (sup,) = [c for c in res.changes if c.op == "supersede"]
    assert sup.path == "/CLAUDE.md/testing/how-we-test.md"
