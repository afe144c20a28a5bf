"""Time windows as users write them: durations (``7d``, ``12h``, ``30m``, ``2w``) and ISO dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from dreaming.errors import BadInput

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1),
         "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: str | None) -> timedelta | None:
    """``7d`` → 7 days; None when ``text`` is not a duration."""
    m = _DURATION.match((text or "").strip())
    return int(m.group(1)) * _UNIT[m.group(2)] if m else None


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """A duration back from ``now`` (default: the clock) or an ISO date/time, as an aware UTC time."""
    if not text:
        return None
    span = parse_duration(text)
    if span is not None:
        return (now or datetime.now(UTC)) - span
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"expected a duration like 7d / 12h or an ISO date, got {text!r}", field="since") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
