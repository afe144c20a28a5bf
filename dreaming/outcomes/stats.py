"""A rate with its interval, and the verdict on a memory: the vocabulary of `dreams outcomes`, defined once.

The interval is the Wilson score interval of a proportion at 95 % (``scipy.stats.binomtest(...).proportion_ci(
method="wilson")``): it stays honest at small counts (0 of 8 sessions is [0, 0.32], not "0 %"), which is what
keeps two sessions from being read as a trend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

CREDITED = "credited"
NOT_HELPING = "not helping"
TOO_EARLY = "too early"
VERDICTS = (CREDITED, NOT_HELPING, TOO_EARLY)
#: sessions after a promotion before a verdict other than "too early" is given
MIN_AFTER = 5
CONFIDENCE = 0.95


@dataclass
class Rate:
    sessions: int  # sessions in the window
    count: int  # of them, the sessions that show the pattern
    rate: float | None  # count / sessions (None without sessions)
    low: float | None  # the Wilson score interval at CONFIDENCE
    high: float | None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def rate(count: int, sessions: int, confidence: float = CONFIDENCE) -> Rate:
    if sessions <= 0:
        return Rate(0, 0, None, None, None)
    from scipy.stats import binomtest

    ci = binomtest(count, sessions).proportion_ci(confidence_level=confidence, method="wilson")
    return Rate(sessions, count, count / sessions, float(ci.low), float(ci.high))


def verdict(before: Rate, after: Rate, direction: str = "down", min_after: int = MIN_AFTER) -> tuple[str, str]:
    """(verdict, why). ``direction`` "down": the pattern should recur less (a mistake, a correction);
    "up": it should be followed more (a workflow).

    - too early: fewer than ``min_after`` sessions after the promotion, or no session before it to compare with,
      or (down) the pattern has not recurred but the interval cannot yet rule out the old rate;
    - credited: the after-rate's interval lies wholly below the before-rate (above it, for "up");
    - not helping: otherwise — the pattern keeps recurring at a rate the interval cannot tell from before.
    """
    if after.sessions < min_after:
        return TOO_EARLY, f"{after.sessions} session(s) since the promotion; {min_after} needed"
    if before.rate is None:
        return TOO_EARLY, "no session before the promotion to compare with"
    if direction == "up":
        if after.low > before.rate:
            return CREDITED, f"followed more: {_pct(after.low)}–{_pct(after.high)} after vs {_pct(before.rate)} before"
        return NOT_HELPING, f"not followed more: {_pct(after.low)}–{_pct(after.high)} after vs {_pct(before.rate)} before"
    if after.high < before.rate:
        how = "vanished" if after.count == 0 else "recurs less"
        return CREDITED, f"{how}: {_pct(after.low)}–{_pct(after.high)} after vs {_pct(before.rate)} before"
    if after.count == 0:
        return TOO_EARLY, (f"not seen since, but {after.sessions} sessions cannot rule out the old rate "
                           f"({_pct(before.rate)}; after ≤ {_pct(after.high)})")
    return NOT_HELPING, f"keeps recurring: {_pct(after.low)}–{_pct(after.high)} after vs {_pct(before.rate)} before"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"
