"""Reading a source file once: bytes → sha256 → strict UTF-8 → JSON or JSONL records.

``read_source(path)`` gives a ``Source``: its records (a JSONL line, an element of a top-level
array, or the whole document) with their lines, and the place where adapters report what they
skip or repair (``Source.issues``) and check event times (``Source.check_time``). Every problem
raises ``BadInput`` naming the file and, where known, the line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from dreaming.errors import BadInput
from dreaming.ingest.checks import (
    ESCAPED_SURROGATE,
    MAX_DEPTH,
    Issue,
    TimeBounds,
    element_lines,
    nesting_line,
    repair_surrogates,
)

try:  # orjson is ~5x faster than json on large transcripts; the stdlib is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson ships with the pinned stack
    _orjson = None


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
    bounds: TimeBounds | None = None  # plausible event times (None: from the settings, when first needed)
    issues: list[Issue] = field(default_factory=list)  # lines skipped or repaired (reported, never silent)
    ignored: dict[str, int] = field(default_factory=dict)  # records that hold no event by design, per kind
    labels: Path | None = None  # an outcome labels file named with ``--labels`` (mini-swe-agent reads it)

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

    def skip(self, rec: Record | int | None, field: str | None, reason: str, count: int = 1) -> None:
        """Report a record (or part of one) left out while the rest of the file ingests."""
        self.issues.append(Issue(self.line_of(rec) if rec is not None else None, field, reason, "skipped", count))

    def repair(self, rec: Record | int | None, field: str | None, reason: str, count: int = 1) -> None:
        """Report a record ingested with a documented change."""
        self.issues.append(Issue(self.line_of(rec) if rec is not None else None, field, reason, "repaired", count))

    def ignore(self, kind: str) -> None:
        """Count a record that holds no event by design (e.g. a Claude Code ``summary`` line)."""
        self.ignored[kind] = self.ignored.get(kind, 0) + 1

    def time_problem(self, ts: datetime, value: Any) -> str | None:
        """Why ``ts`` (read from ``value``) is implausible, None when it is fine."""
        b = self.bounds
        if b is None:
            b = self.bounds = TimeBounds.from_settings()
        if b.lo <= ts <= b.hi:
            return None
        return f"implausible timestamp {value!r:.60} ({ts:%Y-%m-%dT%H:%M:%SZ}): {b.problem(ts)}"

    def check_time(self, ts: datetime, value: Any, rec: Record | int | None, field: str) -> datetime:
        """``ts`` if it is plausible, else BadInput naming the line and field (the file is refused)."""
        problem = self.time_problem(ts, value)
        if problem is None:
            return ts
        raise self.error(problem, rec, field)


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
        except RecursionError:
            return element_lines(text)


def read_source(path: Path, bounds: TimeBounds | None = None) -> Source:
    """Read ``path`` as JSON or JSONL. Raises BadInput for empty, non-UTF-8, malformed or too deeply
    nested input; lone surrogates are repaired (U+FFFD) and reported in ``Source.issues``."""
    src = _read_source(path)
    src.bounds = bounds
    if ESCAPED_SURROGATE.search(src.text):
        for rec in src.records:
            rec.obj, fixed = repair_surrogates(rec.obj)
            if fixed:
                n = sum(k for _, k in fixed)
                more = f" and {len(fixed) - 1} more field(s)" if len(fixed) > 1 else ""
                src.repair(rec, fixed[0][0] or None,
                           f"{n} lone UTF-16 surrogate(s) replaced by U+FFFD (not valid Unicode){more}")
        if src.kind == "json":
            src.doc = src.records[0].obj if not isinstance(src.doc, list) else [r.obj for r in src.records]
    return src


def _too_deep(name: str, line: int | None) -> BadInput:
    return BadInput(f"JSON nested deeper than {MAX_DEPTH} levels", file=name, line=line)


def _read_source(path: Path) -> Source:
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
        except RecursionError:
            raise _too_deep(name, nesting_line(text)) from None
        except (json.JSONDecodeError, ValueError) as e:
            deep = nesting_line(text)
            if deep is not None:
                raise _too_deep(name, deep) from None
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
        except RecursionError:
            raise _too_deep(name, n) from None
        except (json.JSONDecodeError, ValueError) as e:
            if "recursion" in str(e).lower() and nesting_line(raw) is not None:
                raise _too_deep(name, n) from None
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
    except (json.JSONDecodeError, ValueError, RecursionError):
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
