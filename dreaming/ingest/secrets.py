"""Secrets out of the lake: ``text``, ``tool_input`` and ``raw`` of every event go through
``dreaming.redaction.redact`` before anything is written (docs/ingest.md, "Secrets").

Cost: one RE2 screen per column over the whole file (``redaction.flagged``), then ``redact`` only on
the values the screen flags. ``tool_input`` and ``raw`` stay valid JSON: the serialized text is
redacted (a secret never spans JSON syntax in practice); if that ever breaks the JSON, the parsed
value's strings are redacted one by one instead, and as a last resort the redacted text is stored
as a JSON string. With ``keep_originals`` the unredacted values of the changed rows come back as
a small table (``ORIGINALS_SCHEMA``) for the opt-in sidecar under ``originals/``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa

from dreaming.ingest.common import dumps, loads
from dreaming.redaction import find_secrets, flagged, redact

COLUMNS = ("text", "tool_input", "raw")
_JSON_COLUMNS = frozenset({"tool_input", "raw"})

ORIGINALS_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("seq", pa.int32(), nullable=False),
    pa.field("kinds", pa.list_(pa.string())),
    *(pa.field(c, pa.string()) for c in COLUMNS),  # the originals (null: that column was not changed)
])


def _walk(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact(obj)[0]
    if isinstance(obj, list):
        return [_walk(v) for v in obj]
    if isinstance(obj, dict):
        return {(_walk(k) if isinstance(k, str) else k): _walk(v) for k, v in obj.items()}
    return obj


def _as_json(original: str, redacted: str) -> str:
    """``redacted`` if it is still valid JSON, else a valid JSON text without the secrets."""
    try:
        loads(redacted)
        return redacted
    except (json.JSONDecodeError, ValueError):
        pass
    try:
        walked = dumps(_walk(loads(original)))
        if not find_secrets(walked):
            return walked
    except (json.JSONDecodeError, ValueError, RecursionError):
        pass
    return dumps(redacted)  # a JSON string holding the redacted text


def redact_table(table: pa.Table, keep_originals: bool = False) -> tuple[pa.Table, Counter, pa.Table | None]:
    """(the table with secrets replaced, kinds found (one count per value and kind), originals)."""
    kinds: Counter = Counter()
    originals: dict[int, dict] = {}
    for name in COLUMNS:
        col = table[name]
        if col.null_count == len(col):
            continue
        hits = flagged(col)
        if not hits:
            continue
        changed: dict[int, str] = {}
        for i, families in hits:
            value = col[i].as_py()
            new, found = redact(value, families)
            if not found:
                continue
            changed[i] = _as_json(value, new) if name in _JSON_COLUMNS else new
            kinds.update(found)
            if keep_originals:
                slot = originals.setdefault(i, {"kinds": set()})
                slot[name] = value
                slot["kinds"].update(found)
        if changed:
            values = col.to_pylist()
            for i, v in changed.items():
                values[i] = v
            table = table.set_column(table.schema.get_field_index(name), table.schema.field(name),
                                     pa.array(values, type=pa.string()))
    side = None
    if originals:
        rows = sorted(originals)
        ids, sids, seqs = (table[c].take(pa.array(rows)).to_pylist() for c in ("event_id", "session_id", "seq"))
        side = pa.Table.from_pydict({
            "event_id": ids, "session_id": sids, "seq": seqs,
            "kinds": [sorted(originals[r]["kinds"]) for r in rows],
            **{c: [originals[r].get(c) for r in rows] for c in COLUMNS},
        }, schema=ORIGINALS_SCHEMA)
    return table, kinds, side


__all__ = ["COLUMNS", "ORIGINALS_SCHEMA", "redact_table"]
