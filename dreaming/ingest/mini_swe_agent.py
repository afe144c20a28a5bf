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

Outcome labels: whether the patch resolved the task is not in the trajectory but in SWE-bench's
evaluation files. A labels file (``--labels FILE``, else the first of ``LABEL_FILES`` in the
trajectory's folder, then in its parent) makes the outcome ``resolved`` / ``unresolved`` for the
instances it names (text ``exit_status Submitted; resolved``; ``raw`` stays ``info``, so the
event id does not depend on the labels); an instance it does not name keeps its exit status.
Formats: ``results_summary.csv`` (header with ``instance_id`` and ``resolved``: True/False) and
``sb-cli-report.json`` (``resolved_ids`` / ``unresolved_ids``); see ``read_labels``.

Session id: ``instance_id``, else the file name without ``.traj.json``. Timestamps: assistant turns
carry ``extra.response.created`` (epoch seconds, from the model API); other turns take the time of
the latest assistant turn before them (the first turns that of the first assistant turn).
A trajectory without any timestamp gets deterministic synthetic ones (2024-01-01T00:00:00Z +
seq seconds). ``event_id``: ``stable_id("sevt", session, seq, <hash of the message>)``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from dreaming import ids
from dreaming.errors import BadInput
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
    status = str(info["exit_status"]) if isinstance(info, dict) and info.get("exit_status") is not None else None
    labels = outcome_labels(src)
    resolved = labels.get(sid) if labels else None
    if status is not None or resolved is not None:
        # the id hashes ``info`` only (never the label): ingesting with and without labels gives one event id
        part_raw = dumps(info) if isinstance(info, dict) else None
        seq = out.next_seq(sid)
        outcome, text = status, f"exit_status {status}" if status is not None else None
        if resolved is not None:
            outcome = "resolved" if resolved else "unresolved"
            text = f"{text}; {outcome}" if text else outcome
        out.add(sid, ids.stable_id(ids.EVENT, sid, "outcome", short_hash(part_raw or "")),
                last or synthetic_ts(0, seq), "span.outcome_evaluation_end", "system",
                text=text, outcome=outcome, raw=part_raw)


# --- outcome labels -------------------------------------------------------------------------------

LABEL_FILES = ("results_summary.csv", "sb-cli-report.json")
"""SWE-bench evaluation files looked for beside a trajectory (its folder, then the parent), in this
order; the first found is used. A folder given to ``dreams ingest`` never ingests them as transcripts."""

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def find_labels(path: Path) -> Path | None:
    """The labels file beside trajectory ``path``: the first of ``LABEL_FILES`` in its folder, then
    in the folder above; None when there is none."""
    folder = Path(path).resolve().parent
    for d in (folder, folder.parent):
        for name in LABEL_FILES:
            f = d / name
            if f.is_file():
                return f
    return None


def outcome_labels(src: Source) -> dict[str, bool] | None:
    """instance id → resolved, from ``src.labels`` (``--labels``) or the file found beside ``src``."""
    path = src.labels or find_labels(src.path)
    return read_labels(path) if path is not None else None


def read_labels(path: Path) -> dict[str, bool]:
    """Read a labels file (``.csv``: ``instance_id``, ``resolved``; ``.json``: an sb-cli report with
    ``resolved_ids`` / ``unresolved_ids``) → {instance id: resolved}. Parsed once per content (the
    trajectories of a folder share one file). Raises BadInput naming the file, line and field for
    anything malformed."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read labels file: {e.strerror or e}", file=name) from None
    return dict(_parse_labels(name, data))


@lru_cache(maxsize=32)
def _parse_labels(name: str, data: bytes) -> tuple[tuple[str, bool], ...]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput(f"labels file is not UTF-8 text (byte 0x{data[e.start]:02x})", file=name,
                       line=data.count(b"\n", 0, e.start) + 1) from None
    if name.lower().endswith(".csv"):
        out = _csv_labels(text, name)
    elif name.lower().endswith(".json"):
        out = _json_labels(text, name)
    else:
        raise BadInput("labels file must be a .csv (instance_id,resolved) or an sb-cli report .json "
                       "(resolved_ids, unresolved_ids)", file=name)
    return tuple(out.items())


def _csv_labels(text: str, name: str) -> dict[str, bool]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for col in ("instance_id", "resolved"):
        if col not in header:
            raise BadInput(f"labels CSV has no {col!r} column (header: {','.join(header) or 'empty'})",
                           file=name, line=1, field=col)
    out: dict[str, bool] = {}
    try:
        for row in reader:
            line = reader.line_num
            iid = (row.get("instance_id") or "").strip()
            if not iid:
                raise BadInput("empty instance id", file=name, line=line, field="instance_id")
            value = (row.get("resolved") or "").strip()
            if value.lower() in _TRUE:
                resolved = True
            elif value.lower() in _FALSE:
                resolved = False
            else:
                raise BadInput(f"resolved must be True or False, not {value!r:.40}", file=name, line=line,
                               field="resolved")
            if out.get(iid, resolved) != resolved:
                raise BadInput(f"instance {iid!r} is labelled both resolved and unresolved", file=name,
                               line=line, field="resolved")
            out[iid] = resolved
    except csv.Error as e:
        raise BadInput(f"malformed CSV: {e}", file=name, line=reader.line_num) from None
    return out


def _json_labels(text: str, name: str) -> dict[str, bool]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"malformed JSON: {e.msg} (column {e.colno})", file=name, line=e.lineno) from None
    if not isinstance(doc, dict) or not ({"resolved_ids", "unresolved_ids"} & doc.keys()):
        raise BadInput("expected an sb-cli report object with resolved_ids and/or unresolved_ids", file=name,
                       line=1, field="resolved_ids")
    out: dict[str, bool] = {}
    for key, resolved in (("resolved_ids", True), ("unresolved_ids", False)):
        values = doc.get(key, [])
        if not isinstance(values, list):
            raise BadInput(f"{key} must be a list of instance ids", file=name, line=_line_of(text, key),
                           field=key)
        for i, iid in enumerate(values):
            if not isinstance(iid, str) or not iid.strip():
                raise BadInput(f"an instance id must be a non-empty string, not {iid!r:.40}", file=name,
                               line=_line_of(text, key), field=f"{key}[{i}]")
            if out.get(iid, resolved) != resolved:
                raise BadInput(f"instance {iid!r} is in both resolved_ids and unresolved_ids", file=name,
                               line=_line_of(text, key), field=f"{key}[{i}]")
            out[iid] = resolved
    return out


def _line_of(text: str, key: str) -> int | None:
    """The line where ``"key"`` first appears in a JSON text (good enough to point at a list)."""
    i = text.find(f'"{key}"')
    return text.count("\n", 0, i) + 1 if i >= 0 else None
