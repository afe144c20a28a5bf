"""Signed webhooks on a dream's events: awaiting approval, promoted, gate failed, failed (issue 17).

A reviewer learns that a dream waits for them (or that one failed) without polling. Each event is a
JSON POST to every configured target, signed with a shared secret, retried with backoff on a 5xx, a
429 or a connection error, and sent **once per event and target**: the delivery row of the
``notifications`` table (event key ``<dream id>:<event>`` + target) is claimed, by an insert, before
anything is sent, so a hook or a step that runs twice (a retried flow run, a repeated approval) sends
nothing the second time. A delivery that failed stays ``failed`` with its ``last_error``;
``dreams notifications --retry`` sends it again. Notifying never fails a dream: every error is logged
and recorded on the delivery row, never raised.

Where the targets come from (docs/review.md, "Notifications"), all of them together:

- the deployment: the dream flow's ``webhooks`` parameter, kept with the dream (``dreams/<id>/webhooks.json``)
  so that an approval from another process notifies it too; signed with ``DREAMS_WEBHOOK_SECRET``;
- the store: its metadata ``webhook_url`` (one or more URLs, space or comma separated) **replaces** the setting
  ``DREAMS_WEBHOOK_URL`` for that store (an empty value silences it); signed with the secret in the environment
  variable the metadata ``webhook_secret_env`` names, else ``DREAMS_WEBHOOK_SECRET``.

The signature: ``X-Dreams-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with
``X-Dreams-Timestamp: <unix seconds>`` (a receiver refuses an old timestamp: no replay), and
``X-Dreams-Delivery`` (the event key, to drop a resend it already has). ``verify`` checks one.
A target without a secret is not sent to (the row says why): an unsigned webhook could be forged.

Call sites (one line each): ``@notifies(...)`` on ``promotion.request_approval``, ``promotion.promote`` and
``promotion.promote_auto`` (promoted, a gate failed on promotion, a part held for a person), and on
``DreamService.fail`` (the flow's errors and crashes); ``emit`` in the dream flow where the gate fails,
and ``emit_each`` on the dreams the reaper fails (flows/hooks.py ``reap_stale``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dreaming.catalog_schema import notifications as table
from dreaming.errors import BadInput

if TYPE_CHECKING:
    from dreaming.catalog import Catalog
    from dreaming.models import Dream
    from dreaming.settings import Settings

log = logging.getLogger("dreams.notifications")

EVENTS = ("awaiting_approval", "promoted", "gate_failed", "failed")
STATUSES = ("pending", "delivered", "failed")
SIGNATURE_HEADER = "X-Dreams-Signature"
TIMESTAMP_HEADER = "X-Dreams-Timestamp"
EVENT_HEADER = "X-Dreams-Event"
DELIVERY_HEADER = "X-Dreams-Delivery"
#: a claimed delivery still ``pending`` after this long lost its sender (killed mid-send): ``--retry`` takes it
STALE_PENDING = timedelta(minutes=10)
#: changes listed in a payload's diff summary (the rest are counted)
DIFF_LIMIT = 50
SUBSCRIPTION_FILE = "webhooks.json"


@dataclass(frozen=True)
class Target:
    url: str
    secret: str | None = field(repr=False)
    source: str  # deployment | store | setting
    secret_name: str = "DREAMS_WEBHOOK_SECRET"  # where the secret comes from, for messages


def event_of(d: Dream) -> str | None:
    """The event a dream's current state raises, or None (running, rejected, conflict, ...)."""
    if d.status == "failed":
        return "failed"
    if d.status == "completed" and d.promotion.state in ("awaiting_approval", "promoted", "gate_failed"):
        return d.promotion.state
    return None


def event_key(dream_id: str, event: str) -> str:
    return f"{dream_id}:{event}"


# --- configuration ---------------------------------------------------------------------------------


def split_urls(text: str | list[str] | None) -> list[str]:
    if text is None:
        return []
    items = text if isinstance(text, list) else re.split(r"[\s,]+", text)
    return [u.strip() for u in items if u and u.strip()]


def check_url(url: str, field_name: str = "webhooks") -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise BadInput(f"webhook target {url!r} is not an http(s) URL", field=field_name)
    return url


def subscribe(settings: Settings | None, dream_id: str, urls: list[str] | None) -> None:
    """Keep a deployment's ``webhooks`` (the flow parameter) with the dream, for every process that raises one
    of its events. Bad URLs are refused before the dream starts (BadInput naming the parameter)."""
    urls = [check_url(u) for u in split_urls(urls)]
    if not urls:
        return
    from dreaming.atomic import write_text_atomic
    from dreaming.settings import get_settings

    settings = settings or get_settings()
    write_text_atomic(json.dumps({"urls": urls}), settings.dreams_dir / dream_id / SUBSCRIPTION_FILE,
                      settings.staging_dir)


