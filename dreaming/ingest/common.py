"""Plumbing shared by the ingest adapters: timestamps, text, event rows (and, re-exported from
``source.py``, reading a source file).

A source file is read once (bytes → sha256 → strict UTF-8 → JSON or JSONL) into a ``Source``;
an adapter walks its records and appends events to an ``EventRows`` builder, which assigns the
per-session ``seq`` and produces a table with ``dreaming.schema.EVENT_SCHEMA``.
Every problem raises ``BadInput`` naming the file and, where known, the line and field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from dreaming import ids
from dreaming.ingest.checks import diagnose
from dreaming.ingest.source import Record, Source, dumps, loads, read_source, short_hash  # noqa: F401 - re-exported
from dreaming.schema import EVENT_SCHEMA

TOOL_USE_TYPES = ("agent.tool_use", "agent.mcp_tool_use", "agent.custom_tool_use")
"""Event types counted as tool calls (the same list as the ``sessions`` view in lake.py)."""

SYNTHETIC_BASE = datetime(2024, 1, 1, tzinfo=UTC)
"""Base time for formats without timestamps (tau-bench): conversation k of a file starts at
``SYNTHETIC_BASE + k minutes`` and event ``seq`` n of it is ``+ n seconds``. Fixed, so that
ingesting the same file twice (or on two machines) gives the same rows."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


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
        self.marks: list[tuple[int, Record]] = []  # (first row, record) per record: rows → lines
        self.dupes: list[tuple[Record | None, str]] = []  # (record, event id) of repeated events left out

    def mark(self, rec: Record) -> None:
        """Adapters call this at each record: errors and reports can then name the record's line."""
        self.marks.append((len(self.rows), rec))

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
            self.dupes.append((self.marks[-1][1] if self.marks else None, event_id))
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

    def table(self, src: Source | None = None) -> pa.Table:
        """The rows as an ``EVENT_SCHEMA`` table. A value that does not fit its column (a list where
        text belongs, …) is a BadInput naming file, line and field (``checks.diagnose``)."""
        cols = self.columns()
        assert list(cols) == EVENT_SCHEMA.names, "EventRows.columns out of step with EVENT_SCHEMA"
        try:
            ts = pa.array(cols["ts"], type=pa.int64()).cast(EVENT_SCHEMA.field("ts").type)
            return pa.Table.from_pydict({**cols, "ts": ts}, schema=EVENT_SCHEMA)
        except (pa.ArrowException, TypeError, ValueError, OverflowError, UnicodeError) as e:
            if src is None:
                raise
            raise diagnose(cols, self.marks, src, self.source_format, e) from None

    @property
    def sessions(self) -> int:
        return len(self._seq)
