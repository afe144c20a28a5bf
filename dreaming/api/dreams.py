"""``/v1/dreams``: create (returns ``pending`` at once; the run goes on in the background through Prefect),
retrieve, list (``statuses[]``, ``created_at[gt|lt]``, ``include_archived``, cursor pages), cancel, archive;
and ours: a dream's ``changes``, ``approve`` (all or some changes) and ``reject`` (dreaming.promotion.review,
as `dreams approve` / `dreams reject`).

``model``: the id ``rules`` runs the offline curator (ours); any other id runs the Claude curator with that
model, which must be one of ``DREAMS_ALLOWED_MODELS``. A dream of another tenant's store answers 404.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from dreaming.api import pagination
from dreaming.api.auth import Principal, principal
from dreaming.api.memory_stores import tenant_store
from dreaming.api.models import (DreamApprove, DreamCreate, DreamOut, DreamReject, MemoryStoreInput, Page,
                                 SessionsInput, UpdateExisting, change_to_api, parse_time)
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.errors import BadInput, NotFound
from dreaming.models import Dream

router = APIRouter(prefix="/v1/dreams", tags=["dreams"])
Status = Literal["pending", "running", "completed", "failed", "canceled"]


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def tenant_dream(catalog: Catalog, who: Principal, dream_id: str) -> Dream:
    d = catalog.get_dream(dream_id)
    try:
        store = catalog.get_store(d.store_id)
    except NotFound:
        raise NotFound(f"no dream {dream_id!r}") from None
    if not who.owns(store):
        raise NotFound(f"no dream {dream_id!r}")
    return d


@router.post("", response_model=DreamOut)
def create_dream(body: DreamCreate, request: Request, who: Principal = Depends(principal)) -> dict:
    stores_in = [i for i in body.inputs if isinstance(i, MemoryStoreInput)]
    sessions_in = [i for i in body.inputs if isinstance(i, SessionsInput)]
    if len(stores_in) != 1 or len(sessions_in) != 1:
        raise BadInput("inputs must hold exactly one memory_store entry and exactly one sessions entry",
                       field="inputs")
    session_ids = sessions_in[0].session_ids
    if len(set(session_ids)) != len(session_ids):
        dup = sorted({s for s in session_ids if session_ids.count(s) > 1})
        raise BadInput(f"duplicate session ids: {', '.join(dup[:5])}", field="inputs.sessions.session_ids")
    cat = _catalog(request)
    store = tenant_store(cat, who, stores_in[0].memory_store_id)
    behavior = body.output_behavior.type if body.output_behavior else "create_new"
    if isinstance(body.output_behavior, UpdateExisting) and body.output_behavior.memory_store_id != store["id"]:
        raise BadInput("output_behavior.memory_store_id must be the memory store of inputs",
                       field="output_behavior.memory_store_id")
    curator = "rules" if body.model_id == "rules" else "claude"
    svc = DreamService(cat)
    if curator == "claude":
        from dreaming.curators.claude import check_credentials

        if body.model_id not in cat.settings.allowed_models:  # before the credentials: the field is named
            raise BadInput(f"model {body.model_id!r} is not allowed; allowed: rules (the offline curator), "
                           f"{', '.join(cat.settings.allowed_models)} (setting DREAMS_ALLOWED_MODELS)", field="model")

        check_credentials(cat.settings)  # the model itself: DreamService.create checks it (field model)
    # a second open update_existing dream of the store: Conflict (409), checked by DreamService.create
    d = svc.create(store["id"], Selection(session_ids=session_ids), curator=curator,
                   model=None if curator == "rules" else body.model_id, instructions=body.instructions,
                   output_behavior=behavior, require_approval=body.require_approval, lease=True)
    request.app.state.runner.start(d)
    return d.to_api()


@router.get("", response_model=Page)
def list_dreams(
    request: Request,
    who: Principal = Depends(principal),
    include_archived: bool = False,
    limit: int = Query(20, ge=1, le=100),
    page: str | None = None,
    statuses: list[Status] | None = Query(None, alias="statuses[]"),
    statuses_plain: list[Status] | None = Query(None, alias="statuses", include_in_schema=False),
    created_at_gt: str | None = Query(None, alias="created_at[gt]"),
    created_at_lt: str | None = Query(None, alias="created_at[lt]"),
) -> dict:
    before = pagination.decode(page, 2)
    before_key = (parse_time(before[0], "page"), before[1]) if before else None
    rows = _catalog(request).list_dreams_page(
        tenant=who.scope, statuses=(statuses or []) + (statuses_plain or []) or None,
        include_archived=include_archived, before=before_key, limit=limit + 1,
        created_gt=parse_time(created_at_gt, "created_at[gt]"), created_lt=parse_time(created_at_lt, "created_at[lt]"))
    more, rows = len(rows) > limit, rows[:limit]
    nxt = pagination.encode(rows[-1].created_at.isoformat(), rows[-1].id) if more else None
    return {"data": [d.to_api() for d in rows], "next_page": nxt}


@router.get("/{dream_id}", response_model=DreamOut)
def retrieve_dream(dream_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    return tenant_dream(_catalog(request), who, dream_id).to_api()


@router.post("/{dream_id}/cancel", response_model=DreamOut)
def cancel_dream(dream_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    cat = _catalog(request)
    tenant_dream(cat, who, dream_id)
    d = DreamService(cat).cancel(dream_id)
    request.app.state.runner.cancel(d)
    return d.to_api()


@router.post("/{dream_id}/archive", response_model=DreamOut)
def archive_dream(dream_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    cat = _catalog(request)
    tenant_dream(cat, who, dream_id)
    return DreamService(cat).archive(dream_id).to_api()


# --- ours: review ---------------------------------------------------------------------------------

DECISION_WAIT_S = 30.0  # a paused flow run that was resumed records the decision itself: wait for it


@router.get("/{dream_id}/changes", response_model=Page)
def list_changes(dream_id: str, request: Request, who: Principal = Depends(principal),
                 limit: int = Query(100, ge=1, le=1000), page: str | None = None) -> dict:
    """Ours: the changes a completed dream proposes (ops, reasons, evidence, decisions), in the diff's order."""
    cat = _catalog(request)
    tenant_dream(cat, who, dream_id)
    changes = DreamService(cat).changes(dream_id)
    after = pagination.decode(page, 1)
    start = int(after[0]) if after else 0
    chunk = changes[start:start + limit]
    more = start + limit < len(changes)
    return {"data": [change_to_api(c) for c in chunk], "next_page": pagination.encode(start + limit) if more else None}


