"""Plumbing shared by the ingest adapters: reading a source file, timestamps, text, event rows.

A source file is read once (bytes → sha256 → strict UTF-8 → JSON or JSONL) into a ``Source``;
an adapter walks its records and appends events to an ``EventRows`` builder, which assigns the
per-session ``seq`` and produces a table with ``dreaming.schema.EVENT_SCHEMA``.
Every problem raises ``BadInput`` naming the file and, where known, the line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from dreaming import ids
from dreaming.errors import BadInput
from dreaming.schema import EVENT_SCHEMA

try:  # orjson is ~5x faster than json on large transcripts; the stdlib is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson ships with the pinned stack
    _orjson = None

TOOL_USE_TYPES = ("agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use")
"""Event types counted as tool calls (the same list as the ``sessions`` view in lake.py)."""

SYNTHETIC_BASE = datetime(2024, 1, 1, tzinfo=UTC)
"""Base time for formats without timestamps (tau-bench): conversation k of a file starts at
``SYNTHETIC_BASE + k minutes`` and event ``seq`` n of it is ``+ n seconds``. Fixed, so that
ingesting the same file twice (or on two machines) gives the same rows."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def loads(text: str | bytes) -> Any:
    """Parse JSON (orjson when available; stdlib json for what orjson rejects, e.g. NaN)."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(text)


def dumps(obj: Any) -> str:
    """Compact JSON text (keys in their original order, non-ASCII kept)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj).decode("utf-8")
        except TypeError:  # e.g. ints beyond 64 bits
            pass
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# --- reading a source file ----------------------------------------------------------------------


@dataclass
class Record:
    """One top-level record: a JSONL line, an element of a top-level JSON array, or the document."""

    obj: Any
    index: int
    line: int | None = None  # 1-based; None until asked for (see Source.line_of)
    raw: str | None = None  # the record's original text when it is a whole JSONL line


