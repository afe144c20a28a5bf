"""One session's digest: its header, task, errors with their retry and fix, corrections, preferences,
tools and conclusion (docs/claude.md, "What is sent")."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dreaming.digest.text import (
    CONTROL_CLASSES,
    MAX_ARG_VALUE_CHARS,
    MAX_CHANGED_ARGS,
    MAX_CONCLUSION_CHARS,
    MAX_CORRECTION_CHARS,
    MAX_CORRECTIONS,
    MAX_ERROR_CHARS,
    MAX_FIX_CHARS,
    MAX_PREFERENCE_CHARS,
    MAX_SIGNATURE_CHARS,
    MAX_TASK_CHARS,
    MAX_TOOL_STEPS,
    MAX_WORKAROUND_CHARS,
    _flags,
    _q,
    _ts,
    _val,
    clip,
    estimate_tokens,
)
from dreaming.safety import first_fetch
from dreaming.signals import Signals


def _shared(signals: Signals, context: str) -> bool:
    """Whether several sessions of the selection share ``context`` (trials of one task, copies of one session)."""
    counts = getattr(signals, "_context_counts", None)
    if counts is None:
        counts = {}
        for c in getattr(signals, "contexts", []) or []:
            counts[c.get("context")] = counts.get(c.get("context"), 0) + 1
        object.__setattr__(signals, "_context_counts", counts)
    return counts.get(context, 0) > 1


def contexts_of(signals: Signals) -> dict[str, dict]:
    """``Signals.contexts`` by session id (empty for signals without the field)."""
    return {c["session_id"]: c for c in (getattr(signals, "contexts", None) or []) if c.get("session_id")}


def corrections_of(signals: Signals, session_id: str) -> list[dict]:
    rows = [c for c in (getattr(signals, "corrections", None) or []) if c.get("session_id") == session_id]
    return sorted(rows, key=lambda r: (_ts(r.get("ts")), r.get("event_id") or ""))


_SPACE = re.compile(r"\s+")


def task_event(signals: Signals, session_id: str, first_request: str | None) -> dict | None:
    """The user message that carries a session's first request (``Signals.user_messages``), or None."""
    if not first_request:
        return None
    want = _SPACE.sub(" ", first_request).strip()[:200]
    msgs = sorted((m for m in signals.user_messages if m.get("session_id") == session_id and m.get("text")),
                  key=lambda m: (m.get("seq") if m.get("seq") is not None else 0, _ts(m.get("ts"))))
    for m in msgs:
        have = _SPACE.sub(" ", m["text"]).strip()
        if have[:200] == want or have.startswith(want) or want.startswith(have[:200]):
            return m
    return None


@dataclass
class SessionDigest:
    session_id: str
    text: str
    event_ids: list[str]

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


def _rle(tools: list[str]) -> list[str]:
    out: list[list] = []
    for t in tools:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return [t if n == 1 else f"{t}×{n}" for t, n in out]


