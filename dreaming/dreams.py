"""The dream job as plain functions: create → read → curate → output, plus cancel and archive.

A dream never edits what it read: the base version is immutable and the candidate is a new
version of the same store that only becomes the head through promotion (dreaming.promotion).
Every step is re-runnable: a retried dream with the same id reuses what is already written.
Writing the output consumes no session: a session counts as dreamt over once a dream that read it
is promoted (dreaming.promotion), so a dream that never gets there loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from dreaming import ids, leases, rejections
from dreaming import notifications  # webhooks when a dream fails (issue 17)
from dreaming import tiers  # read-only context stores (issue 17)
from dreaming.atomic import write_text_atomic
from dreaming.catalog import Catalog
from dreaming.chaos import crash_point
from dreaming.changeset import apply_changes, counts, finalize, read_changeset, write_changeset
from dreaming.curators.base import CurationInput, CurationResult
from dreaming.errors import BadInput, Conflict, DreamFailure, InvalidState, NotFound, NothingToDream
from dreaming.lake import Lake
from dreaming.models import Change, Dream, DreamError, Memory, utcnow
from dreaming.policy import Policy
from dreaming.report import render_report
from dreaming.schema import MAX_MEMORIES
from dreaming.signals import Signals
from dreaming.stores import Scope, StoreService

CURATORS = ("rules", "claude")
OUTPUT_BEHAVIORS = ("create_new", "update_existing")
#: an event dated further than this past the wall clock is not plausible and does not date a dream
FUTURE_SLACK = timedelta(days=1)


def event_clock(sessions: list[dict], wall: datetime) -> datetime | None:
    """The dream's clock: the latest plausible event time of its sessions (their end, else their start
    when the end lies more than a day past ``wall``), or None when no session has a plausible time."""
    limit = wall.astimezone(UTC) + FUTURE_SLACK
    times = []
    for s in sessions:
        for t in (s.get("ended_at"), s.get("started_at")):
            if t is not None and t.astimezone(UTC) <= limit:
                times.append(t.astimezone(UTC))
                break
    return max(times, default=None)


@dataclass
class Selection:
    """How a dream picks its sessions: explicit ids, a time window, or all not yet dreamt over."""

    session_ids: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    all_new: bool = False

    @classmethod
    def for_day(cls, day: date | str) -> "Selection":
        d = date.fromisoformat(day) if isinstance(day, str) else day
        start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        return cls(since=start, until=start + timedelta(days=1))


@dataclass
class DreamInputs:
    """What the read step hands to the curator."""

    dream: Dream
    store: dict
    base: list[Memory]
    sessions: list[dict]
    signals: Signals
    now: datetime  # the dream's clock (event_clock), else its creation time for timestamps only
    notes: list[str] = field(default_factory=list)
    age_out: bool = True  # False without a plausible event time: nothing is pruned by age


class DreamService:
    def __init__(self, catalog: Catalog | None = None):
        self.catalog = catalog or Catalog()
        self.settings = self.catalog.settings
        self.left_over = 0  # sessions the last selection left for the next dream (the cap)
        self.stores = StoreService(self.catalog)

    # --- create -----------------------------------------------------------------------------

    def create(
        self,
        store_ref: str,
        selection: Selection | None = None,
        *,
        curator: str = "rules",
        model: str | None = None,
        instructions: str | None = None,
        output_behavior: str = "create_new",
        require_approval: bool = False,
        dream_id: str | None = None,
        flow_run_id: str | None = None,
        lease: bool = False,
    ) -> Dream:
        """Validate the request, resolve the sessions and record a `pending` dream.

        With ``dream_id`` given and already recorded, returns that dream (a retry resumes it).
        ``lease``: this process is about to run the dream; record its lease (dreaming.leases) with it.
        A store already at the size limit is refused (``input_memory_store_too_large``): its dream
        could not write a valid version.
        """
        if dream_id:
            try:
                d = self.catalog.get_dream(dream_id)
            except NotFound:
                pass
            else:
                if lease and d.status in leases.OPEN:
                    leases.take(self.catalog, d.id)
                return d
        if curator not in CURATORS:
            raise BadInput(f"unknown curator {curator!r}; choose one of {', '.join(CURATORS)}", field="curator")
        if output_behavior not in OUTPUT_BEHAVIORS:
            raise BadInput(f"output_behavior must be one of {', '.join(OUTPUT_BEHAVIORS)}", field="output_behavior")
        if instructions is not None:
            if not instructions.strip():
                instructions = None
            elif len(instructions) > self.settings.max_instructions_chars:
                raise BadInput(
                    f"instructions are {len(instructions)} characters; at most "
                    f"{self.settings.max_instructions_chars} are allowed",
                    field="instructions",
                )
        if curator == "claude":
            model = model or self.settings.default_model
            if model not in self.settings.allowed_models:
                raise BadInput(
                    f"model {model!r} is not allowed; allowed: {', '.join(self.settings.allowed_models)} "
                    "(setting DREAMS_ALLOWED_MODELS)",
                    field="model",
                )
        store = self.catalog.get_store(store_ref)
        if store["archived_at"] is not None:
            raise InvalidState(f"store {store['name']} is archived")
        tiers.check_writable(store, "dream over")  # a read-only tier: dream the working store that reads it
        self._check_room(store)
        selection = selection or Selection(all_new=True)
        session_ids = self.select_sessions(store, selection)
        if not session_ids:  # an empty dream would only write a copy of the head (and "promote" it)
            raise NothingToDream(_nothing_to_dream(store, selection))
        dream = Dream(
            id=dream_id or ids.new_id(ids.DREAM),
            store_id=store["id"],
            session_ids=sorted(session_ids),
            model={"id": model or curator},
            instructions=instructions,
            output_behavior=(
                {"type": "update_existing", "memory_store_id": store["id"]}
                if output_behavior == "update_existing"
                else {"type": "create_new"}
            ),
            curator=curator,
            flow_run_id=flow_run_id,
            require_approval=require_approval,
        )
        with self.catalog.tx() as conn:
            if output_behavior == "update_existing":  # Anthropic's 409, checked in the insert's transaction
                self._check_no_open_writer(conn, store["id"])
            self.catalog.insert_dream(dream, conn)
            if lease:
                leases.take(self.catalog, dream.id, conn)
        crash_point("create.after_insert")
        return dream

    def _check_no_open_writer(self, conn, store_id: str) -> None:
        """Conflict when another ``update_existing`` dream of the store is pending or running (Anthropic's
        409). Inside the insert's transaction, with the store's row locked (SQLite: ``BEGIN IMMEDIATE``;
        PostgreSQL: ``FOR UPDATE``), so of two racing creates — the API, `dreams run`, a flow — one fails."""
        import sqlalchemy as sa

        from dreaming.catalog import dreams as dreams_table, stores as stores_table

        conn.execute(sa.select(stores_table.c.id).where(stores_table.c.id == store_id).with_for_update())
        for did, status, body in conn.execute(sa.select(dreams_table.c.id, dreams_table.c.status, dreams_table.c.body)
                                              .where((dreams_table.c.store_id == store_id)
                                                     & dreams_table.c.status.in_(["pending", "running"]))):
            if ((body or {}).get("output_behavior") or {}).get("type") == "update_existing":
                raise Conflict(f"dream {did} (update_existing) of memory store {store_id} is still {status}; "
                               "wait for it to stop or cancel it")

    def _check_room(self, store: dict) -> None:
        """Refuse a dream of a store at (or over) MAX_MEMORIES before any work: it cannot add a memory,
        and curating that many would take minutes before the version write failed."""
        if store["head_version"] is None:
            return
        n = self.catalog.get_version(store["id"], store["head_version"])["memory_count"] or 0
        if n >= MAX_MEMORIES:
            raise BadInput(
                f"input_memory_store_too_large: store {store['name']} holds {n} memories at v{store['head_version']}; "
                f"a store holds at most {MAX_MEMORIES}, so a dream could not write a valid version. Prune or "
                "split the store first (e.g. export it, remove files, `dreams store create` from the folder)",
                field="store",
            )

    def select_sessions(self, store: dict, sel: Selection) -> list[str]:
        """Session ids for a dream of ``store``. Explicit ids must be sessions of the store's scope
        (NotFound before anything is recorded); read() checks them again, as the lake may change."""
        cap = self.settings.max_sessions_per_dream
        scope = Scope.parse(store["scope"])
        if sel.session_ids:
            ids_ = sorted(set(sel.session_ids))
            if len(ids_) > cap:
                raise BadInput(
                    f"{len(ids_)} sessions given; a dream takes at most {cap} (setting DREAMS_MAX_SESSIONS_PER_DREAM)",
                    field="session",
                )
            with Lake(self.settings) as lake:
                have = {r["session_id"] for r in lake.sessions(tenant=scope.tenant, agent=scope.agent,
                                                               session_ids=ids_)}
            missing = [s for s in ids_ if s not in have]
            if missing:
                raise NotFound(f"no session {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} in the lake "
                               f"within the store's scope {scope} (see `dreams sessions --tenant {scope.tenant}`)")
            return ids_
        with Lake(self.settings) as lake:
            rows = lake.sessions(tenant=scope.tenant, agent=scope.agent, since=sel.since, until=sel.until)
        chosen = [r["session_id"] for r in rows]
        if sel.all_new:
            done = self.catalog.dreamt_session_ids(store["id"]) | self.sessions_in_review(store["id"])
            chosen = [s for s in chosen if s not in done]
        self.left_over = max(0, len(chosen) - cap)  # said by the CLI: never a silent cap
        return chosen[:cap]  # oldest first; the rest wait for the next dream

    def sessions_in_review(self, store_id: str) -> set[str]:
        """Sessions of the store's dreams that wait for a person: not dreamt over yet (only promotion
        consumes a session), but a new ``--all`` dream leaves them to that decision rather than
        proposing the same changes again. Approval consumes them; rejection frees them."""
        held: set[str] = set()
        for d in self.catalog.list_dreams(store_id=store_id, statuses=["completed"], include_archived=True):
            if d.promotion.state == "awaiting_approval":
                held.update(d.session_ids)
        return held

    # --- read ---------------------------------------------------------------------------------

    def read(self, dream_id: str, policy: Policy | None = None) -> DreamInputs:
        """Mark the dream running, check its sessions, read the base version and extract signals."""
        dream = self.catalog.get_dream(dream_id)
        if dream.status == "pending":
            dream = self.catalog.transition(dream_id, "running")
        self._check_live(dream)
        crash_point("read.running")
        store = self.catalog.get_store(dream.store_id)
        base_version = dream.base_version or store["head_version"]
        if dream.base_version is None:
            dream = self.catalog.update_dream(dream_id, lambda d: setattr(d, "base_version", base_version))
        # chosen once (a retried read reads the same context), recorded as read: one gone from the lake is left out
        wanted = dream.context_session_ids if dream.context_session_ids is not None else self.context_for(dream, policy)
        base, sessions, signals, now, age_out, context = self.gather(
            store, dream.session_ids, base_version, dream.created_at, policy, context_ids=wanted)
        if context != dream.context_session_ids:
            dream = self.catalog.update_dream(dream_id, lambda d: setattr(d, "context_session_ids", context))
        return DreamInputs(dream=dream, store=store, base=base, sessions=sessions, signals=signals,
                           now=now, age_out=age_out)

    def context_for(self, dream: Dream, policy: Policy | None = None) -> list[str]:
        """The corroborating sessions of a dream: up to ``policy.context_sessions`` of the store's already-dreamt
        sessions, the most recently dreamt first. The offline curator only: the Claude curator's digest is the
        dream's input alone (its token cost follows the input)."""
        if dream.curator != "rules":
            return []
        limit = (policy or Policy()).context_sessions
        return sorted(self.catalog.recent_dreamt_session_ids(dream.store_id, limit, exclude=set(dream.session_ids)))

    def gather(self, store: dict, session_ids: list[str], base_version: int, created_at: datetime,
               policy: Policy | None = None, context_ids: list[str] | None = None,
               ) -> tuple[list[Memory], list[dict], Signals, datetime, bool, list[str]]:
        """Read-only: the base version's memories, the sessions (each must be in the lake, within the store's
        scope, else ``DreamFailure("input_session_unavailable")``), their signals, the dream's clock, whether
        age-based pruning applies, and which of ``context_ids`` were read. The signals cover the input and
        the context sessions found (in one scoped read); the sessions and the clock are the input's alone.
        What `read` hands the curator, and what `dreams digest` shows."""
        base = self.stores.read_version(store["id"], base_version)
        scope = Scope.parse(store["scope"])
        inputs = set(session_ids)
        wanted = [c for c in (context_ids or []) if c not in inputs]
        with Lake(self.settings) as lake, lake.scoped([*session_ids, *wanted], tenant=scope.tenant) as selected:
            # only the files that hold these sessions are read (the catalog's session index); keyed by
            # (tenant, session id): another tenant's session with the same id is not there. One query for the
            # input and the context sessions, split here
            asked = [*session_ids, *wanted]
            both = selected.sessions(tenant=scope.tenant, session_ids=asked) if asked else []
            sessions = [s for s in both if s["session_id"] in inputs]
            found = {s["session_id"]: s for s in sessions}
            for sid in session_ids:
                s = found.get(sid)
                if s is None:
                    raise DreamFailure("input_session_unavailable",
                                       f"session {sid} is not in the lake, or outside the store's scope {scope}")
                if scope.agent and s["agent_id"] != scope.agent:
                    raise DreamFailure(
                        "input_session_unavailable",
                        f"session {sid} belongs to agent {s['agent_id']}, outside the store's scope {scope}",
                    )
            context = sorted(s["session_id"] for s in both
                             if s["session_id"] not in inputs and (not scope.agent or s["agent_id"] == scope.agent))
            from dreaming.signals import extract_signals

            signals = extract_signals(selected, [*session_ids, *context], policy or Policy(), tenant=scope.tenant)
        clock = event_clock(sessions, created_at)
        return base, sessions, signals, (clock or created_at).astimezone(UTC), clock is not None, context

    # --- curate -------------------------------------------------------------------------------

    def curate(self, inputs: DreamInputs, policy: Policy | None = None, curator=None) -> CurationResult:
        """Run the dream's curator over the inputs; changes come back finalised and ordered."""
        from dreaming.curators import get_curator

        dream = inputs.dream
        self._check_live(self.catalog.get_dream(dream.id))
        cur = curator or get_curator(dream.curator)
        result = cur.curate(
            CurationInput(
                dream_id=dream.id,
                store=inputs.store,
                base=inputs.base,
                session_ids=dream.session_ids,
                context_session_ids=dream.context_session_ids or [],
                signals=inputs.signals,
                instructions=dream.instructions,
                policy=policy or Policy(),
                now=inputs.now,
                model=dream.model.get("id") if dream.curator == "claude" else None,
                age_out=inputs.age_out,
            )
        )
        result.changes = finalize(result.changes, dream.id)
        # a person rejected some of these before, on the same evidence: do not ask again
        result.changes, dropped = rejections.drop_rejected(result.changes,
                                                           rejections.rejected(self.catalog, dream.store_id))
        result.notes = [*result.notes, *dropped]
        result.changes, tiered = tiers.screen(self.catalog, inputs.store, inputs.base, result.changes, policy)
        result.notes = [*result.notes, *tiered]
        if not inputs.age_out:
            result.notes.append("no session with a plausible event time: nothing pruned by age (expired, stale)")
        crash_point("curate.done")
        if result.usage.total:
            self.catalog.update_dream(dream.id, lambda d: d.usage.add(result.usage))
        return result

    # --- output -------------------------------------------------------------------------------

    def output(self, inputs: DreamInputs, result: CurationResult) -> Dream:
        """Write the candidate version, the changeset and the report; mark the dream completed."""
        dream = self.catalog.get_dream(inputs.dream.id)
        self._check_live(dream)
        folder = self.settings.dreams_dir / dream.id
        changeset_path = folder / "changeset.parquet"
        changes = result.changes
        if dream.candidate_version is None or not changeset_path.exists():
            candidate = apply_changes(inputs.base, changes, now=inputs.now)
            if len(candidate) > MAX_MEMORIES:
                raise DreamFailure("input_memory_store_too_large",
                                   f"the candidate would hold {len(candidate)} memories; a store holds at most "
                                   f"{MAX_MEMORIES}. Prune or split the store first")
            c = counts(changes)
            message = f"dream {dream.id}: " + " ".join(f"{op} {n}" for op, n in c.items() if n and op != "keep")
            version = self.stores.write_version(
                dream.store_id, candidate, dream.base_version, {"type": "dream", "id": dream.id}, message
            )
            crash_point("output.version_written")
            write_changeset(changes, changeset_path, self.settings.staging_dir)
            crash_point("output.changeset_written")
            dream = self.catalog.update_dream(dream.id, lambda d: _set(d, candidate_version=version, counts=c))
        else:
            changes = read_changeset(changeset_path)
        write_text_atomic(render_report(dream, changes, result.notes), folder / "report.md", self.settings.staging_dir)

        def complete(d: Dream) -> None:
            if d.status != "running":
                raise InvalidState(f"dream {d.id} is {d.status}; it cannot complete")
            d.status = "completed"
            d.ended_at = utcnow()
            d.outputs = [{"type": "memory_store", "memory_store_id": d.store_id, "version": d.candidate_version}]

        with self.catalog.tx() as conn:  # the sessions count as dreamt over only once promoted
            d = self.catalog.get_dream(dream.id, conn)
            complete(d)
            self.catalog.save_dream(conn, d)
            leases.drop(self.catalog, d.id, conn)  # completed: not running any more
        crash_point("output.completed")
        return d

    # --- lifecycle ----------------------------------------------------------------------------

    @notifications.notifies("failed")
    def fail(self, dream_id: str, type: str, message: str) -> Dream:
        """Mark a pending/running dream failed; a terminal dream is left as it is."""
        d = self.catalog.get_dream(dream_id)
        if d.terminal:
            return d
        d = self.catalog.transition(dream_id, "failed", error=DreamError(type=type, message=message[:2000]))
        leases.drop(self.catalog, dream_id)
        return d

    def cancel(self, dream_id: str) -> Dream:
        """Cancel a pending or running dream (idempotent on a canceled one; 400-like on others)."""
        d = self.catalog.get_dream(dream_id)
        if d.status == "canceled":
            return d
        if d.status in ("completed", "failed"):
            raise InvalidState(f"dream {dream_id} is {d.status}; only pending or running dreams can be canceled")
        d = self.catalog.transition(dream_id, "canceled")
        leases.drop(self.catalog, dream_id)
        return d

    def archive(self, dream_id: str) -> Dream:
        """Archive a terminal dream (idempotent); pending/running ones must be canceled first."""

        def mutate(d: Dream) -> None:
            if not d.terminal:
                raise InvalidState(f"dream {dream_id} is {d.status}; cancel it first, then archive")
            if d.archived_at is None:
                d.archived_at = utcnow()

        return self.catalog.update_dream(dream_id, mutate)

    def changes(self, dream_id: str) -> list[Change]:
        d = self.catalog.get_dream(dream_id)
        path = self.settings.dreams_dir / d.id / "changeset.parquet"
        if not path.exists():
            raise InvalidState(f"dream {dream_id} is {d.status} and has no changeset yet")
        return read_changeset(path)

    def _check_live(self, d: Dream) -> None:
        if d.status == "canceled":
            raise DreamCanceled(d.id)
        if d.status == "failed":
            raise DreamFailure(d.error.type if d.error else "internal_error",
                               d.error.message if d.error else "the dream failed earlier")


class DreamCanceled(Exception):
    """The dream was canceled while running; the flow stops at the next step boundary."""


def _nothing_to_dream(store: dict, sel: Selection) -> str:
    window = "".join([f" since {sel.since:%Y-%m-%d %H:%M}" if sel.since else "",
                      f" until {sel.until:%Y-%m-%d %H:%M}" if sel.until else ""])
    why = " (every session of it is already dreamt over or waits for a person)" if sel.all_new else ""
    return (f"nothing to dream: no {'new ' if sel.all_new else ''}session of store {store['name']}'s scope "
            f"{store['scope']}{window}{why}; nothing recorded (see `dreams sessions --tenant "
            f"{Scope.parse(store['scope']).tenant}`)")


def _set(d: Dream, **kw) -> None:
    for k, v in kw.items():
        setattr(d, k, v)
