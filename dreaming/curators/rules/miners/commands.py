"""Commands: how this project runs its tests, as the sessions converged on it.

The first thing a new session needs and most often gets wrong is the project's own way of running its
tests (``./tests/runtests.py validators`` in Django, ``uv run pytest -q`` elsewhere). A test runner — a
shell command matching ``failures.TEST_RE`` — that ``SHARE`` of the tasks (and at least
``policy.min_sessions``) ran, and that succeeded in most of its runs, is written as one instruction
with a real example from the transcripts: "Run the tests with `./tests/runtests.py` followed by the
tests to run, e.g. `./tests/runtests.py validators`." Flags most runs pass are part of the command. One
memory per shell tool: the runner most tasks used, written only when agents did not know it — in
``policy.min_sessions`` tasks a run with another runner failed before the first successful one (when
every session used it right from the start, the memory would tell agents what they already do). A stored rule that names another runner, one no session
ran (a hand-written CLAUDE.md saying "run `pytest`"), is superseded by it: the team moved.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from dreaming import ids, safety
from dreaming.curators.rules.common import _cap, _confidence, _sources
from dreaming.models import Change
from dreaming.signals import failures, shell

SHARE = 0.3
_TEST_RE = re.compile(failures.TEST_RE)
_ABS = re.compile(r"(?:^|\s)/\S+")


def _form(sh: shell.Shell) -> tuple[str, ...]:
    """The runner as invoked: the words up to the test program (``python3 -m pytest``, ``./tests/runtests.py``)."""
    words = list(sh.argv)
    for i, w in enumerate(words):
        base = w.rsplit("/", 1)[-1]
        if base == sh.label or (i > 0 and words[i - 1] == "-m" and w.split(".")[0] == sh.label):
            return tuple(words[: i + 1])
    return tuple(words[:1])


def mine(run) -> None:
    if run.policy.max_workflows <= 0:  # a converged command is a workflow memory
        return
    sig = run.inp.signals
    task = {c["session_id"]: c["context"] for c in sig.contexts}
    by_runner: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in sig.test_runs:
        if r["session_id"] in run.input_sessions and r.get("command"):
            tool, _, label = r["label"].partition(":")
            by_runner[(tool, label)].append(r)
    n_tasks = len(set(task.get(s, s) for s in run.input_sessions)) or 1
    best: dict[str, tuple] = {}
    for (tool, label), evs in sorted(by_runner.items()):
        cmds = [(e, e["command"]) for e in evs if not safety.dangerous(e["command"])]
        if not cmds:
            continue
        tasks = {task.get(e["session_id"], e["session_id"]) for e, _ in cmds}
        ok = [(e, c) for e, c in cmds if not e.get("failed")]
        if len(tasks) < max(run.policy.min_sessions, SHARE * n_tasks) or len(ok) < 0.5 * len(cmds):
            continue
        if run._ignored(label):
            continue
        if tool not in best or len(tasks) > len(best[tool][1]):
            best[tool] = (label, tasks, ok)
    for tool in sorted(best):
        label, tasks, ok = best[tool]
        parsed = [(e, c, shell.parse(c)) for e, c in ok]
        form = Counter(_form(sh) for _, _, sh in parsed).most_common(1)[0][0]
        flags = Counter(f for _, _, sh in parsed for f in set(sh.flags))
        common = [f for f, k in flags.most_common(3) if k >= 0.5 * len(parsed) and not _ABS.search(f)]
        runner = " ".join((*form, *common))
        examples = Counter(" ".join(sh.argv) for _, _, sh in parsed
                           if tuple(sh.argv[: len(form)]) == form and len(sh.argv) > len(form)
                           and not _ABS.search(" ".join(sh.argv[len(form):])) and len(" ".join(sh.argv)) <= 80)
        example = min(examples.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0] if examples else None
        content = (f"Run the tests with `{runner}` followed by the tests to run, e.g. `{example}`." if example
                   else f"Run the tests with `{runner}`.")
        firsts: dict[str, dict] = {}
        for e, _, _ in parsed:
            firsts.setdefault(e["session_id"], e)
        n = len(tasks)
        evidence = _sources(sorted(firsts.values(), key=lambda r: (r["ts"], r["session_id"])))
        used = {lab for (t, lab) in by_runner if t == tool}
        holder = None
        for m in run.live():
            named = _named_runner(m.content)
            if named is None:
                continue
            if named == label:
                holder = m  # the store already says it: new evidence, no second memory
            elif named not in used:
                _supersede(run, m, named, label, content, evidence, n)
                holder = holder or m
        if holder is not None and _named_runner(holder.content) != label:
            continue
        missed = _missed(sig.test_runs, label, task, run.input_sessions)
        if holder is None and len(missed) < run.policy.min_sessions:
            run.notes.append(f"tests run with `{label}` in {n} tasks, but no session tried another runner first: "
                             f"the agents know it; not written")
            continue
        run._propose(kind="workflow", key="command:test:" + ids.sha256_text(tool.lower() + "\x1f" + label)[:16],
                     path="/workflows/run-the-tests.md", content=content,
                     evidence=evidence, support=n, confidence=_confidence(n), taint="trusted",
                     reason=f"the test runner `{label}` was run in {n} of {n_tasks} tasks", existing=holder)


def _missed(test_runs: list[dict], label: str, task: dict, sessions: set[str]) -> set[str]:
    """Tasks where a test run with another runner failed before the first successful run with ``label``:
    evidence that an agent did not know how this project runs its tests."""
    out = set()
    by_session: dict[str, list[dict]] = defaultdict(list)
    for r in test_runs:
        if r["session_id"] in sessions:
            by_session[r["session_id"]].append(r)
    for sid, runs in by_session.items():
        for r in runs:
            lab = r["label"].partition(":")[2]
            if lab == label and not r["failed"]:
                break
            if lab != label and r["failed"]:
                out.add(task.get(sid, sid))
                break
    return out


def _named_runner(text: str) -> str | None:
    """The test runner a memory tells the agent to use (in backticks or a code fence), or None."""
    for code in re.findall(r"```(?:\w+)?\n(.*?)```|`([^`\n]+)`", text or "", re.S):
        cmd = code[0] or code[1]
        if _TEST_RE.search(cmd):
            return shell.parse(cmd.strip().splitlines()[0]).label
    return None


def _supersede(run, m, named: str, label: str, content: str, evidence: list, n: int) -> None:
    """A stored rule names a test runner no session used, while the sessions converged on another one: the
    team moved; the rule is replaced (id, key and origin stay; a name derived from its text follows the new
    text, ``Run.path_for_new_text``; history keeps the old text)."""
    if m.pinned:
        run.notes.append(f"{m.path}: says `{named}` but the sessions run the tests with `{label}`; pinned, kept")
        return
    run.touched.add(m.memory_id)
    run.removed.add(m.memory_id)
    run.changes.append(Change(
        op="supersede", memory_id=m.memory_id, path=run.path_for_new_text(m, content), kind=m.kind, key=m.key,
        before=m.content,
        after=content, reason=(f"the store says to run the tests with `{named}`, which no session ran; {n} tasks "
                               f"ran them with `{label}`"),
        evidence=_cap(evidence, run.policy.max_evidence), support=n, confidence=_confidence(n), taint="trusted",
    ))

