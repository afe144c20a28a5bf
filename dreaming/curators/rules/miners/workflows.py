"""Workflows: tool sequences that successful tasks converged on (docs/curation.md, step 5)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from dreaming import ids, safety
from dreaming.signals import failures
from dreaming.curators.rules.common import _clean, _confidence, _contains, _shifted, _slug, _sources, _wilson_lower


def _runs(s: dict) -> tuple[list[list[str]], list[list[int]], list[bool]]:
    """A session's runs of successful calls: a failed call ends a run (what recovered from it is the
    mistake family's business, and steps on either side of it never ran back to back); repeats of one
    tool inside a run are collapsed. Returns the runs, each step's index in ``tool_events``, and
    whether each run is a recovery (it starts right after a failed call)."""
    tools, events = s.get("tools") or [], s.get("tool_events") or []
    runs: list[list[str]] = [[]]
    starts: list[list[int]] = [[]]
    recovery = [False]
    for i, t in enumerate(tools):
        if t is None:
            continue
        if i < len(events) and events[i].get("failed"):
            if runs[-1]:
                runs.append([])
                starts.append([])
                recovery.append(True)
            recovery[-1] = True
            continue
        if not runs[-1] or runs[-1][-1] != t:
            runs[-1].append(t)
            starts[-1].append(i)
    keep = [k for k, r in enumerate(runs) if r]
    return [runs[k] for k in keep], [starts[k] for k in keep], [recovery[k] for k in keep]

_NO_OP = re.compile(r"(?i)^(?:think|noop|no_op|wait|sleep|echo|true|clear)$")
_LOOK = re.compile(r"(?i)^(?:get|list|search|find|read|view|show|lookup|look_up|fetch|describe|query|glob|grep|ls|cat|nl|"
                   r"sed|head|tail|less|wc|pwd|tree|which|stat|file)(?:_\w+)?$")


def _step(t: str) -> str:
    return t.split(":", 1)[1] if ":" in t else t


_PLUMBING = re.compile(r"(?i)^(?:write-file|rm|rmdir|mkdir|touch|cp|mv|cd|chmod)$")


def _acts(g: tuple) -> bool:
    """A workflow does things: no no-op step (``think``), and at least two steps that are not looking around
    (a lookup, a read, a search), file plumbing (writing a scratch file, ``rm``) or a scratch script the
    agent wrote for itself (``reproduce_issue.py``). A chain of lookups ending in one action is how any agent
    takes that action, not a workflow."""
    if any(_NO_OP.match(_step(t)) for t in g):
        return False
    doing = [t for t in g if not _LOOK.match(_step(t)) and not _PLUMBING.match(_step(t))
             and not re.search(failures.REPRO_RE, _step(t))]
    return len(doing) >= 2


def _grams(run, runs: list[list[str]], recovery: list[bool]):
    """Distinct n-grams of the runs. None starts at the first call of a recovery run: that call is the
    workaround of the failure before it (the mistake memory says "use Y instead"), and a "workflow"
    that opens with it is that recovery with whatever came next glued on."""
    p = run.policy
    seen: set[tuple] = set()
    for ri, steps in enumerate(runs):
        for n in range(p.min_workflow_length, p.max_workflow_length + 1):
            for i in range(1 if recovery[ri] else 0, len(steps) - n + 1):
                g = tuple(steps[i: i + n])
                if g in seen or len(set(g)) < 2:
                    continue
                seen.add(g)
                yield g, ri, i

def mine(run) -> None:
    """Converged workflows (docs/curation.md, step 5): n-grams of successful runs that recur in
    ``min_sessions`` successful sessions, are *cohesive* (each step directly follows the previous one
    in most successful sessions that use both, by a Wilson lower bound), are not as common in failed
    sessions, and are not a minor variant of another kept workflow (one of each nested or shifted
    pair survives)."""
    p = run.policy
    gram_sessions: dict[tuple, set[str]] = defaultdict(set)
    first_ev: dict[tuple, dict[str, dict]] = defaultdict(dict)
    agents: dict[tuple, set[str]] = defaultdict(set)
    tool_sessions: dict[str, set[str]] = defaultdict(set)  # successful sessions using a tool (ok calls)
    pair_sessions: dict[tuple, set[str]] = defaultdict(set)  # successful sessions where b directly follows a
    failed_runs: list[tuple[list[list[str]], list[bool]]] = []
    for s in run.inp.signals.tool_sequences:
        if s["session_id"] not in run.input_sessions or s.get("success") is None:
            continue
        runs, starts, recovery = _runs(s)
        if not s.get("success"):
            failed_runs.append((runs, recovery))
            continue
        events = s.get("tool_events") or []
        for steps in runs:
            for t in steps:
                tool_sessions[t].add(s["session_id"])
            for a, b in zip(steps, steps[1:], strict=False):
                pair_sessions[(a, b)].add(s["session_id"])
        for g, ri, i in _grams(run, runs, recovery):
            if any(run._ignored(t) for t in g) or not _acts(g):
                continue
            gram_sessions[g].add(s["session_id"])
            agents[g].add(s.get("agent_id") or "")
            k = starts[ri][i]
            ev = events[k] if k < len(events) else {}
            first_ev[g][s["session_id"]] = {"session_id": s["session_id"], **ev}
    task = {c["session_id"]: c["context"] for c in run.inp.signals.contexts}
    frequent = {g: ss for g, ss in gram_sessions.items() if len({task.get(s, s) for s in ss}) >= p.min_sessions}
    # distinctive: cohesive, and not as common among failed sessions
    failed_support: Counter = Counter()
    for runs, recovery in failed_runs:
        for g, _, _ in _grams(run, runs, recovery):
            if g in frequent:
                failed_support[g] += 1
    cohesion_of: dict[tuple, float] = {}

    def cohesion(a: str, b: str) -> float:
        """Of the successful sessions that use both a and b, the share where b directly follows a, as
        the Wilson lower bound (z = 1): two or three sessions that happen to put filler steps side by
        side are not evidence of a converged order (2 of 2 -> 0.67, 3 of 3 -> 0.75, 2 of 3 -> 0.39)."""
        if (a, b) not in cohesion_of:
            cohesion_of[(a, b)] = _wilson_lower(len(pair_sessions[(a, b)]),
                                                len(tool_sessions[a] & tool_sessions[b]))
        return cohesion_of[(a, b)]

    cands = []
    for g, ss in frequent.items():
        if min(cohesion(a, b) for a, b in zip(g, g[1:], strict=False)) < p.workflow_min_cohesion:
            continue  # a step that is only sometimes next: generic filler glued to the sequence
        if failed_support[g] >= len(ss):
            run.notes.append(f"workflow {' > '.join(g)}: as common in failed sessions "
                              f"({failed_support[g]}) as in successful ones ({len(ss)}); not proposed")
            continue
        cands.append((g, ss))
    # nested pairs: when one candidate contains another, only one survives. The longer one when it
    # keeps at least ``workflow_subsume_ratio`` of the shorter one's sessions (it is the whole
    # workflow), else the shorter one (the longer is a minor variant with an extra step). A candidate
    # that is a kept workflow shifted by one step (the same steps but one, "B C D E" next to "A B C D")
    # is a variant too and loses to the better supported one.
    cands.sort(key=lambda kv: (-len(kv[1]), -len(kv[0]), kv[0]))
    kept: list[tuple] = []
    for g, ss in cands:
        replaces, lose = [], False
        for k, (kg, kss) in enumerate(kept):
            if _contains(g, kg) and len(ss) >= p.workflow_subsume_ratio * len(kss):
                replaces.append(k)  # the kept shorter one is part of this longer workflow
            elif _contains(g, kg) or _contains(kg, g) or _shifted(g, kg):
                lose = True  # a minor variant of a kept workflow (extra or shifted step), or a part of it
                break
        if not lose:
            kept = [kv for k, kv in enumerate(kept) if k not in replaces] + [(g, ss)]
    kept.sort(key=lambda kv: (-len(kv[1]), -len(kv[0]), kv[0]))
    for g, ss in kept[: p.max_workflows]:
        n = len(ss)
        steps = " → ".join(f"`{_clean(t, 60)}`" for t in g)
        content = f"Sequence that successful tasks converged on: {steps}."  # support and agents are fields
        key = "workflow:" + ids.sha256_text("\x1f".join(t.lower() for t in g))[:16]
        # an agent that read external content (a page, a download) and then acted: the steps may be
        # the page's instructions, not the agent's own judgement
        fetched = any(safety.fetches_external(t) for t in g) or any(
            sid in run.fetched_at and first_ev[g][sid].get("ts") is not None
            and first_ev[g][sid]["ts"] >= run.fetched_at[sid] for sid in ss)
        run._propose(kind="workflow", key=key, path=f"/workflows/{_slug(' '.join(g))}.md", content=content,
                      evidence=_sources([first_ev[g][sid] for sid in sorted(ss)]), support=n,
                      confidence=_confidence(n), taint="untrusted" if fetched else "trusted",
                      reason=f"tool sequence {' > '.join(g)} shared by {n} successful sessions")