def _decide(request: Request, who: Principal, dream_id: str, *, approve: bool, change_ids=None,
            note: str | None = None) -> dict:
    import time

    from dreaming.cli.cmd_review import prefect_resumer
    from dreaming.promotion import review

    cat = _catalog(request)
    tenant_dream(cat, who, dream_id)
    out = review(cat, dream_id, approve=approve, decided_by=f"api:{who.key_id}", change_ids=change_ids,
                 note=note, resume=prefect_resumer)
    d = out.dream
    if out.action == "resumed":  # the paused flow run promotes or rejects: wait for its decision
        deadline = time.monotonic() + DECISION_WAIT_S
        while d.promotion.state == "awaiting_approval" and time.monotonic() < deadline:
            time.sleep(0.5)
            d = cat.get_dream(dream_id)
    return d.to_api()


@router.post("/{dream_id}/approve", response_model=DreamOut)
def approve_dream(dream_id: str, request: Request, body: DreamApprove | None = None,
                  who: Principal = Depends(principal)) -> dict:
    """Ours: promote a dream awaiting approval (``promotion.state`` says how it ended: promoted, conflict,
    gate_failed)."""
    body = body or DreamApprove()
    return _decide(request, who, dream_id, approve=True, change_ids=body.change_ids, note=body.note)


@router.post("/{dream_id}/reject", response_model=DreamOut)
def reject_dream(dream_id: str, request: Request, body: DreamReject | None = None,
                 who: Principal = Depends(principal)) -> dict:
    """Ours: reject a dream awaiting approval."""
    return _decide(request, who, dream_id, approve=False, note=(body or DreamReject()).reason)