def session_digest(
    signals: Signals,
    session_id: str,
    taint: dict[tuple[str, str], str] | None = None,
    seen: dict[str, str] | None = None,
    alias: dict[tuple[str, str], str] | None = None,
) -> SessionDigest:
    """The digest of one session: a header and one tagged line per signal.

    ``seen`` (text -> event id, shared by the digests of one batch) replaces a long text already shown
    in the batch by ``same as [event_id]``: recurring errors and preferences are named once per batch,
    and a task already shown (trials of one task) by ``same as session <id>``.

    ``alias`` ((session id, event id) -> short tag, ``EvidenceIndex.alias``) shows each event by its
    dream-wide short tag (``e12``) instead of its 30-odd character id; the curator resolves the tags the
    model cites back to event ids (``EvidenceIndex.resolve``). ``event_ids`` are always the real ids.
    """
    taint = taint or {}
    seen = {} if seen is None else seen
    alias = alias or {}
    cited: list[str] = []

    def shown_id(eid: str) -> str:
        return alias.get((session_id, eid), eid)

    def once(text: str, eid: str | None) -> str:
        if len(text) > 40 and text in seen:
            return f"same as [{seen[text]}]"
        if eid:
            seen.setdefault(text, shown_id(eid))
        return text

    def said(text: str, eid: str | None) -> str:
        shown = once(text, eid)
        return _q(shown) if shown == text else shown

    def tag(eid: str | None) -> str:
        if not eid:
            return ""
        cited.append(eid)
        t = taint.get((session_id, eid))
        return f"[{shown_id(eid)}{' taint=' + t if t and t != 'trusted' else ''}]"

    meta = next((s for s in signals.sessions if s.get("session_id") == session_id), {})
    seq = next((s for s in signals.tool_sequences if s.get("session_id") == session_id), {})
    ctx = contexts_of(signals).get(session_id, {})
    outcome = ctx.get("outcome") or meta.get("outcome") or seq.get("outcome")
    success = ctx.get("success") if ctx.get("success") is not None else seq.get("success")
    head = [f"session {session_id}"]
    if meta.get("agent_id") or seq.get("agent_id"):
        head.append(f"agent={meta.get('agent_id') or seq.get('agent_id')}")
    if meta.get("started_at"):
        head.append(f"start={_ts(meta['started_at'])}")
    if meta.get("events") is not None:
        head.append(f"events={meta['events']}")
    if meta.get("errors"):
        head.append(f"errors={meta['errors']}")
    if ctx.get("context") and _shared(signals, ctx["context"]):  # a context of its own says nothing
        head.append(f"context={_val(ctx['context'])}")
    if ctx.get("voice") and ctx["voice"] != "team":  # 'team': the data names no person
        head.append(f"voice={_val(ctx['voice'])}")
    if outcome is not None:
        head.append(f"outcome={_val(outcome)}")
    head.append(f"success={'unknown' if success is None else 'yes' if success else 'no'}")
    lines = [" ".join(head)]

    # the task: the person's first request (trials of one task show it once per batch)
    task = clip(ctx.get("first_request"), MAX_TASK_CHARS)
    if task:
        m = task_event(signals, session_id, ctx.get("first_request"))
        anchor = " " + tag(m.get("event_id")) if m is not None and m.get("event_id") else ""
        key = "\x00task\x00" + task
        if len(task) > 40 and key in seen:
            lines.append(f"- task{anchor}: same as session {seen[key]}")
        else:
            seen.setdefault(key, session_id)
            lines.append(f"- task{anchor}{_flags(task)}: {_q(task)}")

    # errors, grouped by signature: one line per signature (first occurrence), with its workaround
    corrections = corrections_of(signals, session_id)
    # a rejection a correction line stands for is shown there (with the person's words), not as an error
    covered = {c.get("rejected_event_id") for c in corrections if c.get("rejected_event_id")}
    by_sig: dict[str, list[dict]] = {}
    for e in signals.errors:
        if e.get("session_id") == session_id:
            by_sig.setdefault(e.get("signature") or e.get("text") or "", []).append(e)
    for sig, rows in by_sig.items():
        if all(r.get("failure_class") == "user_rejection" and (r.get("failed_event_id") in covered
                                                               or r.get("event_id") in covered) for r in rows):
            continue
        rows = sorted(rows, key=lambda r: (_ts(r.get("ts")), r.get("event_id") or ""))
        e = rows[0]
        more = f" (×{len(rows)}, also {' '.join(tag(r.get('event_id')) for r in rows[1:3])})" if len(rows) > 1 else ""
        line = f"- error {tag(e.get('event_id'))}"
        if e.get("failure_class"):
            line += f" class={_val(e['failure_class'])}"
        if e.get("tool_name") and not sig.startswith(f"{e['tool_name']} | "):
            line += f" tool={e['tool_name']}"
        line += f" signature={_q(clip(sig, MAX_SIGNATURE_CHARS))}{more}"
        detail = clip(e.get("text"), MAX_ERROR_CHARS)
        if detail and detail != clip(sig, MAX_ERROR_CHARS):
            line += f"{_flags(detail)} text={said(detail, e.get('event_id'))}"
        lines.append(line)
        if e.get("failed_event_id") or e.get("failed_command") or e.get("failed_input"):
            f = f"  failed call {tag(e.get('failed_event_id'))}"
            if e.get("failed_tool") and e.get("failed_tool") != e.get("tool_name"):
                f += f" tool={e['failed_tool']}"
            f += _call_args(e.get("failed_command"), e.get("failed_input"))
            lines.append(f)
        if e.get("failure_class") in CONTROL_CLASSES:
            continue  # a rejection, a hook, the harness or a failure meant to happen: what came next is no fix
        retry = _call(signals, session_id, e.get("fix_event_id"))
        if e.get("fix_event_id") and e.get("fix_event_id") != e.get("workaround_event_id"):
            # the call that then succeeded with the same intent (the fix was derived from it), not the next call
            w = f"  retry {tag(e['fix_event_id'])}"
            if retry.get("label"):
                w += f" tool={retry['label']}"
            w += _call_args(retry.get("command"), retry.get("tool_input"))
            after = retry.get("tool_input")
        elif e.get("workaround_event_id") and (e.get("fix_event_id") == e["workaround_event_id"]
                                               or not ("failure_class" in e and "fix_event_id" in e)):
            # (where the signals pair fixes and found none, the next successful call is no workaround)
            w = f"  then {tag(e['workaround_event_id'])}"
            if e.get("workaround_tool"):
                w += f" tool={e['workaround_tool']}"
            w += _call_args(e.get("workaround_command"), e.get("workaround_input"))
            if e.get("workaround_text") and not (e.get("workaround_command") or e.get("workaround_input")):
                w += f" text={_q(clip(e['workaround_text'], MAX_WORKAROUND_CHARS))}"
            after = e.get("workaround_input")
        else:
            w, after = "", None
        changed = _changed(e.get("changed"), e.get("failed_input"), after)
        if changed:
            w = (w or "  retry") + f" changed={_q(changed)}"
        if w:
            lines.append(w)
        if e.get("fix"):
            lines.append(f"  fix {_q(clip(e['fix'], MAX_FIX_CHARS))}")

    # the person's rejections, interrupts and corrections (a preference said in the same message joins it)
    prefs = sorted((p for p in signals.preferences if p.get("session_id") == session_id),
                   key=lambda r: (_ts(r.get("ts")), r.get("event_id") or ""))
    pref_at = {p.get("event_id"): p for p in prefs if p.get("event_id")}
    joined: set[str] = set()
    for c in corrections[:MAX_CORRECTIONS]:
        line = f"- user {c.get('kind') or 'correction'} {tag(c.get('event_id'))}"
        if c.get("rejected_event_id") and c["rejected_event_id"] != c.get("event_id"):
            line += f" of call {tag(c['rejected_event_id'])}"
        if c.get("tool"):
            line += f" tool={_val(c['tool'])}"
        if c.get("command"):
            line += f" cmd={_q(clip(c['command'], MAX_WORKAROUND_CHARS))}"
        p = pref_at.get(c.get("event_id"))
        if p is not None:
            joined.add(c["event_id"])
            line += _pref_slots(p)
        words = clip(c.get("text"), MAX_CORRECTION_CHARS)
        if words:
            line += f"{_flags(words)} {said(words, c.get('event_id'))}"
        lines.append(line)
    if len(corrections) > MAX_CORRECTIONS:
        lines.append(f"- …+{len(corrections) - MAX_CORRECTIONS} more rejections/corrections")

    for p in prefs:
        if p.get("event_id") in joined:
            continue
        line = f"- user {p.get('polarity') or 'says'} {tag(p.get('event_id'))}" + _pref_slots(p)
        line += " " + said(clip(p.get("text") or p.get("normalized"), MAX_PREFERENCE_CHARS), p.get("event_id"))
        lines.append(line)

    tool_events = seq.get("tool_events") or []
    tools = seq.get("tools") or [t.get("tool_name") for t in tool_events]
    if tools:
        steps = _rle([t or "?" for t in tools])
        shown = steps[:MAX_TOOL_STEPS] + ([f"…+{len(steps) - MAX_TOOL_STEPS}"] if len(steps) > MAX_TOOL_STEPS else [])
        anchor = " " + tag(tool_events[0].get("event_id")) if tool_events and tool_events[0].get("event_id") else ""
        lines.append(f"- tools{anchor}: {' > '.join(shown)}")

    # the agent's concluding message; after the agent read external content it may repeat that content
    end = clip(ctx.get("conclusion"), MAX_CONCLUSION_CHARS)
    if end:
        fetched = session_id in first_fetch([seq]) if seq else False
        lines.append(f"- end{' taint=untrusted' if fetched else ''}{_flags(end)}: {_q(end)}")

    return SessionDigest(session_id=session_id, text="\n".join(lines), event_ids=sorted(set(cited)))


