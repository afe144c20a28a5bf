"""Labelled real data for `dreams eval --real`: memory fingerprints, the labels file, precision.

Every memory a dream writes on a real set (tau-bench airline, SWE-bench Django) is judged by a
person as ``useful`` / ``trivial`` / ``wrong`` / ``noise`` (rubric: docs/eval.md). The judgements
live in ``real_labels.jsonl`` beside this module, one JSON object per line, keyed by
(``dataset``, ``fingerprint``)::

    {"dataset": "tau-bench-airline", "fingerprint": "<16 hex>", "label": "useful",
     "path": "/mistakes/….md", "content": "When …", "why": "…"}

``path``, ``content`` and ``why`` are for the reader; only dataset, fingerprint and label count.
Lines starting with ``#`` and blank lines are comments. ``label: null`` is a memory listed for
labelling but not judged yet (what ``--unlabelled-out`` writes): it counts as unlabelled.

``score`` gives, per data set: memories written, per-label counts, precision = useful / written
(an unlabelled memory counts in written, never as useful), memories per 100 sessions, and the
memories still to label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreaming import ids
from dreaming.atomic import write_text_atomic
from dreaming.errors import BadInput

LABELS = ("useful", "trivial", "wrong", "noise")
LABELS_FILE = Path(__file__).with_name("real_labels.jsonl")
"""The labels that ship with the package (package data, see pyproject.toml)."""

_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_PLURAL = re.compile(r"# (\w+?)s\b")  # "# sessions" and "# session" read the same
_SPACE = re.compile(r"\s+")


# --- fingerprints ---------------------------------------------------------------------------------


def normalise(content: str) -> str:
    """A memory's text with what changes from run to run taken out: case, typographic quotes,
    whitespace, every number (counts, ids, dates, rates: ``#``), a plural after a number, and
    trailing punctuation. Quoted and backticked text is kept (digits masked): the error message
    and the command are what tell one lesson from another."""
    text = _SPACE.sub(" ", content.translate(_QUOTES).lower()).strip()
    text = _DIGITS.sub("#", text)
    text = _PLURAL.sub(r"# \1", text)
    return text.rstrip(" .;:!")


def memory_fingerprint(memory: Any) -> str:
    """A memory's stable fingerprint: the first 16 hex of sha256(kind, normalised content).

    It survives re-runs (memory ids, paths, support, confidence and dates are left out) and
    statistics changing in the text ("seen in 12 sessions" → "seen in 13 sessions"), but a change
    to the advice itself gives a new fingerprint, so a label always judges the words it was given
    for. The memory's ``key`` is not used: a key names the slot or error signature, and the same
    key can carry a wrong workaround in one version and a right one in the next.
    ``memory``: a ``Memory`` or a mapping with ``kind`` and ``content``."""
    get = memory.get if isinstance(memory, Mapping) else lambda k, d=None: getattr(memory, k, d)
    kind = str(get("kind", None) or "note")
    return ids.sha256_text(f"{kind}\x1f{normalise(str(get('content', '')))}")[:16]


# --- data sets ------------------------------------------------------------------------------------


def dataset_name(path: Path | str) -> str:
    """The data set a real path belongs to, for the labels: a path mentioning tau-bench
    (``tau-bench-historical/gpt-4o-airline.json``) → ``tau-bench-airline`` (``tau-bench-retail`` when
    it mentions retail); SWE-bench with django (``swebench-…/trajs_django``) → ``swebench-django``
    (other SWE-bench repositories: ``swebench-<repo>`` from a ``trajs_<repo>`` folder, else
    ``swebench``); anything else: the file or folder name without its suffixes."""
    p = Path(path)
    text = p.as_posix().lower()
    if re.search(r"tau[-_]?bench", text):
        return "tau-bench-retail" if "retail" in text else "tau-bench-airline"
    if re.search(r"swe[-_]?bench", text):
        if p.is_dir() and not re.search(r"trajs_", text):  # the data set's folder: name it by its one trajs_<repo>
            subs = sorted(d.name.lower() for d in p.glob("trajs_*") if d.is_dir())
            if len(subs) == 1:
                text = f"{text}/{subs[0]}"
        if "django" in text:
            return "swebench-django"
        m = re.search(r"trajs_([a-z0-9-]+)", text)
        return f"swebench-{m.group(1)}" if m else "swebench"
    name = p.name
    for suffix in (".traj.json", ".jsonl", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- the labels file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    dataset: str
    fingerprint: str
    label: str | None  # None: listed for labelling, not judged yet
    path: str = ""
    content: str = ""
    why: str = ""
    line: int | None = None


def read_labels(path: Path | str = LABELS_FILE) -> dict[tuple[str, str], Label]:
    """(dataset, fingerprint) → Label. Raises BadInput naming the file, line and field for a line
    that is not a JSON object, a missing or mistyped field, a label outside ``LABELS``, or two
    different labels for one memory. A missing file is no labels."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read labels file: {e}", file=name) from None
    out: dict[tuple[str, str], Label] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"malformed JSON: {e.msg} (column {e.colno})", file=name, line=n) from None
        if not isinstance(obj, dict):
            raise BadInput("expected one JSON object per line", file=name, line=n)
        for key in ("dataset", "fingerprint"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise BadInput(f"{key} must be a non-empty string", file=name, line=n, field=key)
        if not _FINGERPRINT.match(obj["fingerprint"]):
            raise BadInput(f"fingerprint must be 16 lower-case hex digits, not {obj['fingerprint']!r:.40}",
                           file=name, line=n, field="fingerprint")
        if "label" not in obj:
            raise BadInput(f"no label (one of {', '.join(LABELS)}, or null while unjudged)", file=name, line=n,
                           field="label")
        label = obj["label"]
        if label is not None and label not in LABELS:
            raise BadInput(f"label must be one of {', '.join(LABELS)} (or null), not {label!r:.40}", file=name,
                           line=n, field="label")
        for key in ("path", "content", "why"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise BadInput(f"{key} must be text", file=name, line=n, field=key)
        item = Label(obj["dataset"], obj["fingerprint"], label, obj.get("path") or "", obj.get("content") or "",
                     obj.get("why") or "", n)
        k = (item.dataset, item.fingerprint)
        prev = out.get(k)
        if prev is not None and prev.label is not None and label is not None and prev.label != label:
            raise BadInput(f"memory {item.fingerprint} of {item.dataset} is labelled {prev.label!r} on line "
                           f"{prev.line} and {label!r} here", file=name, line=n, field="label")
        if prev is None or label is not None:  # a judgement wins over an unjudged listing
            out[k] = item
    return out


# --- scoring --------------------------------------------------------------------------------------


def score(memories: Iterable[Any], labels: Mapping[tuple[str, str], Label], dataset: str,
          sessions: int) -> dict:
    """Precision of the memories a dream wrote on ``dataset`` against the labels.

    Returns ``{dataset, written, sessions, counts {useful, trivial, wrong, noise, unlabelled},
    precision (useful / written; None when nothing was written), per_100_sessions, memories
    [{fingerprint, label, path, content}], to_label [{fingerprint, path, content}]}``. A memory
    without a label (or with ``label: null``) counts in ``written`` and ``unlabelled``, never as
    useful. ``memories``: ``Memory`` objects or mappings with ``kind``, ``path`` and ``content``."""
    counts = dict.fromkeys((*LABELS, "unlabelled"), 0)
    rows, to_label, seen = [], [], set()
    n = 0
    for m in memories:
        n += 1
        get = m.get if isinstance(m, Mapping) else lambda k, d=None, _m=m: getattr(_m, k, d)
        fp = memory_fingerprint(m)
        item = labels.get((dataset, fp))
        label = item.label if item is not None else None
        counts[label or "unlabelled"] += 1
        row = {"fingerprint": fp, "label": label, "path": get("path", "") or "", "content": get("content", "") or ""}
        rows.append(row)
        if label is None and fp not in seen:
            seen.add(fp)
            to_label.append({k: row[k] for k in ("fingerprint", "path", "content")})
    return {
        "dataset": dataset, "written": n, "sessions": sessions, "counts": counts,
        "precision": round(counts["useful"] / n, 4) if n else None,
        "per_100_sessions": round(100 * n / sessions, 2) if sessions else None,
        "memories": rows, "to_label": to_label,
    }


def unlabelled_lines(result: Mapping) -> list[str]:
    """The memories ``score`` listed to label, as lines of the labels file with ``label: null``
    (and an empty ``why``): fill in label and why, then append them to the labels file."""
    return [json.dumps({"dataset": result["dataset"], "fingerprint": r["fingerprint"], "label": None,
                        "path": r["path"], "content": r["content"], "why": ""}, ensure_ascii=False)
            for r in result["to_label"]]


def write_unlabelled(result: Mapping, path: Path | str) -> int:
    """Write ``unlabelled_lines(result)`` to ``path`` (JSONL, replaced); returns how many."""
    lines = unlabelled_lines(result)
    path = Path(path)
    write_text_atomic("".join(line + "\n" for line in lines), path, path.parent)
    return len(lines)
