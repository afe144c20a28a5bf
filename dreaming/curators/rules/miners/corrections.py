"""Corrections: what a person said when they stopped the agent, and rules they stated outright.

Two kinds of evidence, both from a person of the agent's own team (voice ``team``: a customer's wish is
about that customer, see the preferences miner):

- a rejected or interrupted tool call followed by the person's words (``Signals.corrections``): "no,
  don't mock the database in these tests" becomes a rule, tied to the call it stopped;
- an explicit imperative statement (``Signals.preferences`` with polarity always/never/correction, not
  in the task text) that the preferences miner did not take because it was said in one task only. A
  statement about a known setting (a slot: indentation, package manager …) is left to the preferences
  miner, which keeps the latest repeated value of a slot.

One task is enough (a person's explicit word is evidence), with a lower confidence
(``ONE_TASK_CONFIDENCE``) than a repeated rule; the same rule in more tasks raises it. A correction
that is only "no" or "stop" says nothing to learn and is skipped.
"""

from __future__ import annotations

import re
from collections import defaultdict

from dreaming import ids, safety
from dreaming.curators.rules.common import _confidence, _slug, _sources
from dreaming.curators.rules.miners.preferences import as_rule
from dreaming.curators.rules.similarity import norm_text

ONE_TASK_CONFIDENCE = 0.4
_CONTENTFUL = re.compile(r"\b(?:use|don'?t|do not|never|always|instead|should|must|prefer|stop|avoid|only|keep|run"
                         r"|make sure|please)\b", re.I)
_MIN_WORDS = 4


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?;])\s+|\n+", text or "")
    return [p.strip() for p in parts if p.strip()]


def mine(run) -> None:
    sig = run.inp.signals
    unsafe = {sid for sid in safety.poisoned_sessions(sig.user_messages, {c["session_id"] for c in sig.corrections})}
    items: dict[str, list[dict]] = defaultdict(list)  # normalised rule -> rows
    for c in sig.corrections:
        if c["session_id"] not in run.input_sessions or c.get("voice", "team") != "team" or not c.get("text"):
            continue
        if c["session_id"] in unsafe or safety.dangerous(c["text"]):
            continue
        said = next((s for s in _sentences(c["text"]) if _CONTENTFUL.search(s)), None)
        if said is None or len(said.split()) < _MIN_WORDS or run._ignored(said):
            continue
        items[norm_text(said)].append({**c, "said": said, "why": "rejection"})
    taken = {norm_text(m.content) for m in run.live()} | {norm_text(ch.after or "") for ch in run.changes}
    for p in sig.preferences:
        if (p["session_id"] not in run.input_sessions or p.get("voice", "team") != "team" or p.get("injection")
                or p.get("polarity") == "prefer" or p.get("in_task") or p.get("key") or p["session_id"] in unsafe or safety.dangerous(p.get("text"))):
            continue
        if len(p["text"].split()) < _MIN_WORDS or run._ignored(p["text"]):
            continue
        items[norm_text(p["text"])].append({**p, "said": p["text"], "why": "statement"})
    for norm in sorted(items):
        rows = sorted(items[norm], key=lambda r: (r["ts"], r["session_id"], r["event_id"]))
        content = as_rule(rows[-1]["said"])
        if norm_text(content) in taken:
            continue  # the preferences miner (or the store) already holds it
        tasks = {r.get("context") or r["session_id"] for r in rows}
        n = len(tasks)
        if n >= run.policy.min_sessions and any(r["why"] == "statement" for r in rows):
            continue  # repeated statements are preferences (that miner decided on them)
        firsts: dict[str, dict] = {}
        for r in rows:
            firsts.setdefault(r["session_id"], r)
        stopped = next((r for r in rows if r["why"] == "rejection" and r.get("tool")), None)
        reason = (f"a person said this when they stopped `{stopped['tool']}`" if stopped
                  else "a person stated this rule") + (f" (in {n} tasks)" if n > 1 else " (one task)")
        key = "rule:" + ids.sha256_text(norm)[:16]
        run._propose(kind="preference", key=key, path=f"/rules/{_slug(content)}.md", content=content,
                     evidence=_sources(list(firsts.values())), support=n,
                     confidence=ONE_TASK_CONFIDENCE if n == 1 else _confidence(n), taint="user", reason=reason)