def targets_for(settings: Settings, d: Dream, store: dict) -> list[Target]:
    """Every target of the dream's events: its deployment's, then its store's (else the setting's)."""
    default_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    out: list[Target] = []
    sub = settings.dreams_dir / d.id / SUBSCRIPTION_FILE
    if sub.exists():
        try:
            urls = json.loads(sub.read_text(encoding="utf-8")).get("urls", [])
        except (OSError, ValueError) as e:
            log.warning("dream %s: cannot read %s (%s); its deployment's webhooks are skipped", d.id, sub, e)
            urls = []
        out += [Target(u, default_secret, "deployment") for u in urls]
    meta = store.get("metadata") or {}
    if "webhook_url" in meta:
        env = meta.get("webhook_secret_env")
        secret = os.environ.get(env) if env else default_secret
        out += [Target(u, secret, "store", env or "DREAMS_WEBHOOK_SECRET") for u in split_urls(meta["webhook_url"])]
    else:
        out += [Target(u, default_secret, "setting") for u in split_urls(settings.webhook_url)]
    seen: set[str] = set()
    return [t for t in out if not (t.url in seen or seen.add(t.url))]


# --- the payload and its signature ------------------------------------------------------------------


def flow_run_url(flow_run_id: str | None) -> str | None:
    """The Prefect UI page of the dream's flow run, when a UI URL is known (PREFECT_UI_URL or the API's)."""
    if not flow_run_id:
        return None
    try:
        from prefect.utilities.urls import url_for

        return url_for("flow-run", obj_id=flow_run_id) or None
    except Exception:  # noqa: BLE001 - a link is a courtesy
        return None


def diff_summary(settings: Settings, d: Dream) -> dict:
    """What `dreams diff` lists, in short: each change's id, op, path and reason (no content), and the counts
    per op (keeps left out)."""
    from dreaming.changeset import counts, read_changeset
    from dreaming.report import diff_rows

    path = settings.dreams_dir / d.id / "changeset.parquet"
    if not path.exists():
        return {"changes": [], "total": 0, "truncated": 0, "counts": {}}
    changes = read_changeset(path)
    rows = [r for r in diff_rows(changes) if r["op"] != "keep"]
    keys = ("change_id", "op", "path", "memory_id", "reason", "sessions", "confidence", "taint")
    return {"changes": [{k: r[k] for k in keys} for r in rows[:DIFF_LIMIT]], "total": len(rows),
            "truncated": max(0, len(rows) - DIFF_LIMIT),
            "counts": {op: n for op, n in counts(changes).items() if n and op != "keep"}}


def payload(settings: Settings, d: Dream, store: dict, event: str) -> dict:
    p = d.promotion
    try:
        diff = diff_summary(settings, d)
    except Exception as e:  # noqa: BLE001 - an unreadable changeset still notifies
        diff = {"changes": [], "total": None, "truncated": 0, "counts": {}, "error": f"{type(e).__name__}: {e}"}
    links = {"flow_run": flow_run_url(d.flow_run_id), "diff": f"dreams diff {d.id}"}
    if event == "awaiting_approval":
        links.update(approve=f"dreams approve {d.id}", reject=f"dreams reject {d.id} --reason TEXT")
    return {
        "type": f"dream.{event}",
        "event": event,
        "delivery": event_key(d.id, event),
        "dream": {
            "id": d.id, "status": d.status, "promotion": p.state, "reason": p.reason, "decided_by": p.decided_by,
            "base_version": d.base_version, "candidate_version": d.candidate_version,
            "promoted_version": p.promoted_version, "target_store_id": p.target_store_id,
            "accepted_change_ids": p.accepted_change_ids,
            "error": d.error.model_dump() if d.error else None, "sessions": len(d.session_ids),
            "flow_run_id": d.flow_run_id,
        },
        "store": {"id": store["id"], "name": store["name"]},
        "counts": diff.pop("counts") or {k: v for k, v in (d.counts or {}).items() if v and k != "keep"},
        "diff": diff,
        "links": links,
    }


def sign(secret: str, body: bytes, timestamp: int | str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, body: bytes, signature: str | None, timestamp: str | None, *, tolerance_s: float = 300,
           now: float | None = None) -> bool:
    """What a receiver checks: the signature matches and the timestamp is within ``tolerance_s`` of now."""
    if not signature or not timestamp or not timestamp.isdigit():
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), signature)


# --- delivery ---------------------------------------------------------------------------------------


def retryable(status: int) -> bool:
    return status >= 500 or status == 429