def _pref_slots(p: dict) -> str:
    out = ""
    if p.get("key"):
        out += f" key={p['key']}"
    if p.get("value"):
        out += f" value={_q(str(p['value']))}"
    if p.get("avoid"):
        avoid = p["avoid"] if isinstance(p["avoid"], list | tuple) else [p["avoid"]]
        out += f" avoid={_q(', '.join(map(str, avoid)))}"
    return out


def _args(raw) -> dict | None:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            v = json.loads(raw)
        except ValueError:
            return None
        return v if isinstance(v, dict) else None
    return None


def _changed(names, failed_input, retry_input) -> str:
    """The arguments that differed between the failed call and the call that then succeeded:
    ``name: old → new`` where both calls' inputs are known, else the names (flags, for a shell call)."""
    if isinstance(names, str):
        names = [names]
    names = [str(n) for n in (names or [])]
    if not names:
        return ""
    before, after = _args(failed_input), _args(retry_input)
    parts = []
    for n in names[:MAX_CHANGED_ARGS]:
        if before is not None and after is not None and (n in before or n in after):
            old = clip(json.dumps(before.get(n), ensure_ascii=False), MAX_ARG_VALUE_CHARS) if n in before else "(none)"
            new = clip(json.dumps(after.get(n), ensure_ascii=False), MAX_ARG_VALUE_CHARS) if n in after else "(none)"
            parts.append(f"{clip(n, MAX_ARG_VALUE_CHARS)}: {old} → {new}")
        else:
            parts.append(clip(n, MAX_ARG_VALUE_CHARS))
    more = len(names) - MAX_CHANGED_ARGS
    return "; ".join(parts) + (f"; +{more} more" if more > 0 else "")


def _call_args(command, tool_input) -> str:
    if command:
        return f" cmd={_q(clip(command, MAX_WORKAROUND_CHARS))}"
    if tool_input:
        return f" input={_q(clip(tool_input, MAX_WORKAROUND_CHARS))}"
    return ""


def _call(signals: Signals, session_id: str, event_id: str | None) -> dict:
    """A tool call of ``Signals.calls`` by event id (empty when unknown)."""
    if not event_id:
        return {}
    calls = getattr(signals, "calls", None) or []
    cached = getattr(signals, "_digest_calls", None)
    if cached is None or cached[0] is not calls:  # built once per list of calls
        cached = (calls, {(c.get("session_id"), c.get("event_id")): c for c in calls})
        object.__setattr__(signals, "_digest_calls", cached)
    return cached[1].get((session_id, event_id)) or {}
