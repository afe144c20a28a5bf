"""The digest's limits, its one token estimate, and how transcript text is clipped and fenced as data."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

from dreaming.safety import clean_text, dangerous

CHARS_PER_TOKEN = 4

# how much of each free-text field a digest line keeps
MAX_SIGNATURE_CHARS = 160
MAX_ERROR_CHARS = 160
MAX_WORKAROUND_CHARS = 200
MAX_PREFERENCE_CHARS = 280
MAX_TOOL_STEPS = 30
MAX_TASK_CHARS = 600  # the first request
MAX_CONCLUSION_CHARS = 400  # the agent's concluding message
MAX_CORRECTION_CHARS = 400  # the person's words around a rejection, interrupt or correction
MAX_CORRECTIONS = 10  # correction lines per session; the rest are counted
MAX_FIX_CHARS = 300  # the fix derived from a failed and a successful call
MAX_CHANGED_ARGS = 8  # changed arguments named per error
MAX_ARG_VALUE_CHARS = 60  # each side of a changed argument's value
MAX_LABEL_CHARS = 80  # outcome, context and voice in the header

#: failure classes that are control signals, not mistakes: the call after one is not a workaround
CONTROL_CLASSES = frozenset({"user_rejection", "hook_block", "harness_format", "expected_failure"})

_TAINT_RANK = {"trusted": 0, "user": 1, "tool_output": 2, "untrusted": 3}


def estimate_tokens(text: str) -> int:
    """The one documented token estimate: ceil(characters / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def worst_taint(*taints: str | None) -> str | None:
    vals = [t for t in taints if t]
    return max(vals, key=lambda t: _TAINT_RANK.get(t, 3)) if vals else None


_WS = re.compile(r"\s+")


def clip(text: str | None, limit: int) -> str:
    """One line, at most ``limit`` characters (an ellipsis marks a cut); secrets redacted and invisible or
    bidi characters removed first (``dreaming.safety.clean_text``): the model never reads a secret."""
    if not text:
        return ""
    text = _WS.sub(" ", clean_text(str(text))[0]).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fence(label: str, body: str) -> str:
    """``<label>body</label>`` where the body cannot close (or open) the block itself."""
    # neutralise any tag of the same label inside the data: '<transcript_data' -> '<\transcript_data'
    safe = re.sub(rf"<(/?)\s*{re.escape(label)}", lambda m: "<\\" + m.group(1) + label, body, flags=re.I)
    return f"<{label}>\n{safe}\n</{label}>"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_BARE = re.compile(r"[\w.:/@+#=-]+")


def _val(text, limit: int = MAX_LABEL_CHARS) -> str:
    """A header value: bare when it is one plain token, else quoted (clipped, cleaned)."""
    t = clip(str(text), limit)
    return t if _BARE.fullmatch(t) else _q(t)


def _flags(text: str | None) -> str:
    """`` flags=injection,…`` when ``text`` reads as an injection, a fetch-and-run or a destructive command."""
    bad = dangerous(text) if text else frozenset()
    return f" flags={','.join(sorted(bad))}" if bad else ""



def _ts(v) -> str:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%MZ") if v.utcoffset() is not None else v.isoformat(timespec="minutes")
    return str(v) if v is not None else ""