def deliver(settings: Settings, target: Target, body: bytes, event: str, key: str,
            sleep: Callable[[float], None] = time.sleep) -> tuple[int, str | None]:
    """POST ``body`` to the target, signed; up to ``webhook_retries`` more tries with exponential backoff
    (``webhook_backoff_s`` × 2^n) on a 5xx/429 or a connection error. Returns (attempts, error or None)."""
    import httpx

    if not target.secret:
        return 0, f"no secret for {redact(target.url)} ({target.secret_name} is not set): not sent unsigned"
    if not re.match(r"^https?://[^/\s]+", target.url):
        return 0, f"webhook target {redact(target.url)} is not an http(s) URL"
    attempts, error = 0, None
    with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
        for n in range(settings.webhook_retries + 1):
            if n:
                sleep(settings.webhook_backoff_s * 2 ** (n - 1))
            attempts += 1
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "dreams-webhook/1",
                       SIGNATURE_HEADER: sign(target.secret, body, ts), TIMESTAMP_HEADER: ts,
                       EVENT_HEADER: event, DELIVERY_HEADER: key}
            try:
                r = client.post(target.url, content=body, headers=headers)
            except httpx.HTTPError as e:  # connection refused, timeout, bad URL
                error = f"{type(e).__name__}: {e}"
                if isinstance(e, httpx.TransportError):
                    continue
                return attempts, error
            if 200 <= r.status_code < 300:
                return attempts, None
            error = f"HTTP {r.status_code}: {r.text[:200]}"
            if not retryable(r.status_code):
                return attempts, error
    return attempts, error


def _claim(catalog: Catalog, key: str, target: str, d: Dream, event: str) -> bool:
    """Insert the delivery row; False when it is already there (sent, being sent, or failed: see ``retry``)."""
    from dreaming.models import utcnow

    try:
        with catalog.tx() as conn:
            conn.execute(table.insert().values(event_key=key, target=target, dream_id=d.id, store_id=d.store_id,
                                               event=event, status="pending", attempts=0, created_at=utcnow()))
    except sa.exc.IntegrityError:
        return False
    return True


def _record(catalog: Catalog, key: str, target: str, attempts: int, error: str | None) -> None:
    from dreaming.models import utcnow

    values: dict[str, Any] = {"attempts": table.c.attempts + attempts, "last_error": error,
                              "status": "failed" if error else "delivered"}
    if not error:
        values["delivered_at"] = utcnow()
    with catalog.tx() as conn:
        conn.execute(table.update().where((table.c.event_key == key) & (table.c.target == target)).values(**values))


def _body(catalog: Catalog, d: Dream, store: dict, event: str) -> bytes:
    return json.dumps(payload(catalog.settings, d, store, event), default=str, ensure_ascii=False).encode()


def _send(catalog: Catalog, d: Dream, store: dict, event: str, target: Target, body: bytes | None = None
          ) -> str | None:
    key = event_key(d.id, event)
    body = body if body is not None else _body(catalog, d, store, event)
    attempts, error = deliver(catalog.settings, target, body, event, key)
    _record(catalog, key, target.url, attempts, error)
    if error:
        log.warning("dream %s: webhook %s to %s failed after %d attempt(s): %s", d.id, event, redact(target.url),
                    attempts, error)
    return error


def emit(catalog: Catalog | None, dream: Dream | str, *events: str) -> None:
    """Notify every target of the event that ``dream``'s state raises, once per event and target; with
    ``events`` given, only when it is one of them. ``catalog`` None: the environment's. Never raises: a
    failure is logged and kept on the delivery row."""
    try:
        from dreaming.catalog import Catalog

        catalog = catalog or Catalog()
        d = catalog.get_dream(dream) if isinstance(dream, str) else dream
        event = event_of(d)
        if event is None or (events and event not in events):
            return
        store = catalog.get_store(d.store_id)
        body = None  # built once, for the first target claimed
        for target in targets_for(catalog.settings, d, store):
            if not _claim(catalog, event_key(d.id, event), target.url, d, event):
                continue  # sent already (or being sent, or failed: `dreams notifications --retry`)
            try:
                body = body if body is not None else _body(catalog, d, store, event)
                _send(catalog, d, store, event, target, body)
            except Exception as e:  # noqa: BLE001 - recorded on its row; the other targets still get theirs
                _record(catalog, event_key(d.id, event), target.url, 0, f"{type(e).__name__}: {e}")
                log.warning("dream %s: webhook %s to %s failed: %s", d.id, event, redact(target.url), e)
    except Exception as e:  # noqa: BLE001 - notifying never fails a dream
        log.warning("dream %s: notification failed: %s: %s", getattr(dream, "id", dream), type(e).__name__, e)


def emit_each(catalog: Catalog | None, dreams: list[Dream], *events: str) -> list[Dream]:
    """``emit`` for each of ``dreams``; returns them (a call site stays one expression)."""
    for d in dreams:
        emit(catalog, d, *events)
    return dreams


