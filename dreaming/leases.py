"""Leases: a running dream says, in the catalog, that a live process is working on it.

The process that runs a dream holds a lease row (``dream_leases``: owner, expiry) and renews it
from a daemon thread every quarter of ``Settings.dream_lease_s`` while the dream is ``pending`` or
``running`` — through long curator calls too. When the process dies (``kill -9``, OOM, a lost
machine), nobody renews it: once it expired, ``dreaming.ops.reap_stale_dreams`` fails the dream
(``crashed``) whatever the orchestrator still believes (a flow run left RUNNING in a temporary
Prefect server's database stays RUNNING forever). A dream that is ``completed`` — written and
waiting for promotion or paused for approval — is not running and holds no lease.

The owner is one token per process (host, pid, random), so nested holders in one process (the CLI
that created the dream, then its flow) share the lease; a second live process is refused.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timedelta

import sqlalchemy as sa

from dreaming.catalog import Catalog, _aware, dream_leases
from dreaming.errors import InvalidState
from dreaming.models import utcnow

OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
OPEN = ("pending", "running")

_lock = threading.Lock()
_held: dict[str, "_Renewer"] = {}  # dream id -> the renewer of this process


def _owner() -> str:
    global OWNER
    if f":{os.getpid()}:" not in OWNER:  # a forked child is another process
        OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    return OWNER


def get_lease(catalog: Catalog, dream_id: str, conn: sa.Connection | None = None) -> dict | None:
    q = sa.select(dream_leases).where(dream_leases.c.dream_id == dream_id)
    if conn is None:
        with catalog.engine.connect() as c:
            r = c.execute(q).mappings().first()
    else:
        r = conn.execute(q).mappings().first()
    if r is None:
        return None
    return {**r, "acquired_at": _aware(r["acquired_at"]), "expires_at": _aware(r["expires_at"])}


def expired(lease: dict, now: datetime | None = None) -> bool:
    return lease["expires_at"] <= (now or utcnow())


def take(catalog: Catalog, dream_id: str, conn: sa.Connection | None = None, now: datetime | None = None) -> None:
    """Acquire or renew this process's lease on ``dream_id`` (inside ``conn``'s transaction if given).

    Raises InvalidState when another process holds a lease that has not expired.
    """
    if conn is None:
        with catalog.tx() as c:
            return take(catalog, dream_id, c, now)
    now = now or utcnow()
    until = now + timedelta(seconds=catalog.settings.dream_lease_s)
    me = _owner()
    cur = get_lease(catalog, dream_id, conn)
    if cur is None:
        conn.execute(dream_leases.insert().values(dream_id=dream_id, owner=me, acquired_at=now, expires_at=until))
        return
    if cur["owner"] != me and not expired(cur, now):
        raise InvalidState(f"dream {dream_id} is being run by {cur['owner']} (lease until "
                           f"{cur['expires_at'].isoformat()}); wait for it or cancel it")
    values = {"expires_at": until} if cur["owner"] == me else {"owner": me, "acquired_at": now, "expires_at": until}
    conn.execute(dream_leases.update().where(dream_leases.c.dream_id == dream_id).values(**values))


def renew(catalog: Catalog, dream_id: str, now: datetime | None = None) -> bool:
    """Push this process's lease on ``dream_id`` forward; False when it holds none (dropped when the
    dream completed, or taken over after it expired)."""
    now = now or utcnow()
    with catalog.tx() as conn:
        res = conn.execute(dream_leases.update()
                           .where((dream_leases.c.dream_id == dream_id) & (dream_leases.c.owner == _owner()))
                           .values(expires_at=now + timedelta(seconds=catalog.settings.dream_lease_s)))
    return res.rowcount == 1


def drop(catalog: Catalog, dream_id: str, conn: sa.Connection | None = None) -> None:
    """Delete the lease row of ``dream_id`` (whoever holds it)."""
    if conn is None:
        with catalog.tx() as c:
            return drop(catalog, dream_id, c)
    conn.execute(dream_leases.delete().where(dream_leases.c.dream_id == dream_id))


class _Renewer:
    def __init__(self, catalog: Catalog, dream_id: str):
        self.catalog, self.dream_id, self.count = catalog, dream_id, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"lease-{dream_id}", daemon=True)

    def _loop(self) -> None:
        every = self.catalog.settings.dream_lease_s / 4
        while not self.stop.wait(every):
            try:
                renew(self.catalog, self.dream_id)
            except Exception:  # noqa: BLE001 - a busy catalog: try again at the next tick
                continue


class hold:
    """``with hold(catalog, dream_id):`` — hold and renew the dream's lease while the block runs.

    On exit the lease row is deleted when the dream is no longer open (completed or terminal);
    a dream still open (an exception on its way to a retry) keeps its row until it expires, so a
    retry in this process takes it back and a dead process gets reaped.
    """

    def __init__(self, catalog: Catalog, dream_id: str):
        self.catalog, self.dream_id = catalog, dream_id

    def __enter__(self) -> "hold":
        take(self.catalog, self.dream_id)
        with _lock:
            r = _held.get(self.dream_id)
            if r is None:
                r = _held[self.dream_id] = _Renewer(self.catalog, self.dream_id)
                r.thread.start()
            r.count += 1
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            r = _held[self.dream_id]
            r.count -= 1
            last = r.count == 0
            if last:
                del _held[self.dream_id]
        if not last:
            return
        r.stop.set()
        r.thread.join(timeout=5)
        try:
            if self.catalog.get_dream(self.dream_id).status not in OPEN:
                drop(self.catalog, self.dream_id)
        except Exception:  # noqa: BLE001 - the row expires on its own
            pass
