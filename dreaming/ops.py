"""Day-to-day operations as plain functions: backfill plans, fleet selection, the stale-dream reaper.

The Prefect flows in flows/backfill.py and flows/fleet.py compose these; nothing here imports
Prefect. The reaper asks about flow runs through a callable that the caller passes in, so the
core package stays free of the Prefect client.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

from dreaming import ids, leases
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService
from dreaming.errors import BadInput, NotFound
from dreaming.lake import Lake
from dreaming.models import Dream, DreamError, utcnow
from dreaming.stores import Scope

MAX_BACKFILL_DAYS = 366
#: Prefect state types after which a flow run does nothing more.
FINAL_RUN_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
#: A dream still ``pending`` with no flow run attached after this long was abandoned.
DEFAULT_REAP_GRACE = timedelta(minutes=15)


# --- days -------------------------------------------------------------------------------------


def parse_day(text: str | date, field: str = "day") -> date:
    """``YYYY-MM-DD`` (a UTC day) → date; anything else is a BadInput naming the field."""
    if isinstance(text, datetime):
        return text.astimezone(UTC).date()
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise BadInput(f"expected a date like 2026-11-02, got {text!r}", field=field) from None


def days_between(start: str | date, end: str | date) -> list[date]:
    """Every UTC day from ``start`` to ``end``, both included, oldest first."""
    a, b = parse_day(start, "from"), parse_day(end, "to")
    if b < a:
        raise BadInput(f"--to {b} is before --from {a}", field="to")
    n = (b - a).days + 1
    if n > MAX_BACKFILL_DAYS:
        raise BadInput(f"{n} days asked; a backfill covers at most {MAX_BACKFILL_DAYS} days", field="to")
    return [a + timedelta(days=i) for i in range(n)]


# --- backfill ---------------------------------------------------------------------------------


def backfill_dream_id(catalog: Catalog, store_id: str, day: date, part: int = 1) -> str:
    """The deterministic dream id of a backfill day: ``stable_id(drm, backfill, store, day)``.

    Re-running a day finds the same dream (its candidate and changeset are reused and it is never
    promoted twice). Only when that dream ended ``failed`` or ``canceled`` does a re-run move on to
    the next attempt id (``…, day, 2``, ``…, day, 3``), so a failed day can be retried. A day with more
    sessions than a dream takes is several parts; part ``k > 1`` adds ``part-k`` to the id.
    """
    attempt = 1
    while True:
        parts = ("backfill", store_id, day.isoformat()) + ((f"part-{part}",) if part > 1 else ()) + (
            (attempt,) if attempt > 1 else ())
        did = ids.stable_id(ids.DREAM, *parts)
        try:
            d = catalog.get_dream(did)
        except NotFound:
            return did
        if d.status not in ("failed", "canceled"):
            return did
        attempt += 1


@dataclass
class BackfillDay:
    """One day of a backfill plan (and, after the run, its outcome)."""

    day: str
    dream_id: str
    sessions: int
    action: str  # run | skip | done | resume
    part: str | None = None  # "2/3" when the day has more sessions than a dream takes (else None)
    status: str | None = None  # the dream's status when planned / after the run
    promotion: str | None = None
    changes: int | None = None
    error: str | None = None

    session_ids: list[str] | None = None  # the part's sessions (None: the whole day)

    def row(self) -> dict:
        out = asdict(self)
        out.pop("session_ids")
        return out


def plan_backfill(catalog: Catalog, store_ref: str, start: str | date, end: str | date) -> list[BackfillDay]:
    """What a backfill of ``store_ref`` over ``start..end`` will do, day by day, oldest first.

    ``run``: a new dream over that day's sessions; ``resume``: a dream of that day exists but is
    not finished (it is resumed, never promoted twice); ``done``: already completed and decided;
    ``skip``: the day has no sessions in the store's scope. A day with more sessions than a dream takes
    (``max_sessions_per_dream``) becomes consecutive parts, oldest sessions first, each its own dream:
    nothing is marked done that was not read.
    """
    days = days_between(start, end)
    store = catalog.get_store(store_ref)
    scope = Scope.parse(store["scope"])
    lo = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    hi = datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC) + timedelta(days=1)
    with Lake(catalog.settings) as lake:
        rows = lake.sessions(tenant=scope.tenant, agent=scope.agent, since=lo, until=hi)
    per_day: dict[date, list[str]] = {}
    for r in sorted(rows, key=lambda r: (r["started_at"], r["session_id"])):
        per_day.setdefault(r["started_at"].astimezone(UTC).date(), []).append(r["session_id"])
    cap = catalog.settings.max_sessions_per_dream
    plan = []
    for day in days:
        sids = per_day.get(day, [])
        chunks = [sids[i: i + cap] for i in range(0, len(sids), cap)] or [[]]
        for k, chunk in enumerate(chunks, start=1):
            did = backfill_dream_id(catalog, store["id"], day, k)
            try:
                d = catalog.get_dream(did)
            except NotFound:
                d = None
            if d is None:
                action = "run" if chunk else "skip"
            elif d.status == "completed" and d.promotion.state != "not_requested":
                action = "done"
            else:
                action = "resume"
            split = len(chunks) > 1
            item = BackfillDay(day=day.isoformat(), dream_id=did, sessions=len(chunk), action=action,
                               part=f"{k}/{len(chunks)}" if split else None, session_ids=chunk if split else None)
            if d is not None:
                fill_outcome(item, d)
            plan.append(item)
    return plan


def fill_outcome(item: BackfillDay, d: Dream) -> BackfillDay:
    item.status = d.status
    item.promotion = d.promotion.state
    item.changes = sum(n for op, n in d.counts.items() if op != "keep") if d.counts else 0
    item.error = f"{d.error.type}: {d.error.message}" if d.error else None
    return item


# --- fleet ------------------------------------------------------------------------------------


def scope_matches(scope: str, selector: str) -> bool:
    """``acme`` matches scope ``acme`` and every ``acme/<agent>``; globs (``acme/support-*``) use fnmatch."""
    if any(c in selector for c in "*?["):
        return fnmatch.fnmatchcase(scope, selector)
    return scope == selector or scope.startswith(selector.rstrip("/") + "/")


def select_fleet_stores(
    catalog: Catalog,
    scope: str | None = None,
    stores: Iterable[str] | None = None,
    only_new: bool = False,
) -> list[dict]:
    """Stores a fleet run dreams, in creation order (archived stores never).

    ``scope``: a tenant (``acme``), a scope (``acme/support``) or a glob; ``stores``: ids or names;
    ``only_new``: only stores whose scope has sessions not yet dreamt over.
    """
    chosen = catalog.list_stores()
    if stores:
        wanted = list(stores)
        by_ref = {s["id"]: s for s in chosen} | {s["name"]: s for s in chosen}
        missing = [w for w in wanted if w not in by_ref]
        if missing:
            raise NotFound(f"no store {', '.join(map(repr, missing))} (see `dreams store list`)")
        keep = {by_ref[w]["id"] for w in wanted}
        chosen = [s for s in chosen if s["id"] in keep]
    if scope:
        chosen = [s for s in chosen if scope_matches(s["scope"], scope)]
    if only_new and chosen:
        fresh, seen = [], {}
        with Lake(catalog.settings) as lake:
            for s in chosen:
                sc = Scope.parse(s["scope"])
                key = (sc.tenant, sc.agent)
                if key not in seen:  # each scope's sessions once, from the session index (not the whole lake)
                    seen[key] = {r["session_id"] for r in lake.sessions(tenant=sc.tenant, agent=sc.agent)}
                if seen[key] - catalog.dreamt_session_ids(s["id"]) - DreamService(catalog).sessions_in_review(s["id"]):
                    fresh.append(s)
        chosen = fresh
    return chosen


def outcome_row(store: dict, d: Dream | None, error: str | None = None, seconds: float | None = None,
                skipped: str | None = None) -> dict:
    """One line of a fleet summary table (``skipped``: why no dream was recorded — no session to dream over)."""
    return {
        "store": store["name"],
        "store_id": store["id"],
        "dream_id": d.id if d else None,
        "status": d.status if d else ("skipped" if skipped else "failed"),
        "promotion": d.promotion.state if d else None,
        "sessions": len(d.session_ids) if d else None,
        "changes": sum(n for op, n in d.counts.items() if op != "keep") if d and d.counts else 0,
        "error": error or (f"{d.error.type}: {d.error.message}" if d and d.error else None),
        "note": skipped,
        "seconds": round(seconds, 2) if seconds is not None else None,
    }


# --- reaper -----------------------------------------------------------------------------------


def reap_stale_dreams(
    catalog: Catalog,
    store_id: str,
    run_state: Callable[[str], str | None],
    *,
    exclude: Iterable[str] = (),
    grace: timedelta = DEFAULT_REAP_GRACE,
    now: datetime | None = None,
) -> list[Dream]:
    """Mark failed (error type ``crashed``) the dreams of a store left open by a run that died.

    The lease decides first (dreaming.leases): a ``pending``/``running`` dream whose lease has not
    expired is alive; one whose lease expired lost its process and is reaped whatever the
    orchestrator says (a killed run can stay RUNNING forever in a temporary Prefect server's
    database, or the server may be gone). Without a lease row (dreams recorded before leases, or
    by code that does not hold one) the orchestrator decides: a dream is stale when its flow run
    is final (``run_state`` returns one of FINAL_RUN_STATES) or unknown (``run_state`` returns
    None), or when it has no flow run at all and is older than ``grace``; a run still alive
    (running, paused, scheduled…) is left alone, and so is every such dream when ``run_state``
    raises (better to leave a record open than to fail a live one). Returns the dreams it marked.
    """
    now = now or utcnow()
    skip = set(exclude)
    reaped = []
    for d in catalog.list_dreams(store_id=store_id, statuses=list(leases.OPEN), include_archived=True):
        if d.id in skip:
            continue
        lease = leases.get_lease(catalog, d.id)
        if lease is not None:
            if not leases.expired(lease, now):
                continue
            why = (f"its lease (held by {lease['owner']}) expired at {lease['expires_at'].isoformat()} "
                   "without renewal: its process is gone")
        elif d.flow_run_id is None:
            if now - d.created_at < grace:
                continue
            why = f"no flow run picked it up within {int(grace.total_seconds())} s"
        else:
            try:
                state = run_state(d.flow_run_id)
            except Exception:  # noqa: BLE001 - orchestrator unreachable: decide nothing
                continue
            if state is not None and state.upper() not in FINAL_RUN_STATES:
                continue
            why = (f"its flow run {d.flow_run_id} is unknown to the orchestrator" if state is None
                   else f"its flow run {d.flow_run_id} ended {state.upper()} while the dream was {d.status}")
        r = _reap(catalog, d.id, f"the run was killed or lost: {why}", lease is not None, now)
        if r is not None:
            reaped.append(r)
    return reaped


def _reap(catalog: Catalog, dream_id: str, message: str, by_lease: bool, now: datetime) -> Dream | None:
    """Fail the dream (``crashed``) and drop its lease in one transaction, unless it finished or (when
    reaped for its lease) its lease was renewed meanwhile."""
    with catalog.tx() as conn:
        d = catalog.get_dream(dream_id, conn)
        if d.status not in leases.OPEN:
            return None
        if by_lease:
            lease = leases.get_lease(catalog, dream_id, conn)
            if lease is not None and not leases.expired(lease, now):
                return None
        d.status, d.ended_at = "failed", utcnow()
        d.error = DreamError(type="crashed", message=message)
        catalog.save_dream(conn, d)
        leases.drop(catalog, dream_id, conn)
    return d
