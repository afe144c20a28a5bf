"""What ingest refuses, repairs or skips, and how it says so (docs/ingest.md, "Bad input").

- ``Issue``: one reported line — ``skipped`` (left out, the rest of the file ingests) or
  ``repaired`` (ingested with a documented change) — with its line, field and reason. Every
  skipped or repaired line of a file is an ``Issue`` in its ``FileResult``; refusals are
  ``BadInput`` (the whole file fails, exit 2).
- ``TimeBounds``: the plausible event times (settings ``min_event_time`` / ``max_future``).
- ``repair_surrogates``: lone UTF-16 surrogates (``"\\ud800"`` escapes without their pair, what
  a JavaScript tool writes when it cuts a string inside an emoji) cannot be stored as UTF-8; they
  become U+FFFD and each such line is reported ``repaired``.
- ``nesting_line``: where a document nests deeper than the JSON parser allows.
- ``diagnose``: the safety net when the event table cannot be built (a list where a string
  belongs …): the first bad value, named by file, line and field, instead of an Arrow error.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dreaming.errors import BadInput

MAX_DEPTH = 1024
"""Deepest JSON nesting read (orjson's limit); deeper records are refused."""


@dataclass
class Issue:
    line: int | None
    field: str | None
    reason: str
    action: str  # skipped | repaired
    count: int = 1  # events/values concerned (one entry may stand for several on the same line)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimeBounds:
    lo: datetime
    hi: datetime

    @classmethod
    def from_settings(cls, settings=None, now: datetime | None = None) -> "TimeBounds":
        if settings is None:
            from dreaming.settings import get_settings

            settings = get_settings()
        lo = settings.min_event_time
        lo = lo.replace(tzinfo=UTC) if lo.tzinfo is None else lo.astimezone(UTC)
        return cls(lo, (now or datetime.now(UTC)) + settings.max_future)

    def problem(self, ts: datetime) -> str | None:
        """Why ``ts`` is implausible, or None when it is fine."""
        if ts < self.lo:
            return f"before {self.lo:%Y-%m-%d} (DREAMS_MIN_EVENT_TIME)"
        if ts > self.hi:
            return f"more than {_human(self.hi - datetime.now(UTC))} in the future (DREAMS_MAX_FUTURE)"
        return None


def _human(d: timedelta) -> str:
    secs = max(0, round(d.total_seconds() / 3600) * 3600)
    return f"{secs // 86400} day(s)" if secs % 86400 == 0 else f"{secs // 3600} hour(s)"


# --- lone surrogates ----------------------------------------------------------------------------

ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE = re.compile("[\ud800-\udfff]")


def _fix(s: str) -> tuple[str, int]:
    return _LONE.subn("\ufffd", s)


def repair_surrogates(obj: Any) -> tuple[Any, list[tuple[str, int]]]:
    """``obj`` with lone surrogates in its strings (keys too) replaced by U+FFFD, and the
    ``(field path, replacements)`` repaired. Iterative: records may nest up to ``MAX_DEPTH``."""
    fixed: list[tuple[str, int]] = []
    if isinstance(obj, str):
        new, n = _fix(obj)
        return (new, [("", n)]) if n else (obj, [])
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for k in list(node):
                if isinstance(k, str) and _LONE.search(k):
                    key, n = _fix(k)
                    fixed.append((f"{path}.{key}" if path else key, n))
                    node[key] = node.pop(k)
            children = [(k, f"{path}.{k}" if path else str(k)) for k in node]
        elif isinstance(node, list):
            children = [(i, f"{path}[{i}]") for i in range(len(node))]
        else:
            continue
        for slot, sub in children:
            v = node[slot]
            if isinstance(v, str):
                new, n = _fix(v)
                if n:
                    node[slot] = new
                    fixed.append((sub, n))
            elif isinstance(v, (dict, list)):
                stack.append((v, sub))
    return obj, sorted(fixed)


def _outside_strings(text: str, start: int = 0):
    """(index, character) of ``text`` from ``start``, skipping what is inside JSON strings (an opening quote
    is given, the string's content and closing quote are not)."""
    in_str = esc = False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
            continue
        if c == '"':
            in_str = True
        yield i, c


def nesting_line(text: str, start: int = 0, limit: int = MAX_DEPTH) -> int | None:
    """The 1-based line (counted from ``start``) where nesting first exceeds ``limit``."""
    depth = 0
    for i, c in _outside_strings(text, start):
        if c in "[{":
            depth += 1
            if depth > limit:
                return text.count("\n", start, i) + 1
        elif c in "]}":
            depth -= 1
    return None


def element_lines(text: str) -> list[int]:
    """Start line of each element of a top-level JSON array, by scanning brackets (the fallback
    when the document nests too deeply for ``json.JSONDecoder.raw_decode``)."""
    lines: list[int] = []
    depth, line, seen, want = 0, 1, 0, False
    for i, c in _outside_strings(text):
        if depth == 1 and want and not c.isspace() and c not in ",]":
            line, seen = line + text.count("\n", seen, i), i
            lines.append(line)
            want = False
        if c in "[{":
            depth += 1
            if depth == 1:
                want = True
        elif c in "]}":
            depth -= 1
            if depth == 0:
                break
        elif c == "," and depth == 1:
            want = True
    return lines


# --- the safety net when the table cannot be built ----------------------------------------------

_EXPECT = {"seq": int, "ts": int, "is_error": bool}
# where a column's value comes from, per format (for the message; the column name is also given)
_FROM = {
    "tool_name": {"anthropic": "name", "claude-code": "message.content[].name",
                  "openai": "tool_calls[].function.name or name"},
    "tool_use_id": {"anthropic": "id / tool_use_id", "claude-code": "message.content[].id / tool_use_id",
                    "openai": "tool_calls[].id or tool_call_id"},
    "text": {"anthropic": "content / explanation / stop_reason", "claude-code": "message.content",
             "openai": "content"},
}


def diagnose(cols: dict[str, list], marks: list[tuple[int, Any]], src, fmt: str, cause: Exception) -> BadInput:
    """A BadInput naming the first value that does not fit its column (row → record via ``marks``)."""
    starts = [r for r, _ in marks]
    for name, values in cols.items():
        want = _EXPECT.get(name, str)
        for row, v in enumerate(values):
            if v is None:
                continue
            bad = not isinstance(v, want) or (want is int and isinstance(v, bool))
            what = f"must be {'text' if want is str else want.__name__}, got {type(v).__name__}"
            if not bad and want is str and _LONE.search(v):
                bad, what = True, "holds a lone UTF-16 surrogate"
            if bad:
                rec = marks[bisect_right(starts, row) - 1][1] if marks and starts[0] <= row else None
                origin = _FROM.get(name, {}).get(fmt, name)
                return src.error(f"value {what} (it fills the event column {name!r})", rec, origin)
    return src.error(f"cannot store these events: {type(cause).__name__}: {cause}")


__all__ = ["MAX_DEPTH", "Issue", "TimeBounds", "diagnose", "nesting_line", "repair_surrogates"]
