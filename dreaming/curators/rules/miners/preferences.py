"""Preferences: rules and conventions people state, repeated across tasks and voices.

A statement is a directive sentence a person wrote (dreaming.signals.queries.preferences: not the task
text, not a summary or reminder). Who said it matters (``voice``): for an agent that works with its own
team (voice ``team``) a statement repeated in ``policy.min_sessions`` tasks is a preference (a single
explicit correction is the corrections miner's business). For an agent that serves many people (each
session names its user or persona: tau-bench's customers), what a person asks for is about their own
request ("No, I don't want travel insurance", "please use a gift card for any payment"), even when two
customers say the same: it is never a rule for the agent, and such sessions' statements are not mined.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from dreaming import safety
from dreaming.curators.rules.common import _cap, _clean, _confidence, _fold_same_message, _order_time, _slug, _sources, event_time, sessions_n
from dreaming.curators.rules.similarity import cluster_duplicates, norm_text
from dreaming.models import Change, Memory, Source
from dreaming.signals import slot_of

def as_rule(text: str) -> str:
    """A person's statement as one rule: their words, capitalised, one closing stop (no statistics: support
    and confidence are the memory's fields)."""
    t = " ".join(text.split())
    t = (_clean(t, 240) if len(t) > 240 else t).strip().rstrip(".!;")  # backticks kept: they mark commands
    return (t[:1].upper() + t[1:] + ".") if t else t


def _counted(rows: list[dict]) -> int:
    """Distinct tasks, and for people other than the team, distinct people."""
    tasks = {r.get("context") or r["session_id"] for r in rows}
    voices = {r.get("voice") or "team" for r in rows}
    return len(tasks) if voices == {"team"} else min(len(tasks), len(voices - {"team"}) + ("team" in voices))


def mine(run) -> None:
    prefs = [p for p in run.inp.signals.preferences
             if p.get("session_id") in run.input_sessions and not run._ignored(p.get("text") or "")]
    poisoned = safety.poisoned_sessions(run.inp.signals.user_messages, {p["session_id"] for p in prefs})
    injected = {p["session_id"] for p in prefs if p.get("injection") or p["session_id"] in poisoned
                or safety.dangerous(p.get("text"))}
    if injected:
        flags = sorted({f for sid in injected for f in poisoned.get(sid, ())} or {safety.INJECTION})
        run.notes.append(f"user messages that carry instructions aimed at the assistant (prompt injection), or "
                          f"commands that fetch and run code or destroy data ({', '.join(flags)}), were not mined "
                          f"as preferences: nothing from those sessions' user messages ({sessions_n(len(injected))})")
    served = {p["session_id"] for p in prefs if p.get("voice", "team") != "team"}
    if served:
        run.notes.append(f"statements by the people this agent serves (a user or persona per session) are about their "
                         f"own request, not rules for the agent; not mined ({sessions_n(len(served))})")
    prefs = _fold_same_message([p for p in prefs if p["session_id"] not in injected and p["session_id"] not in served])
    prefs.sort(key=lambda p: (p["ts"], p["session_id"], p["event_id"], p["text"]))
    keyed: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    free: list[dict] = []
    for p in prefs:
        if p.get("key") and p.get("value"):
            keyed[p["key"]][p["value"]].append(p)
        else:
            free.append(p)
    found = []
    for key in sorted(keyed):
        # among values repeated across sessions, the latest by event time wins
        qual = [(max(r["ts"] for r in rows), value, rows) for value, rows in keyed[key].items()
                if _counted(rows) >= run.policy.min_sessions]
        if not qual:
            continue
        last, value, rows = sorted(qual, key=lambda q: (q[0], q[1]))[-1]
        for _, other, _ in qual:
            if other != value:
                run.notes.append(f"{key}: '{other}' was also repeated but '{value}' is stated later; kept '{value}'")
        found.append((key, value, rows))
    by_norm: dict[str, list[dict]] = defaultdict(list)
    for p in free:
        by_norm[p["normalized"]].append(p)
    texts = sorted(by_norm)
    clustered: set[int] = set()
    for idx, _ in cluster_duplicates(texts, run.policy) if len(texts) > 1 else []:
        clustered.update(idx)
        found.append((None, None, [r for i in idx for r in by_norm[texts[i]]]))
    found += [(None, None, by_norm[t]) for i, t in enumerate(texts) if i not in clustered]
    found = [f for f in found if _counted(f[2]) >= run.policy.min_sessions]
    found.sort(key=lambda f: (-_counted(f[2]), f[0] or "", f[2][0]["normalized"]))
    for key, value, rows in found[: run.policy.max_preferences]:
        _preference(run, key, value, rows)


def _preference(run, key: str | None, value: str | None, rows: list[dict]) -> None:
    n = _counted(rows)
    counts = Counter(r["text"] for r in rows)
    text = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    slot = key.split(":", 1)[1] if key else None
    content = as_rule(text)
    last = max(r["ts"] for r in rows)
    firsts: dict[str, dict] = {}
    for r in rows:
        firsts.setdefault(r["session_id"], r)
    evidence = _sources(list(firsts.values()))
    path = f"/preferences/{_slug(slot + ' ' + value if slot else text)}.md"
    reason = f"preference repeated by users in {n} sessions (last {last.isoformat()})"
    current = _slot_holder(run, key) if key else None
    if current is not None:
        cur_value = slot_of(norm_text(current.content)).get("value")
        if (cur_value is not None and cur_value != value) or (
                cur_value is None and value not in norm_text(current.content)):
            _contradict(run, current, key, value, content, evidence, n, last, reason)
            return
    run._propose(kind="preference", key=key, path=path, content=content, evidence=evidence, support=n,
                  confidence=_confidence(n), taint="user", reason=reason, existing=current)

def _slot_holder(run, key: str) -> Memory | None:
    """The live base memory holding slot ``key``: by key, else a keyless preference about that slot."""
    live = run.live()
    holders = [m for m in live if m.key == key]
    if not holders:  # a keyless memory holds the slot only when it states a value of it
        holders = [m for m in live if m.kind == "preference" and not m.key
                   and (lambda sl: sl.get("key") == key and sl.get("value"))(slot_of(norm_text(m.content)))]
    return sorted(holders, key=_order_time)[-1] if holders else None

def _contradict(run, current: Memory, key: str, value: str, content: str, evidence: list[Source], n: int,
                last: datetime, reason: str) -> None:
    t = event_time(current)
    if t is not None and t >= last:
        run.notes.append(f"{key}: sessions say '{value}' but {current.path} is newer ({t.isoformat()}); kept")
        return
    if current.pinned:
        run.notes.append(f"{key}: sessions say '{value}' but {current.path} is pinned; kept")
        return
    run.touched.add(current.memory_id)
    run.changes.append(Change(
        op="supersede", memory_id=current.memory_id, path=run.path_for_new_text(current, content), kind="preference",
        key=key,
        before=current.content, after=content,
        reason=(f"contradicted on {key}: {reason}, newer than the stored value "
                f"({t.isoformat() if t else 'no event time'}); latest value by event time wins"),
        evidence=_cap(evidence, run.policy.max_evidence), support=n, confidence=_confidence(n), taint="user",
    ))

