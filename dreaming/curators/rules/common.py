"""Small helpers every part of the offline curator uses: times, taints, confidence, text and evidence."""

from __future__ import annotations

import re
from collections import defaultdict
import unicodedata
from datetime import UTC, datetime

from dreaming import safety
from dreaming.models import Memory, Source, merge_sources
from dreaming.redaction import redact

_MIN_TS = datetime.min.replace(tzinfo=UTC)
_TAINT_RANK = {"trusted": 0, "user": 1, "tool_output": 2, "untrusted": 3}

def event_time(m: Memory) -> datetime | None:
    """When a memory was last supported by an event (last_seen, else its newest source)."""
    times = [s.ts for s in m.sources if s.ts]
    cands = [t for t in [m.last_seen, *times] if t]
    return max(cands) if cands else None


def _order_time(m: Memory) -> tuple:
    return (event_time(m) or m.updated_at or m.created_at or _MIN_TS, m.updated_at or _MIN_TS, m.memory_id)


def _worst(*taints: str | None) -> str:
    vals = [t for t in taints if t]
    return max(vals, key=_TAINT_RANK.__getitem__) if vals else "trusted"


def _confidence(n: int, factor: float = 1.0) -> float:
    return round(min(0.99, (1 - 0.5**n)) * factor, 3)


def _clean(s: str | None, limit: int = 120) -> str:
    s = " ".join((s or "").replace("`", "'").split())
    if len(s) <= limit:
        return s
    cut = s[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2:] else cut).rstrip(" ,;:") + "…"  # never mid-word


def _slug(text: str, limit: int = 60) -> str:
    """A file-name slug of ``text``; secrets are redacted first (their case matters to the detector), so a
    path never spells one out (``[REDACTED:github-token]`` slugs to ``redacted-github-token``)."""
    text, _ = redact(safety.strip_invisible(text)[0])
    words = re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", text).lower())
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > limit:
            break
        out = f"{out}-{w}" if out else w
    return out or "item"


def _sources(rows: list[dict], sid="session_id", eid="event_id", ts="ts") -> list[Source]:
    return [Source(session_id=r[sid], event_id=r.get(eid), ts=r.get(ts)) for r in rows if r.get(sid)]


def _cap(sources: list[Source], cap: int) -> list[Source]:
    """One source per session (earliest first), at most ``cap``; then sorted by time."""
    firsts: dict[str, Source] = {}
    for s in sorted(merge_sources(sources), key=Source.sort_key):
        firsts.setdefault(s.session_id, s)
    return sorted(list(firsts.values())[:cap], key=Source.sort_key)


def _fold_same_message(prefs: list[dict]) -> list[dict]:
    """Sentences of one message about one slot are one statement: "Don't use pip. Always use uv." is
    (value uv, avoid pip), not a separate "don't use pip" preference. A sentence of the slot that only
    rejects options is folded into the message's first sentence that names a value (unless it rejects
    that very value); the texts are joined in signal order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in prefs:
        if p.get("key"):
            groups[(p["session_id"], p["event_id"], p["key"])].append(p)
    target: dict[int, dict] = {}  # id(row) -> the row it is folded into
    for group in groups.values():
        valued = [g for g in group if g.get("value")]
        if not valued:
            continue
        head = valued[0]
        for g in group:
            if not g.get("value") and head["value"] not in (g.get("avoid") or []):
                target[id(g)] = head
    out = []
    for p in prefs:
        if id(p) in target:
            continue
        parts = [g for g in groups.get((p["session_id"], p["event_id"], p.get("key")), [])
                 if target.get(id(g)) is p] if p.get("key") else []
        if parts:
            rows = [g for g in groups[(p["session_id"], p["event_id"], p["key"])] if g is p or g in parts]
            p = {**p, "text": ". ".join(g["text"] for g in rows), "normalized": " ".join(g["normalized"] for g in rows),
                 "avoid": sorted({a for g in rows for a in (g.get("avoid") or [])})}
        out.append(p)
    return out


def _wilson_lower(k: int, n: int, z: float = 1.0) -> float:
    """Lower bound of the Wilson score interval of k successes in n trials (0 when n is 0)."""
    if n <= 0:
        return 0.0
    p = k / n
    d = 1 + z * z / n
    return (p + z * z / (2 * n) - z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5)) / d


def _shifted(a: tuple, b: tuple) -> bool:
    """``a`` and ``b`` overlap in all but one step of the shorter: a suffix of one is a prefix of the other."""
    k = min(len(a), len(b)) - 1
    return k >= 2 and (a[-k:] == b[:k] or b[-k:] == a[:k])


def _contains(big: tuple, small: tuple) -> bool:
    """``small`` occurs contiguously in ``big`` (and is shorter)."""
    n = len(small)
    return n < len(big) and any(big[i: i + n] == small for i in range(len(big) - n + 1))


def sessions_n(n: int) -> str:
    """'1 session', '3 sessions': a count as the notes say it."""
    return f"{n} session" if n == 1 else f"{n} sessions"
