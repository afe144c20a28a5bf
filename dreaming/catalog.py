"""The catalog: small, concurrently written metadata (stores and heads, versions, dreams, snapshots).

SQLite under the lake root in WAL mode with a busy timeout, reached through SQLAlchemy Core so that
Postgres can replace it (set ``DREAMS_CATALOG_URL``). Parquet holds the data; this holds pointers.
Writes that must not interleave (head compare-and-swap, status transitions) run in one transaction
that takes the write lock up front (``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE`` elsewhere).
The schema is managed by Alembic migrations (dreaming/migrations), applied by ``Catalog()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import event

from dreaming.errors import Conflict, InvalidState, NotFound
from dreaming.models import Dream, utcnow
from dreaming.settings import Settings, get_settings
from dreaming.catalog_schema import (  # noqa: F401  (re-exported: the tables are reached as dreaming.catalog.X)
    metadata,
    stores,
    store_versions,
    dreams,
    snapshots,
    originals,
    lake_files,
    session_index,
    dreamt_sessions,
    rejected_changes,
    dream_leases,
    api_keys,
    change_decisions,
    notifications,
)

ALLOWED_TRANSITIONS = {
    "pending": {"running", "canceled", "failed"},
    "running": {"completed", "failed", "canceled"},
    "completed": set(),
    "failed": set(),
    "canceled": set(),
}


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


class Catalog:
    """Thin, typed access to the catalog tables. One instance per process is enough."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        url = self.settings.resolved_catalog_url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.settings.home.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"timeout": 30}, poolclass=sa.pool.NullPool)

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _rec):  # pragma: no cover - trivial
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(self.engine, "begin")
            def _begin(conn):  # pragma: no cover - trivial
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema to head: one plain query when it is there already (no Alembic import:
        CLI start-up), else ``dreaming.migrations.upgrade`` (serialized across processes)."""
        from dreaming import migrations

        if migrations.current_revision(self.engine) != migrations.HEAD:
            migrations.upgrade(self.engine)

    @contextmanager
    def tx(self) -> Iterator[sa.Connection]:
        """One write transaction (takes the write lock at BEGIN on SQLite)."""
        with self.engine.begin() as conn:
            yield conn

    # --- stores -------------------------------------------------------------------------------

    def insert_store(self, conn: sa.Connection, row: dict) -> None:
        """Insert a store; its ``tenant`` is its scope's. A name is unique within a tenant (InvalidState)."""
        tenant = row["scope"].partition("/")[0]
        if conn.execute(sa.select(stores.c.id).where((stores.c.name == row["name"])
                                                     & (stores.c.tenant == tenant))).first():
            raise InvalidState(f"a memory store named {row['name']!r} already exists in tenant {tenant!r}")
        conn.execute(stores.insert().values(**row, tenant=tenant))

    def get_store(self, ref: str) -> dict:
        """A store by id, by name, or by ``tenant:name``. A name that stores of several tenants hold is
        refused (BadInput): give the id or ``tenant:name``."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(stores).where(stores.c.id == ref)).mappings().first()
            rows = [] if r is not None else conn.execute(sa.select(stores).where(stores.c.name == ref)).mappings().all()
            if r is None and not rows and ":" in ref:
                tenant, _, name = ref.partition(":")
                rows = conn.execute(sa.select(stores).where((stores.c.tenant == tenant)
                                                            & (stores.c.name == name))).mappings().all()
        if r is None and len(rows) > 1:
            raise ambiguous_name(ref, [x["tenant"] for x in rows])
        r = r if r is not None else (rows[0] if rows else None)
        if r is None:
            raise NotFound(f"no memory store {ref!r} (give a memstore_ id, a store name or tenant:name; "
                           "see `dreams store list`)")
        return self._store(r)

    def list_stores(self, include_archived: bool = False) -> list[dict]:
        q = sa.select(stores).order_by(stores.c.created_at, stores.c.id)
        if not include_archived:
            q = q.where(stores.c.archived_at.is_(None))
        with self.engine.connect() as conn:
            return [self._store(r) for r in conn.execute(q).mappings()]

    def update_store(self, store_id: str, **fields) -> dict:
        """Set ``name``, ``description``, ``metadata`` or ``archived_at`` of a store (``updated_at`` moves);
        returns the store. A name another store holds is refused (InvalidState)."""
        allowed = {"name", "description", "metadata", "archived_at"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not a store field to update: {', '.join(sorted(bad))}")
        with self.tx() as conn:
            tenant = sa.select(stores.c.tenant).where(stores.c.id == store_id).scalar_subquery()
            if "name" in fields and conn.execute(sa.select(stores.c.id).where(
                    (stores.c.name == fields["name"]) & (stores.c.id != store_id) & (stores.c.tenant == tenant))).first():
                raise InvalidState(f"a memory store named {fields['name']!r} already exists in this tenant")
            res = conn.execute(stores.update().where(stores.c.id == store_id).values(**fields, updated_at=utcnow()))
            if res.rowcount != 1:
                raise NotFound(f"no memory store {store_id!r}")
        return self.get_store(store_id)

    def delete_store(self, store_id: str) -> list[str]:
        """Remove a store, its versions, its watermark and its rejected-change fingerprints from the catalog,
        in one transaction; refused (InvalidState) while a dream of it is pending or running. Returns the
        lake-relative paths of its version files, for the caller to remove once this committed."""
        with self.tx() as conn:
            if conn.execute(sa.select(stores.c.id).where(stores.c.id == store_id)).first() is None:
                raise NotFound(f"no memory store {store_id!r}")
            busy = conn.execute(sa.select(dreams.c.id).where(
                (dreams.c.store_id == store_id) & dreams.c.status.in_(["pending", "running"]))).first()
            if busy is not None:
                raise InvalidState(f"memory store {store_id} has a {busy[0]} dream still running; cancel it first")
            paths = [p for p in conn.execute(sa.select(store_versions.c.path).where(
                store_versions.c.store_id == store_id)).scalars() if p]
            conn.execute(dreamt_sessions.delete().where(dreamt_sessions.c.store_id == store_id))
            conn.execute(rejected_changes.delete().where(rejected_changes.c.store_id == store_id))
            conn.execute(store_versions.delete().where(store_versions.c.store_id == store_id))
            conn.execute(stores.delete().where(stores.c.id == store_id))
        return paths

    @staticmethod
    def _tenant_clause(tenant: str):
        """Stores whose scope is ``tenant`` or ``tenant/<agent>``."""
        return (stores.c.scope == tenant) | stores.c.scope.startswith(tenant + "/", autoescape=True)

    def list_stores_page(self, *, tenant: str | None = None, include_archived: bool = False,
                         created_gte: datetime | None = None, created_lte: datetime | None = None,
                         after: tuple[datetime, str] | None = None, limit: int = 20) -> list[dict]:
        """One page of stores, oldest first (``created_at``, ``id``), strictly after the keyset ``after``;
        up to ``limit`` rows (ask for one more to learn whether a next page exists)."""
        q = sa.select(stores).order_by(stores.c.created_at, stores.c.id).limit(limit)
        if tenant is not None:
            q = q.where(self._tenant_clause(tenant))
        if not include_archived:
            q = q.where(stores.c.archived_at.is_(None))
        if created_gte is not None:
            q = q.where(stores.c.created_at >= created_gte)
        if created_lte is not None:
            q = q.where(stores.c.created_at <= created_lte)
        if after is not None:
            at, sid = after
            q = q.where((stores.c.created_at > at) | ((stores.c.created_at == at) & (stores.c.id > sid)))
        with self.engine.connect() as conn:
            return [self._store(r) for r in conn.execute(q).mappings()]

    @staticmethod
    def _store(r) -> dict:
        d = dict(r)
        d.pop("tenant", None)  # the scope's tenant, kept for the name's uniqueness (0003); the scope says it
        for k in ("created_at", "updated_at", "archived_at"):
            d[k] = _aware(d[k])
        return d

    def cas_head(self, conn: sa.Connection, store_id: str, expected: int | None, new: int) -> None:
        """Move ``store_id``'s head from ``expected`` to ``new``; raise Conflict if it moved."""
        res = conn.execute(
            stores.update()
            .where(stores.c.id == store_id)
            .where(
                stores.c.head_version.is_(None) if expected is None else stores.c.head_version == expected
            )
            .values(head_version=new, updated_at=utcnow())
        )
        if res.rowcount != 1:
            cur = conn.execute(sa.select(stores.c.head_version).where(stores.c.id == store_id)).scalar()
            raise Conflict(f"store {store_id} head is v{cur}, not v{expected}: somebody promoted first")

    # --- versions -----------------------------------------------------------------------------

    def reserve_version(
        self, store_id: str, parent_version: int | None, created_by: dict, message: str
    ) -> int:
        """Allocate the next version number (state 'reserved' until its file is in place)."""
        with self.tx() as conn:
            if not self.is_sqlite:  # two reservations must not read the same max: hold the store's row
                conn.execute(sa.select(stores.c.id).where(stores.c.id == store_id).with_for_update())
            cur = conn.execute(
                sa.select(sa.func.max(store_versions.c.version)).where(store_versions.c.store_id == store_id)
            ).scalar()
            version = (cur or 0) + 1
            conn.execute(
                store_versions.insert().values(
                    store_id=store_id,
                    version=version,
                    state="reserved",
                    parent_version=parent_version,
                    created_by=created_by,
                    message=message,
                    created_at=utcnow(),
                )
            )
        return version

    def finish_version(
        self, conn: sa.Connection, store_id: str, version: int, path: str, sha: str, count: int
    ) -> None:
        conn.execute(
            store_versions.update()
            .where((store_versions.c.store_id == store_id) & (store_versions.c.version == version))
            .values(state="ready", path=path, file_sha256=sha, memory_count=count)
        )

    def get_version(self, store_id: str, version: int) -> dict:
        with self.engine.connect() as conn:
            r = (
                conn.execute(
                    sa.select(store_versions).where(
                        (store_versions.c.store_id == store_id)
                        & (store_versions.c.version == version)
                        & (store_versions.c.state == "ready")
                    )
                )
                .mappings()
                .first()
            )
        if r is None:
            raise NotFound(f"store {store_id} has no version {version}")
        d = dict(r)
        d["created_at"] = _aware(d["created_at"])
        return d

    def list_versions(self, store_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(store_versions)
                .where((store_versions.c.store_id == store_id) & (store_versions.c.state == "ready"))
                .order_by(store_versions.c.version)
            ).mappings()
            out = [dict(r) for r in rows]
        for d in out:
            d["created_at"] = _aware(d["created_at"])
        return out

    # --- dreams -------------------------------------------------------------------------------

    def insert_dream(self, dream: Dream, conn: sa.Connection | None = None) -> None:
        if conn is None:
            with self.tx() as c:
                return self.insert_dream(dream, c)
        conn.execute(dreams.insert().values(**self._dream_row(dream)))

    @staticmethod
    def _dream_row(d: Dream) -> dict:
        return {
            "id": d.id,
            "store_id": d.store_id,
            "status": d.status,
            "created_at": d.created_at,
            "archived_at": d.archived_at,
            "body": json.loads(d.model_dump_json()),
        }

    def get_dream(self, dream_id: str, conn: sa.Connection | None = None) -> Dream:
        q = sa.select(dreams.c.body).where(dreams.c.id == dream_id)
        if conn is not None and not self.is_sqlite:  # read-modify-write: hold the row (SQLite holds the db)
            q = q.with_for_update()
        if conn is None:
            with self.engine.connect() as c:
                body = c.execute(q).scalar()
        else:
            body = conn.execute(q).scalar()
        if body is None:
            raise NotFound(f"no dream {dream_id!r} (see `dreams list`)")
        return Dream.model_validate(body)

    def save_dream(self, conn: sa.Connection, dream: Dream) -> None:
        conn.execute(dreams.update().where(dreams.c.id == dream.id).values(**self._dream_row(dream)))

    def update_dream(self, dream_id: str, mutate) -> Dream:
        """Read-modify-write a dream in one transaction; ``mutate(dream)`` may raise to abort."""
        with self.tx() as conn:
            d = self.get_dream(dream_id, conn)
            mutate(d)
            self.save_dream(conn, d)
        return d

    def transition(self, dream_id: str, to: str, **fields) -> Dream:
        """Move a dream to status ``to`` if the lifecycle allows it; terminal statuses never change."""

        def mutate(d: Dream) -> None:
            if to not in ALLOWED_TRANSITIONS[d.status]:
                raise InvalidState(f"dream {d.id} is {d.status}; it cannot become {to}")
            d.status = to
            for k, v in fields.items():
                setattr(d, k, v)
            if to in ("completed", "failed", "canceled"):
                d.ended_at = utcnow()

        return self.update_dream(dream_id, mutate)

    def list_dreams(
        self,
        store_id: str | None = None,
        statuses: list[str] | None = None,
        include_archived: bool = False,
        limit: int | None = None,
    ) -> list[Dream]:
        q = sa.select(dreams.c.body).order_by(dreams.c.created_at.desc(), dreams.c.id.desc())
        if store_id:
            q = q.where(dreams.c.store_id == store_id)
        if statuses:
            q = q.where(dreams.c.status.in_(statuses))
        if not include_archived:
            q = q.where(dreams.c.archived_at.is_(None))
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [Dream.model_validate(b) for b in conn.execute(q).scalars()]

    def list_dreams_page(self, *, tenant: str | None = None, statuses: list[str] | None = None,
                         include_archived: bool = False, created_gt: datetime | None = None,
                         created_lt: datetime | None = None, before: tuple[datetime, str] | None = None,
                         limit: int = 20) -> list[Dream]:
        """One page of dreams, newest first (``created_at``, ``id`` descending), strictly after the keyset
        ``before`` in that order; ``tenant``: only dreams of that tenant's stores."""
        q = sa.select(dreams.c.body).order_by(dreams.c.created_at.desc(), dreams.c.id.desc()).limit(limit)
        if tenant is not None:
            q = q.where(dreams.c.store_id.in_(sa.select(stores.c.id).where(self._tenant_clause(tenant))))
        if statuses:
            q = q.where(dreams.c.status.in_(statuses))
        if not include_archived:
            q = q.where(dreams.c.archived_at.is_(None))
        if created_gt is not None:
            q = q.where(dreams.c.created_at > created_gt)
        if created_lt is not None:
            q = q.where(dreams.c.created_at < created_lt)
        if before is not None:
            at, did = before
            q = q.where((dreams.c.created_at < at) | ((dreams.c.created_at == at) & (dreams.c.id < did)))
        with self.engine.connect() as conn:
            return [Dream.model_validate(b) for b in conn.execute(q).scalars()]

    # --- snapshots ----------------------------------------------------------------------------

    def insert_snapshot(self, conn: sa.Connection, row: dict) -> None:
        conn.execute(snapshots.insert().values(**row))

    def list_snapshots(self, tenant: str | None = None) -> list[dict]:
        q = sa.select(snapshots).order_by(snapshots.c.created_at)
        if tenant:
            q = q.where(snapshots.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def snapshot_files(self) -> list[str]:
        """Every lake-relative Parquet path the catalog registers, in registration order: the
        lake reads exactly these (dreaming/lake.py), never a glob of what happens to be on disk."""
        q = sa.select(snapshots.c.files).order_by(snapshots.c.created_at, snapshots.c.id)
        with self.engine.connect() as conn:
            return [f for files in conn.execute(q).scalars() for f in (files or [])]

    def original_files(self) -> list[str]:
        """Lake-relative paths of the registered ``--keep-secrets`` sidecar files."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(originals.c.path)).scalars())

    def insert_original(self, conn: sa.Connection, row: dict) -> None:
        conn.execute(originals.insert().values(**row))

    def register_written(self, snapshot_id: str, paths: list, rows: int = 0, sessions: int = 0,
                         source_format: str = "anthropic", agent_id: str | None = None) -> None:
        """Register Parquet files written straight into the lake (generators, test factories) as
        snapshots, one row per tenant (``tenant=<t>`` in the path), so that the lake reads them."""
        from dreaming import lake_index

        home = self.settings.home
        by_tenant: dict[str, list[str]] = {}
        built = []
        for p in paths:
            rel = p.resolve().relative_to(home.resolve()).as_posix()
            tenant = next(part[7:] for part in rel.split("/") if part.startswith("tenant="))
            by_tenant.setdefault(tenant, []).append(rel)
        sid_of = {tenant: snapshot_id if n == 0 else f"{snapshot_id}~{tenant}"
                  for n, tenant in enumerate(sorted(by_tenant))}
        for tenant, files in by_tenant.items():  # the session index, in the same transaction
            built += [lake_index.index_file(home / rel, rel, sid_of[tenant]) for rel in files]
        with self.tx() as conn:
            lake_index.insert(conn, [f for f, _ in built], [s for _, rows in built for s in rows])
            for tenant, files in sorted(by_tenant.items()):
                sid = sid_of[tenant]
                self.insert_snapshot(conn, {
                    "id": sid, "tenant": tenant, "agent_id": agent_id, "source_path": "(written directly)",
                    "source_sha256": f"direct:{sid}", "source_format": source_format, "files": files,
                    "days": sorted({f.split("day=", 1)[1].split("/", 1)[0] for f in files if "day=" in f}),
                    "rows": rows, "sessions": sessions, "created_at": utcnow()})

    # --- watermark: sessions already dreamt over, per store -----------------------------------
    # A session counts as dreamt over for a store only once a dream that read it was PROMOTED into
    # that store's lineage: dreaming.promotion marks it in the head compare-and-swap transaction.

    def mark_dreamt(self, conn: sa.Connection, store_id: str, session_ids: list[str], dream_id: str) -> None:
        if not session_ids:
            return
        have = set(
            conn.execute(
                sa.select(dreamt_sessions.c.session_id).where(
                    (dreamt_sessions.c.store_id == store_id) & dreamt_sessions.c.session_id.in_(session_ids)
                )
            ).scalars()
        )
        new = [{"store_id": store_id, "session_id": s, "dream_id": dream_id} for s in session_ids if s not in have]
        if new:
            conn.execute(dreamt_sessions.insert(), new)

    def dreamt_rows(self, conn: sa.Connection, store_id: str) -> list[tuple[str, str]]:
        """``(session_id, dream_id)`` of every session dreamt over for ``store_id``."""
        return [tuple(r) for r in conn.execute(
            sa.select(dreamt_sessions.c.session_id, dreamt_sessions.c.dream_id)
            .where(dreamt_sessions.c.store_id == store_id)
        )]

    def dreamt_session_ids(self, store_id: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(dreamt_sessions.c.session_id).where(dreamt_sessions.c.store_id == store_id)
                ).scalars()
            )

    def recent_dreamt_session_ids(self, store_id: str, limit: int, exclude: set[str] = frozenset()) -> list[str]:
        """Up to ``limit`` sessions the store's promoted dreams read, the most recently dreamt first (by the
        reading dream's creation time, then session id), without ``exclude``."""
        if limit <= 0:
            return []
        q = (sa.select(dreamt_sessions.c.session_id)
             .join(dreams, dreams.c.id == dreamt_sessions.c.dream_id, isouter=True)
             .where(dreamt_sessions.c.store_id == store_id)
             .order_by(dreams.c.created_at.desc().nulls_last(), dreamt_sessions.c.session_id))
        out: list[str] = []
        with self.engine.connect() as conn:
            for sid in conn.execute(q).scalars():
                if sid not in exclude:
                    out.append(sid)
                    if len(out) >= limit:
                        break
        return out


def ambiguous_name(ref: str, tenants: list[str]):
    """The error for a store name that stores of several tenants hold (names are unique per tenant)."""
    from dreaming.errors import BadInput

    ts = sorted(set(tenants))
    return BadInput(f"memory store name {ref!r} is used in {len(ts)} tenants ({', '.join(ts)}): give the store's "
                    f"id or tenant:name, e.g. {ts[0]}:{ref}", field="store")


def catalog_exists(settings: Settings) -> bool:
    """Whether there may be a catalog to read: a configured URL, or the SQLite file. A lake that was never
    written has none, and read-only callers (``Lake``, stats) must not create one."""
    return settings.catalog_url is not None or settings.catalog_path.exists()


def registered_files(settings: Settings) -> list[str]:
    """``Catalog(settings).snapshot_files()``, without creating a catalog where none exists yet
    (a lake that was never written has no files; a ``Lake`` on it stays free of side effects)."""
    if not catalog_exists(settings):
        return []
    cat = Catalog(settings)
    try:
        return cat.snapshot_files()
    finally:
        cat.engine.dispose()


__all__ = ["Catalog", "Conflict", "catalog_exists", "lake_files", "registered_files", "session_index"]
