"""Time-ordered recurrence: sessions whose planted mistakes and statements recur on a schedule the caller sets.

What `dreams outcomes` and `dreams backtest` are checked on: a mistake that recurs daily until a memory about
it is promoted and then stops, another that keeps recurring, a statement a person keeps repeating, a mistake
that only starts after a backtest's split. ``plan`` items say which families a session carries and when it
starts; ``write_recurrence(settings, plans)`` renders them with the demo scenario's segment builders (the real
error texts and workarounds the rules curator mines) and writes them straight into the lake as one snapshot
(one Parquet file per tenant and day, registered in the catalog). Everything but the start times is derived
from the seed; the truth is the plans themselves (which session carries which family).

Families: ``mistake:pip`` (pip refuses an externally managed Python; uv works), ``mistake:migrate`` (a test
run hits a missing table; the migrations fix it), ``mistake:429`` (the billing API rate-limits; a retry after
the wait works), ``pref:commit-style`` and ``pref:branch`` (a person states a rule in their second message).
A session without families is filler (reads and notes).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from dreaming import ids
from dreaming.atomic import write_parquet_atomic
from dreaming.scenarios import demo
from dreaming.scenarios.bench import ROLE, TYPE
from dreaming.scenarios.core import Ev
from dreaming.settings import Settings

SEGMENTS = {"mistake:pip": demo.seg_pip, "mistake:migrate": demo.seg_migrate, "mistake:429": demo.seg_429}
STATEMENTS = {
    "pref:commit-style": "Always write commit messages in the imperative mood.",
    "pref:branch": "Never push directly to the main branch, open a pull request instead.",
}
FAMILIES = (*SEGMENTS, *STATEMENTS)
FMT = "anthropic"


@dataclass(frozen=True)
class Planned:
    session_id: str
    start: datetime
    families: tuple[str, ...] = ()


def daily(prefix: str, start: datetime, days: int, families: tuple[str, ...] = (), every: int = 1) -> list[Planned]:
    """One session a day for ``days`` days from ``start`` (``every``: only each n-th day carries the families)."""
    return [Planned(f"{prefix}{i:03d}", start + timedelta(days=i), families if i % every == 0 else ())
            for i in range(days)]


def spaced(prefix: str, start: datetime, n: int, gap: timedelta, families: tuple[str, ...] = ()) -> list[Planned]:
    """``n`` sessions ``gap`` apart from ``start``."""
    return [Planned(f"{prefix}{i:03d}", start + i * gap, families) for i in range(n)]


def _steps(rng: random.Random, p: Planned) -> list[Ev]:
    unknown = [f for f in p.families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown family {unknown[0]!r}; choose from {', '.join(FAMILIES)}")
    ctx = {"cwd": "/home/dev/acme-api"}
    steps = [Ev("user", f"{demo._task(rng, 'code')} (ticket {p.session_id})", gap_s=0)]
    for f in p.families:
        if f in STATEMENTS:
            steps += [Ev("assistant", "On it."), Ev("user", STATEMENTS[f])]
    for f in p.families:
        if f in SEGMENTS:
            steps += SEGMENTS[f](rng, FMT, ctx)
    steps += demo.seg_filler_code(rng, FMT, ctx)
    steps += [Ev("assistant", "Done."), Ev("outcome", "satisfied")]
    return steps


def _rows(p: Planned, steps: list[Ev], tenant: str, agent: str, snapshot_id: str, salt: str) -> list[dict]:
    rows, t, last_use = [], p.start, None
    for seq, e in enumerate(steps):
        t = t + timedelta(seconds=e.gap_s if seq else 0)
        eid = ids.stable_id(ids.EVENT, salt, p.session_id, seq)
        if e.kind == "tool_use":
            last_use = eid
        rows.append({
            "tenant": tenant, "agent_id": agent, "session_id": p.session_id, "seq": seq, "event_id": eid, "ts": t,
            "type": TYPE[e.kind], "role": ROLE[e.kind],
            "text": json.dumps(e.input) if e.kind == "tool_use" else e.text,
            "tool_name": e.tool if e.kind == "tool_use" else None,
            "tool_use_id": last_use if e.kind in ("tool_use", "tool_result") else None,
            "tool_input": json.dumps(e.input) if e.kind == "tool_use" else None,
            "is_error": bool(e.is_error) or e.kind == "error",
            "outcome": e.text if e.kind == "outcome" else None,
            "source_format": FMT, "snapshot_id": snapshot_id, "raw": None,
        })
    return rows


def write_recurrence(settings: Settings, plans: list[Planned], *, tenant: str = "acme", agent: str = "coder",
                     seed: int = 0, snapshot_id: str | None = None) -> list:
    """Write ``plans`` into the lake as one snapshot; returns the files written."""
    from dreaming.catalog import Catalog
    from dreaming.schema import EVENT_SCHEMA

    salt = f"recurrence:{seed}"
    snapshot_id = snapshot_id or ids.stable_id(ids.SNAPSHOT, salt, *(p.session_id for p in plans))
    by_day: dict[str, list[dict]] = {}
    for p in plans:
        rng = random.Random(f"{salt}:{p.session_id}")
        by_day.setdefault(p.start.strftime("%Y-%m-%d"), []).extend(
            _rows(p, _steps(rng, p), tenant, agent, snapshot_id, salt))
    paths = []
    for day, rows in sorted(by_day.items()):
        path = settings.transcripts_dir / f"tenant={tenant}" / f"day={day}" / f"{snapshot_id}.parquet"
        paths.append(write_parquet_atomic(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), path, settings.staging_dir))
    cat = Catalog(settings)  # the lake reads only the files the catalog registers
    try:
        cat.register_written(snapshot_id, paths, rows=sum(len(r) for r in by_day.values()), sessions=len(plans))
    finally:
        cat.engine.dispose()
    return paths


def carrying(plans: list[Planned], family: str) -> list[str]:
    """The planned sessions that carry ``family`` (the truth a test counts against)."""
    return [p.session_id for p in plans if family in p.families]