@dataclass
class Source:
    path: Path
    data: bytes
    text: str
    kind: str  # "jsonl" | "json"
    doc: Any = None  # the parsed document ("json" only)
    records: list[Record] = field(default_factory=list)
    _array_lines: list[int] | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def stem(self) -> str:
        """File name without its format suffixes: ``a.traj.json`` → ``a``, ``s.jsonl`` → ``s``."""
        name = self.path.name
        for suffix in (".traj.json", ".jsonl", ".ndjson", ".json"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return self.path.stem

    def line_of(self, rec: Record | int) -> int | None:
        """The 1-based line where a record starts (computed lazily for JSON arrays)."""
        idx = rec.index if isinstance(rec, Record) else rec
        if isinstance(rec, Record) and rec.line is not None:
            return rec.line
        if self.kind == "json" and isinstance(self.doc, list):
            if self._array_lines is None:
                self._array_lines = _array_element_lines(self.text)
            if 0 <= idx < len(self._array_lines):
                return self._array_lines[idx]
        return None

    def error(self, message: str, rec: Record | int | None = None, field: str | None = None) -> BadInput:
        line = self.line_of(rec) if rec is not None else None
        return BadInput(message, file=self.name, line=line, field=field)


def _array_element_lines(text: str) -> list[int]:
    """Start line of each element of the top-level JSON array in ``text`` (for error messages)."""
    dec = json.JSONDecoder()
    lines: list[int] = []
    i = len(text) - len(text.lstrip())
    if i >= len(text) or text[i] != "[":
        return lines
    i += 1
    line, pos = 1, 0
    ws = re.compile(r"[\s,]*")
    while True:
        i = ws.match(text, i).end()
        if i >= len(text) or text[i] == "]":
            return lines
        line += text.count("\n", pos, i)
        pos = i
        lines.append(line)
        try:
            _, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return lines


def read_source(path: Path) -> Source:
    """Read ``path`` as JSON or JSONL. Raises BadInput for empty, non-UTF-8 or malformed input."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read file: {e.strerror or e}", file=name) from None
    if not data.strip():
        raise BadInput("file is empty", file=name, line=1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadInput(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); transcripts must be UTF-8",
            file=name,
            line=line,
        ) from None
    if "\x00" in text:
        raise BadInput("binary content (NUL byte); expected JSON or JSONL text", file=name,
                       line=text.count("\n", 0, text.index("\x00")) + 1)

    stripped = text.lstrip()
    # A whole JSON document (array, page, trajectory, pretty-printed object) ...
    if stripped[0] == "[" or not _first_line_is_complete_json(text):
        try:
            doc = loads(text)
        except (json.JSONDecodeError, ValueError) as e:
            raise _json_error(name, text, e) from None
        src = Source(path, data, text, "json", doc=doc)
        if isinstance(doc, list):
            src.records = [Record(o, i) for i, o in enumerate(doc)]
        else:
            src.records = [Record(doc, 0, line=1)]
        return src
    # ... or one JSON value per line.
    src = Source(path, data, text, "jsonl")
    lines = text.split("\n")
    last = len(lines)
    while last and not lines[last - 1].strip():
        last -= 1
    for n, raw in enumerate(lines[:last], start=1):
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
        except (json.JSONDecodeError, ValueError) as e:
            what = "truncated last line" if n == last else "malformed JSON"
            msg = getattr(e, "msg", str(e))
            raise BadInput(f"{what}: {msg} (column {getattr(e, 'colno', '?')})", file=name, line=n) from None
        src.records.append(Record(obj, len(src.records), line=n, raw=raw.strip()))
    return src


def _first_line_is_complete_json(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0].strip()
    if not first:
        return False
    try:
        loads(first)
    except (json.JSONDecodeError, ValueError):
        return False
    return True


def _json_error(name: str, text: str, e: Exception) -> BadInput:
    # Prefer the stdlib's message/position (orjson's are similar but less familiar).
    try:
        json.loads(text)
    except json.JSONDecodeError as je:
        e = je
    except ValueError:
        pass
    line = getattr(e, "lineno", None)
    msg = getattr(e, "msg", str(e))
    if isinstance(e, json.JSONDecodeError) and e.pos >= len(text.rstrip()):
        msg = f"truncated JSON: {msg}"
    else:
        msg = f"malformed JSON: {msg} (column {getattr(e, 'colno', '?')})"
    return BadInput(msg, file=name, line=line)


# --- values -------------------------------------------------------------------------------------

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_ts(value: Any) -> datetime | None:
    """An RFC 3339 / ISO 8601 string or epoch seconds/milliseconds → aware UTC datetime.

    Returns None when the value is missing or unreadable (callers raise with file/line context).
    Times without a zone are taken as UTC.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        secs = float(value)
        if secs > 1e11:  # milliseconds
            secs /= 1000.0
        try:
            return datetime.fromtimestamp(secs, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    s = value.strip()
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        try:  # nanosecond fractions, a trailing 'Z' after them, ...
            dt = datetime.fromisoformat(_FRACTION.sub(r"\1", s).replace("Z", "+00:00"))
        except ValueError:
            return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


_SYNTHETIC_BASE_US = (SYNTHETIC_BASE - _EPOCH) // _ONE_US


def synthetic_ts(conversation: int, seq: int) -> int:
    """The synthetic time of event ``seq`` of conversation ``conversation``, in µs since the epoch."""
    return _SYNTHETIC_BASE_US + (conversation * 60 + seq) * 1_000_000


def flatten(content: Any) -> str | None:
    """Content blocks (Anthropic/OpenAI style) or a string → plain text; None when there is none."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return str(content)
    parts: list[str] = []
    for b in content:
        if isinstance(b, str):
            parts.append(b)
            continue
        if not isinstance(b, dict):
            continue
        t = b.get("type")
        if t in ("text", "input_text", "output_text") or (t is None and "text" in b):
            parts.append(str(b.get("text") or ""))
        elif t == "thinking":
            parts.append(str(b.get("thinking") or ""))
        elif t in ("tool_result", "web_search_tool_result", "mcp_tool_result"):
            inner = flatten(b.get("content"))
            if inner:
                parts.append(inner)
        elif t == "document":
            src = b.get("source") or {}
            if isinstance(src, dict) and src.get("type") == "text":
                parts.append(str(src.get("data") or ""))
            else:
                parts.append(f"[document{': ' + b['title'] if b.get('title') else ''}]")
        elif t == "search_result":
            inner = flatten(b.get("content")) or ""
            parts.append(f"{b.get('title') or ''}\n{inner}".strip())
        elif t in ("image", "image_url", "input_image"):
            parts.append("[image]")
        elif t in ("redacted", "redacted_thinking"):
            parts.append("[redacted]")
        elif "content" in b:
            inner = flatten(b.get("content"))
            if inner:
                parts.append(inner)
    return "\n".join(p for p in parts if p)


def json_input(value: Any) -> str | None:
    """A tool input as a JSON string: dicts are serialised; strings must already be JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            loads(value)
            return value
        except (json.JSONDecodeError, ValueError):
            return dumps(value)  # not JSON: keep it as a JSON string literal
    return dumps(value)


# --- building rows ------------------------------------------------------------------------------


class EventRows:
    """Row builder for one source file. ``add`` assigns ``seq`` per session and drops an
    event whose id was already seen in this file (a file that repeats itself counts once).

    Rows are kept as tuples in ``EVENT_SCHEMA`` order and turned into columns once, in ``table``:
    one append per event is the cheapest thing Python can do per row (ingest maps every event)."""

    def __init__(self, tenant: str, agent_id: str | None, source_format: str, snapshot_id: str):
        self.tenant, self.agent_id = tenant, agent_id
        self.source_format, self.snapshot_id = source_format, snapshot_id
        self.rows: list[tuple] = []
        self._hashed: list[tuple[int, str]] = []  # (row, id key) of rows whose event_id is minted in table()
        self._seq: dict[str, int] = {}
        self._seen: set[str] = set()
        self.sessions_order: list[str] = []

    def __len__(self) -> int:
        return len(self.rows)

    def next_seq(self, session_id: str) -> int:
        return self._seq.get(session_id, 0)

    def add(
        self,
        session_id: str,
        event_id: str,
        ts: datetime | int,
        type: str,
        role: str | None,
        text: str | None = None,
        tool_name: str | None = None,
        tool_use_id: str | None = None,
        tool_input: str | None = None,
        is_error: bool = False,
        outcome: str | None = None,
        raw: str | None = None,
        agent_id: str | None = None,
        id_key: str | None = None,
    ) -> bool:
        """Append one event; ``ts`` is an aware datetime or integer microseconds since the epoch.

        ``event_id=None`` with ``id_key`` gives the event ``stable_id(EVENT, session_id, seq, id_key)``,
        minted in bulk by ``table()``. Such ids embed (session, seq), which no other event of the file
        has, so they need no duplicate check; given ids are checked (a repeated one is dropped)."""
        if event_id is None:
            if id_key is None:
                raise ValueError("an event needs an event_id or an id_key")
        elif event_id in self._seen:
            return False
        else:
            self._seen.add(event_id)
        seq = self._seq.get(session_id)
        if seq is None:
            self.sessions_order.append(session_id)
            seq = 0
        self._seq[session_id] = seq + 1
        if event_id is None:
            self._hashed.append((len(self.rows), f"{session_id}\x1f{seq}\x1f{id_key}"))
        if ts.__class__ is not int:
            ts = (ts - _EPOCH) // _ONE_US  # int µs: pyarrow would import pandas for aware datetimes
        self.rows.append((
            session_id, seq, event_id, ts, type, role, text, tool_name, tool_use_id, tool_input,
            bool(is_error), outcome, raw, agent_id,
        ))
        return True

    def columns(self) -> dict[str, list]:
        """The rows as one list per column of ``EVENT_SCHEMA`` (constants repeated)."""
        n = len(self.rows)
        (session, seq, event, ts, type_, role, text, tool_name, tool_use, tool_input, is_error, outcome, raw,
         agent) = (list(c) for c in zip(*self.rows, strict=True)) if n else ([] for _ in range(14))
        if self.agent_id is not None:
            agent = [self.agent_id] * n
        if self._hashed:
            for (row, _), eid in zip(self._hashed, ids.stable_ids(ids.EVENT, [k for _, k in self._hashed]),
                                     strict=True):
                event[row] = eid
        return {
            "tenant": [self.tenant] * n, "agent_id": agent, "session_id": session, "seq": seq,
            "event_id": event, "ts": ts, "type": type_, "role": role, "text": text, "tool_name": tool_name,
            "tool_use_id": tool_use, "tool_input": tool_input, "is_error": is_error, "outcome": outcome,
            "source_format": [self.source_format] * n, "snapshot_id": [self.snapshot_id] * n, "raw": raw,
        }

    def table(self) -> pa.Table:
        cols = self.columns()
        assert list(cols) == EVENT_SCHEMA.names, "EventRows.columns out of step with EVENT_SCHEMA"
        cols["ts"] = pa.array(cols["ts"], type=pa.int64()).cast(EVENT_SCHEMA.field("ts").type)
        return pa.Table.from_pydict(cols, schema=EVENT_SCHEMA)

    @property
    def sessions(self) -> int:
        return len(self._seq)
