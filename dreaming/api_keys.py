"""API keys of the HTTP API kept in the catalog (table ``api_keys``): made by `dreams api-key create`.

A key's secret (``sk-dreams-<43 url-safe characters>``, 256 random bits) is shown once, when it is made;
the catalog keeps only its SHA-256 digest and its last four characters (``hint``, to tell keys apart).
A key belongs to a tenant and, optionally, to one agent of it (then it reaches only the stores whose
scope is ``tenant/agent``). Revoking sets ``revoked_at``: the server refuses the key from the next request
on (keys are looked up by digest on every request, never cached).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dreaming import ids
from dreaming.catalog import Catalog, api_keys
from dreaming.errors import BadInput, NotFound
from dreaming.models import iso, utcnow
from dreaming.stores import Scope

PREFIX = "sk-dreams-"
ID_PREFIX = "apikey"
HINT_CHARS = 4
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a tenant or an agent: one part of a scope (dreaming.stores.Scope)


def digest(secret: str) -> str:
    """The hex SHA-256 of a key's secret: what the catalog stores and what a request is matched by."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    agent_id: str | None
    name: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def scope(self) -> str:
        """The scope the key reaches: ``tenant`` (every store of it) or ``tenant/agent``."""
        return f"{self.tenant}/{self.agent_id}" if self.agent_id else self.tenant

    def to_dict(self) -> dict:
        return {"id": self.id, "tenant": self.tenant, "agent_id": self.agent_id, "name": self.name,
                "hint": f"…{self.hint}", "created_at": iso(self.created_at), "revoked_at": iso(self.revoked_at),
                "active": self.active}


def _key(r) -> ApiKey:
    from dreaming.catalog import _aware

    return ApiKey(id=r["id"], tenant=r["tenant"], agent_id=r["agent_id"], name=r["name"] or "", hint=r["hint"],
                  created_at=_aware(r["created_at"]), revoked_at=_aware(r["revoked_at"]))


def create(catalog: Catalog, tenant: str, agent: str | None = None, name: str = "") -> tuple[ApiKey, str]:
    """A new key of ``tenant`` (and ``agent``): the record and the secret, which is not kept anywhere."""
    for value, field in ((tenant, "tenant"), (agent, "agent")):
        if value is not None and not _NAME.match(value):
            raise BadInput(f"{field} {value!r} must be letters, digits, '.', '_' or '-' (no '/')", field=field)
    scope = Scope.parse(f"{tenant}/{agent}" if agent else tenant)
    secret = PREFIX + secrets.token_urlsafe(32)
    row = {"id": ids.new_id(ID_PREFIX), "tenant": scope.tenant, "agent_id": scope.agent, "name": name or "",
           "secret_sha256": digest(secret), "hint": secret[-HINT_CHARS:], "created_at": utcnow(),
           "revoked_at": None}
    with catalog.tx() as conn:
        conn.execute(api_keys.insert().values(**row))
    return _key(row), secret


def list_keys(catalog: Catalog, tenant: str | None = None, include_revoked: bool = True) -> list[ApiKey]:
    """Keys, oldest first; only ``tenant``'s when given; revoked ones too unless ``include_revoked`` is off."""
    q = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if tenant is not None:
        q = q.where(api_keys.c.tenant == tenant)
    if not include_revoked:
        q = q.where(api_keys.c.revoked_at.is_(None))
    with catalog.engine.connect() as conn:
        return [_key(r) for r in conn.execute(q).mappings()]


def get(catalog: Catalog, key_id: str) -> ApiKey:
    with catalog.engine.connect() as conn:
        r = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    if r is None:
        raise NotFound(f"no API key {key_id!r} (see `dreams api-key list`)")
    return _key(r)


def revoke(catalog: Catalog, key_id: str) -> ApiKey:
    """Revoke a key (idempotent: a revoked key keeps its first ``revoked_at``); NotFound for an unknown id."""
    with catalog.tx() as conn:
        res = conn.execute(api_keys.update().where((api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None))
                           .values(revoked_at=utcnow()))
    if res.rowcount == 0:
        get(catalog, key_id)  # NotFound when there is no such key; else it was revoked already
    return get(catalog, key_id)


def lookup(catalog: Catalog, secret_sha256: str) -> ApiKey | None:
    """The active key whose secret has this digest, or None (unknown or revoked)."""
    with catalog.engine.connect() as conn:
        r = conn.execute(sa.select(api_keys).where((api_keys.c.secret_sha256 == secret_sha256)
                                                   & api_keys.c.revoked_at.is_(None))).mappings().first()
    return None if r is None else _key(r)


def any_active(catalog: Catalog) -> bool:
    with catalog.engine.connect() as conn:
        return conn.execute(sa.select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)).first() is not None
