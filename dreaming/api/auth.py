"""API keys and tenancy: every request names its key in ``x-api-key`` or as ``Authorization: Bearer <key>``
(the anthropic SDK >= 2.16 sends ``api_key=`` that way); the key gives its tenant (and, for a catalog key
made with an agent, its agent).

Keys come from two places, both compared by their SHA-256 digest: the setting ``DREAMS_API_KEYS``
(``key=tenant[,key=tenant]``, or the path of a JSON file ``{"<key>": "<tenant>", ...}`` where a key may be
written as ``sha256:<hex digest of the key>`` so that the file holds no secret), and the catalog's
``api_keys`` table (dreaming.api_keys, made by `dreams api-key create`; looked up on every request, so a
revoked key is refused at once). A request is confined to its tenant: a store whose scope is another
tenant's (or, for an agent's key, another scope than ``tenant/agent``), and every dream and memory of it,
is a 404.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from dreaming.errors import BadInput, NotFound, Unauthenticated
from dreaming.stores import Scope


@dataclass(frozen=True)
class Principal:
    """Who calls: the key's tenant and a label for the actor of the versions it writes (never the key)."""

    tenant: str
    key_id: str
    agent: str | None = None

    @property
    def actor(self) -> dict:
        return {"type": "api", "id": self.key_id}

    @property
    def scope(self) -> str:
        """What the key reaches: ``tenant`` (every store of the tenant) or ``tenant/agent``."""
        return self.tenant if self.agent is None else f"{self.tenant}/{self.agent}"

    def owns(self, store: dict) -> bool:
        scope = Scope.parse(store["scope"])
        return scope.tenant == self.tenant and (self.agent is None or scope.agent == self.agent)

    def check(self, store: dict, what: str = "memory store") -> dict:
        """``store`` when it is this tenant's; else NotFound, worded as for a store that does not exist."""
        if not self.owns(store):
            raise NotFound(f"no {what} {store['id']!r}")
        return store


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(spec: str | None) -> dict[str, str]:
    """``{sha256 hex digest of the key: tenant}`` from the setting's value (see the module doc)."""
    if not spec or not spec.strip():
        return {}
    text = spec.strip()
    pairs: dict[str, str]
    if "=" not in text and (text.endswith(".json") or Path(text).is_file()):
        path = Path(text).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise BadInput(f"cannot read the API keys file: {e.strerror}", file=str(path)) from None
        except ValueError as e:
            raise BadInput(f"the API keys file is not JSON: {e}", file=str(path)) from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise BadInput('the API keys file must be a JSON object {"<key>": "<tenant>"}', file=str(path))
        pairs = data
    else:
        pairs = {}
        for item in text.split(","):
            key, sep, tenant = item.strip().partition("=")
            if not sep or not key or not tenant:
                raise BadInput(f"DREAMS_API_KEYS: {item.strip()!r} is not key=tenant", field="api_keys")
            pairs[key] = tenant
    out: dict[str, str] = {}
    for key, tenant in pairs.items():
        tenant = tenant.strip()
        scope = Scope.parse(tenant)  # a tenant is a scope without an agent
        if scope.agent is not None:
            raise BadInput(f"DREAMS_API_KEYS: {tenant!r} is not a tenant (no '/agent')", field="api_keys")
        digest = key.removeprefix("sha256:").lower() if key.startswith("sha256:") else _digest(key)
        out[digest] = tenant
    return out


class KeyRing:
    """The keys of the setting (digest → tenant) and, when ``catalog`` is given, the catalog's keys."""

    def __init__(self, keys: dict[str, str], catalog=None):
        self.keys = keys
        self.catalog = catalog

    def principal(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthenticated("an API key is required: the x-api-key header (or Authorization: Bearer)")
        digest = _digest(presented)
        for known, tenant in self.keys.items():
            if hmac.compare_digest(known, digest):
                return Principal(tenant=tenant, key_id=f"key:{digest[:12]}")
        if self.catalog is not None:
            from dreaming import api_keys

            key = api_keys.lookup(self.catalog, digest)  # matched by the unique digest; revoked ones are not
            if key is not None:
                return Principal(tenant=key.tenant, key_id=f"key:{key.id}", agent=key.agent_id)
        raise Unauthenticated("invalid x-api-key")


async def principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, from ``x-api-key`` or ``Authorization: Bearer`` (401
    authentication_error without a valid key). A coroutine, so that it runs on the event loop rather than
    a thread of the pool (a hop per request); a catalog key is one indexed look-up by digest."""
    key = request.headers.get("x-api-key")
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
    return request.app.state.keyring.principal(key)