def notifies(*events: str) -> Callable[[Callable[..., Dream]], Callable[..., Dream]]:
    """Decorate a function that returns a dream, whose first argument is a Catalog or has ``.catalog``:
    once it returned, ``emit`` the dream's event when it is one of ``events``."""
    unknown = set(events) - set(EVENTS)
    if unknown:
        raise ValueError(f"not a notification event: {', '.join(sorted(unknown))}")

    def decorate(fn: Callable[..., Dream]) -> Callable[..., Dream]:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            d = fn(*args, **kwargs)
            first = args[0] if args else kwargs.get("catalog")
            emit(getattr(first, "catalog", first), d, *events)
            return d

        return wrapper

    return decorate


# --- listing and retry (`dreams notifications`) -----------------------------------------------------


def redact(url: str) -> str:
    """``scheme://host/…``: a webhook URL's path often is its credential (Slack, Teams)."""
    m = re.match(r"^([a-z]+://[^/?#]+)(.*)$", url, re.I)
    if not m:
        return "…"
    return m.group(1) + ("/…" if m.group(2) not in ("", "/") else m.group(2))


def deliveries(catalog: Catalog, dream_id: str | None = None, status: str | None = None) -> list[dict]:
    q = sa.select(table).order_by(table.c.created_at, table.c.event_key, table.c.target)
    if dream_id:
        q = q.where(table.c.dream_id == dream_id)
    if status:
        q = q.where(table.c.status == status)
    with catalog.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def retry(catalog: Catalog, dream_id: str | None = None) -> list[dict]:
    """Send the failed deliveries again (and those left ``pending`` by a sender that died); returns their rows."""
    from dreaming.models import utcnow

    stale_before = utcnow() - STALE_PENDING
    again = []
    for row in deliveries(catalog, dream_id):
        created = row["created_at"]
        if created.tzinfo is None:  # SQLite hands back naive UTC
            from datetime import UTC

            created = created.replace(tzinfo=UTC)
        if row["status"] == "failed" or (row["status"] == "pending" and created < stale_before):
            again.append(row)
    for row in again:
        key, url = row["event_key"], row["target"]
        try:
            d = catalog.get_dream(row["dream_id"])
            store = catalog.get_store(d.store_id)
            target = next((t for t in targets_for(catalog.settings, d, store) if t.url == url), None)
            if target is None:
                _record(catalog, key, url, 0, "no longer configured for this dream's store or deployment")
                continue
            with catalog.tx() as conn:  # take it: a second `--retry` at the same moment skips it
                taken = conn.execute(table.update().where(
                    (table.c.event_key == key) & (table.c.target == url) & (table.c.status == row["status"])
                ).values(status="pending")).rowcount
            if taken:
                _send(catalog, d, store, row["event"], target)
        except Exception as e:  # noqa: BLE001 - one bad row does not stop the others
            _record(catalog, key, url, 0, f"{type(e).__name__}: {e}")
    keys = {(r["event_key"], r["target"]) for r in again}
    return [r for r in deliveries(catalog, dream_id) if (r["event_key"], r["target"]) in keys]


# --- Prefect's own notifications ----------------------------------------------------------------------

#: the dream flow's run states a reviewer cares about, as Prefect's events name them
#: (``prefect.flow-run.<state name>``): waiting for a person (``AwaitingApproval``: recorded for the CLI;
#: ``Paused``/``Suspended``: the UI form), refused (``Rejected``: the gate, or a person), broken
PREFECT_EVENTS = ("prefect.flow-run.AwaitingApproval", "prefect.flow-run.Paused", "prefect.flow-run.Suspended",
                  "prefect.flow-run.Rejected", "prefect.flow-run.Failed", "prefect.flow-run.Crashed")


def prefect_automation(block_document_id: str, name: str = "dreams: tell the reviewers",
                       flow_name: str = "dream") -> dict:
    """A Prefect automation (``AutomationCore`` fields) that sends a notification block — a Slack webhook,
    Teams, e-mail… — when a ``flow_name`` run enters one of PREFECT_EVENTS. For teams that prefer Prefect's
    notifications to this module's webhooks (docs/review.md, "Notifications"): it sees flow-run states,
    not the dream's (a promotion after a CLI approval happens outside any run, and `Rejected` is the gate
    or a person), so it is the coarser of the two."""
    return {
        "name": name,
        "description": "The dream flow waits for a person, was rejected, or failed (dreaming.notifications)",
        "enabled": True,
        "trigger": {
            "type": "event", "posture": "Reactive", "threshold": 1, "within": 0,
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            "expect": list(PREFECT_EVENTS),
        },
        "actions": [{
            "type": "send-notification", "block_document_id": str(block_document_id),
            "subject": "dream run {{ flow_run.name }}: {{ flow_run.state.name }}",
            "body": "Dream run {{ flow_run.name }} ({{ flow_run.parameters.store }}) is {{ flow_run.state.name }}: "
                    "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}",
        }],
    }
