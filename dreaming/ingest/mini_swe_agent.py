"""mini-swe-agent trajectories (``<instance>.traj.json``, ``trajectory_format: mini-swe-agent-1``).

One file is one session: ``{instance_id, info {exit_status, submission, model_stats, …},
messages [system, user (task), assistant (THOUGHT + one bash block), user (<returncode>,
<output>), …]}``.

Mapping: ``system`` → ``system.message``; the first user turn (the task, the only turn a person
wrote) → ``user.message``; a later user turn that is not a command's output is the harness
rejecting a malformed action ("Please always provide EXACTLY ONE action…") → ``system.message``
with ``is_error`` (so it is never mined as a person's preference); an assistant turn →
``agent.message`` (its full text) and, when it holds exactly one ```` ```bash ```` block (the only
case mini-swe-agent executes), an ``agent.tool_use`` (tool ``bash``, input ``{"command": …}``);
the user turn that answers an executed command → ``agent.tool_result`` (role ``tool``), an error
when its ``<returncode>`` is non-zero, it contains a Python traceback, or it reports a timeout.
``info.exit_status`` becomes a final ``span.outcome_evaluation_end`` event (``outcome`` =
the status, e.g. ``Submitted``; ``raw`` = the whole ``info``).

Session id: ``instance_id``, else the file name without ``.traj.json``. Timestamps: assistant turns
carry ``extra.response.created`` (epoch seconds, from the model API); other turns take the time of
the latest assistant turn before them (the first turns that of the first assistant turn).
A trajectory without any timestamp gets deterministic synthetic ones (2024-01-01T00:00:00Z +
seq seconds). ``event_id``: ``stable_id("sevt", session, seq, <hash of the message>)``.
"""

from __future__ import annotations

import re
from typing import Any

from dreaming import ids
from dreaming.ingest.common import EventRows, Source, dumps, parse_ts, short_hash, synthetic_ts

FORMAT = "mini-swe-agent"

_BASH = re.compile(r"```bash\s*\n(.*?)\n```", re.DOTALL)
_RC = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")
_TRACEBACK = "Traceback (most recent call last)"
_TIMEOUT = re.compile(r"timed out and has been killed|The last command .* timed out", re.DOTALL)


def looks_like(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    fmt = obj.get("trajectory_format")
    if isinstance(fmt, str) and fmt.startswith("mini-swe-agent"):
        return True
    return isinstance(obj.get("messages"), list) and isinstance(obj.get("info"), dict) and "instance_id" in obj


def _msg_ts(src: Source, rec, i: int, m: dict):
    """The message's time, None when it has none; a value that is present but unreadable or
    implausible is refused (naming its field), never skipped over."""
    extra = m.get("extra")
    value, field = m.get("timestamp"), f"messages[{i}].timestamp"
    if isinstance(extra, dict):
        resp = extra.get("response")
        if isinstance(resp, dict) and resp.get("created") is not None:
            value, field = resp.get("created"), f"messages[{i}].extra.response.created"
        elif extra.get("timestamp") is not None:
            value, field = extra.get("timestamp"), f"messages[{i}].extra.timestamp"
    if value is None:
        return None
    ts = parse_ts(value)
    if ts is None:
        raise src.error(f"unreadable timestamp {value!r:.60}", rec, field)
    return src.check_time(ts, value, rec, field)


def is_error_output(text: str) -> bool:
    m = _RC.search(text)
    if m and int(m.group(1)) != 0:
        return True
    return _TRACEBACK in text or bool(_TIMEOUT.search(text[:500]))


def parse(src: Source, out: EventRows) -> None:
    if len(src.records) != 1 or not isinstance(src.records[0].obj, dict):
        raise src.error("expected one trajectory object ({instance_id, info, messages}) per file", 0)
    rec = src.records[0]
    out.mark(rec)
    doc = rec.obj
    messages = doc.get("messages")
    if not isinstance(messages, list):
        raise src.error("trajectory has no messages list", rec, "messages")
    sid = doc.get("instance_id") or src.stem
    if not isinstance(sid, str):
        raise src.error("instance_id must be a string", rec, "instance_id")

    times = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise src.error("expected a message with role system/user/assistant", rec, f"messages[{i}]")
        if not isinstance(m.get("content"), str):
            raise src.error("message content must be text", rec, f"messages[{i}].content")
        times.append(_msg_ts(src, rec, i, m))
    first = next((t for t in times if t is not None), None)
    last = first

    pending_tool: str | None = None
    seen_task = False
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if first is not None:
            last = times[i] or last
            ts = last
        else:
            ts = None
        raw = dumps(m)
        h = short_hash(raw)

        def add(etype: str, erole: str, part_raw: str | None, _h=h, _ts=ts, **kw) -> None:
            out.add(sid, None, _ts or synthetic_ts(0, out.next_seq(sid)), etype, erole, raw=part_raw, id_key=_h,
                    **kw)

        if role == "system":
            add("system.message", "system", raw, text=content)
        elif role == "assistant":
            add("agent.message", "assistant", raw, text=content)
            blocks = _BASH.findall(content)
            if len(blocks) == 1:
                seq = out.next_seq(sid)
                pending_tool = ids.stable_id("toolu", sid, seq)
                tool_input = dumps({"command": blocks[0]})
                add("agent.tool_use", "assistant", None, tool_name="bash", tool_use_id=pending_tool,
                    tool_input=tool_input, text=blocks[0])
            else:
                pending_tool = None
        else:  # user
            if pending_tool is not None:
                add("agent.tool_result", "tool", raw, text=content, tool_name="bash", tool_use_id=pending_tool,
                    is_error=is_error_output(content))
                pending_tool = None
            elif not seen_task:
                add("user.message", "user", raw, text=content)  # the task: the only human turn
                seen_task = True
            else:
                # the harness answering a malformed action ("Please always provide EXACTLY ONE
                # action…"): not a person's preference, but the agent's mistake
                add("system.message", "system", raw, text=content, is_error=True)

    info = doc.get("info")
    if isinstance(info, dict) and info.get("exit_status") is not None:
        part_raw = dumps(info)
        seq = out.next_seq(sid)
        status = str(info["exit_status"])
        out.add(sid, ids.stable_id(ids.EVENT, sid, "outcome", short_hash(part_raw)),
                last or synthetic_ts(0, seq), "span.outcome_evaluation_end", "system",
                text=f"exit_status {status}", outcome=status, raw=part_raw)
