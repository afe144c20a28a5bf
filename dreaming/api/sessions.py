"""``/v1/sessions`` — ours, not Anthropic's: upload a transcript file into the lake and list the sessions there.

``POST /v1/sessions`` takes one file as a multipart form (field ``file``; optional ``format``, default
``auto``, and ``agent_id``) and ingests it through the code path of `dreams ingest` (dreaming.ingest.
ingest_files: the same formats, checks, redaction, all-or-nothing placement and re-ingest no-op) as the
key's tenant (and, for an agent's key, its agent). A file that does not ingest is a 400 naming the file,
line and field, and nothing of it is in the lake. ``GET /v1/sessions`` lists the tenant's sessions oldest
first with the filters of `dreams sessions` (``agent_id``, ``since``) and cursor pages; ``GET
/v1/sessions/{id}`` reads one. Another tenant's session is a 404.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.exceptions import HTTPException

from dreaming.api import pagination
from dreaming.api.auth import Principal, principal
from dreaming.api.models import Page, SessionIngestOut, SessionOut, parse_time, session_to_api
from dreaming.errors import BadInput, NotFound
from dreaming.schema import SOURCE_FORMATS

router = APIRouter(prefix="/v1/sessions", tags=["sessions (ours)"])

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""The largest transcript file one request may upload (a larger one: 413 request_too_large)."""

_CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _filename(upload: UploadFile) -> str:
    """The upload's base name, made safe for a file name (the ingest adapters may take the session id
    from it, as `dreams ingest` does from a file's stem)."""
    name = Path(upload.filename or "").name
    name = _UNSAFE.sub("_", name).strip("._") or "upload.jsonl"
    return name[:128]


def _session_ids_of(catalog, snapshot_id: str) -> list[str]:
    """The sessions the snapshot's files hold (the lake index, dreaming.lake_index)."""
    import sqlalchemy as sa

    from dreaming.catalog import lake_files, session_index

    q = (sa.select(session_index.c.session_id).distinct()
         .where(session_index.c.path.in_(sa.select(lake_files.c.path).where(lake_files.c.snapshot_id == snapshot_id)))
         .order_by(session_index.c.session_id))
    with catalog.engine.connect() as conn:
        return list(conn.execute(q).scalars())


@router.post("", response_model=SessionIngestOut)
async def ingest_session_file(
    request: Request,
    file: UploadFile = File(..., description="One transcript file (JSON or JSONL), as `dreams ingest` reads."),
    format: str = Form("auto", description=f"auto (sniff the content) or one of: {', '.join(SOURCE_FORMATS)}"),
    agent_id: str | None = Form(None, description="The agent recorded on every event (an agent's key: its own)."),
    who: Principal = Depends(principal),
) -> dict:
    from starlette.concurrency import run_in_threadpool

    if format != "auto" and format not in SOURCE_FORMATS:
        raise BadInput(f"format must be auto or one of {', '.join(SOURCE_FORMATS)}, got {format!r}", field="format")
    if who.agent is not None and agent_id not in (None, "", who.agent):
        raise BadInput(f"agent_id {agent_id!r} is outside this key's scope {who.scope!r}", field="agent_id")
    agent = who.agent or agent_id or None
    name = _filename(file)
    with tempfile.TemporaryDirectory(prefix="dreams-upload-") as tmp:
        path = Path(tmp) / name
        size = 0
        with path.open("wb") as out:
            while chunk := await file.read(_CHUNK):
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise HTTPException(413, f"file: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; "
                                             "split it or use `dreams ingest`")
                out.write(chunk)
        report = await run_in_threadpool(_ingest, request.app.state.catalog, path, format, who.tenant, agent)
        res = report.files[0]
        if res.status == "failed":
            raise BadInput((res.error or "the file did not ingest").replace(tmp + "/", ""))
    session_ids = await run_in_threadpool(_session_ids_of, request.app.state.catalog, res.snapshot_id) \
        if res.snapshot_id else []
    body = res.to_dict()
    return {"type": "session_ingest", "file": name, "status": "ingested" if res.status != "skipped" else "skipped",
            "format": res.format, "snapshot_id": res.snapshot_id, "session_ids": session_ids,
            "sessions": res.sessions, "events": res.events, "tool_calls": res.tool_calls, "errors": res.errors,
            "note": res.note, "issues": body["issues"], "redactions": body["redactions"]}


def _ingest(catalog, path: Path, fmt: str, tenant: str, agent: str | None):
    from dreaming.ingest import ingest_files

    return ingest_files([path], catalog, fmt=fmt, tenant=tenant, agent=agent)


@router.get("", response_model=Page)
def list_sessions(
    request: Request,
    who: Principal = Depends(principal),
    agent_id: str | None = None,
    since: str | None = Query(None, description="Started within DUR (7d, 12h, 30m, 2w) or since an RFC 3339 time."),
    limit: int = Query(20, ge=1, le=100),
    page: str | None = None,
) -> dict:
    """Ours: the key's tenant's sessions, oldest first (``started_at``, ``id``), as `dreams sessions` lists them."""
    from dreaming.lake import Lake
    from dreaming.timewindow import parse_since

    try:
        since_at = parse_since(since) if since else None
    except BadInput as e:
        raise BadInput(e.reason, field="since") from None
    after = pagination.decode(page, 2)
    after_key = (parse_time(after[0], "page"), str(after[1])) if after else None
    if who.agent is not None and agent_id not in (None, who.agent):
        return {"data": [], "next_page": None}  # another agent's sessions: none for this key
    with Lake(request.app.state.settings) as lake:
        rows = lake.sessions(tenant=who.tenant, agent=who.agent or agent_id or None, since=since_at)
    if after_key is not None:
        rows = [r for r in rows if (r["started_at"], r["session_id"]) > after_key]
    more, rows = len(rows) > limit, rows[:limit]
    nxt = pagination.encode(rows[-1]["started_at"].isoformat(), rows[-1]["session_id"]) if more else None
    return {"data": [session_to_api(r) for r in rows], "next_page": nxt}


@router.get("/{session_id}", response_model=SessionOut)
def retrieve_session(session_id: str, request: Request, who: Principal = Depends(principal)) -> dict:
    from dreaming.lake import Lake

    with Lake(request.app.state.settings) as lake:
        rows = lake.sessions(tenant=who.tenant, agent=who.agent, session_ids=[session_id])
    if not rows:
        raise NotFound(f"no session {session_id!r}")
    return session_to_api(rows[0])
