"""The FastAPI app: routers, API keys, and every error in Anthropic's shape.

``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`` with the status that the
error class carries (dreaming/errors.py ``http_status`` / ``error_type``: the one mapping); a request that
does not validate is a 400 ``invalid_request_error`` whose message names the field; anything unexpected is
a 500 ``api_error`` (logged, its text not sent). Every response has a ``request-id`` header.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dreaming import ids
from dreaming.api.auth import KeyRing, parse_keys
from dreaming.api.runner import InProcessRunner
from dreaming.catalog import Catalog
from dreaming.errors import BadInput, DreamsError
from dreaming.settings import Settings, get_settings

log = logging.getLogger("dreaming.api")

_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
               413: "request_too_large", 429: "rate_limit_error"}


def error_body(status: int, type_: str, message: str, request: Request) -> JSONResponse:
    rid = getattr(request.state, "request_id", None)
    return JSONResponse({"type": "error", "error": {"type": type_, "message": message}, "request_id": rid},
                        status_code=status)


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # a discriminated union adds the tag as a level (inputs.0.sessions.session_ids): drop it
    out = []
    for p in parts:
        if p in ("memory_store", "sessions", "create_new", "update_existing", "str", "ModelConfig",
                 "function-after[_path(), str]"):
            continue
        out.append(p)
    return ".".join(out) or "body"


def validation_message(exc: RequestValidationError) -> str:
    """``field: problem`` for each problem (at most 5). For a field that takes one of two forms (``model``: a
    string or an object), the form the request did not use is not reported: an object with a bad member is
    reported as that member alone."""
    errors = exc.errors()
    fields = [_loc(tuple(e.get("loc", ()))) for e in errors]
    errors = [e for e, f in zip(errors, fields, strict=True)
              if not (str(e.get("type", "")).endswith("_type")
                      and any(other.startswith(f + ".") for other in fields))]
    msgs = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            msgs.append(f"body: not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})")
            continue
        field = _loc(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        msgs.append(f"{field}: {msg}")
    return "; ".join(msgs)


class RequestId:
    """A ``request-id`` for every request (``request.state.request_id``) and its response header. Plain ASGI,
    not ``@app.middleware("http")``: that one costs a task group and two memory streams per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = ids.new_id("req")
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None, *, catalog: Catalog | None = None,
               keys: dict[str, str] | None = None) -> FastAPI:
    """The API app over the lake of ``settings`` (default: from the environment). ``keys``: digest → tenant
    (default: from the setting ``api_keys``), beside the catalog's keys (`dreams api-key create`); with no
    key at all (none set, none active in the catalog), the app refuses to be built (BadInput)."""
    from dreaming import api_keys

    settings = settings or get_settings()
    keys = parse_keys(settings.api_keys) if keys is None else keys
    catalog = catalog or Catalog(settings)
    if not keys and not api_keys.any_active(catalog):
        raise BadInput("no API keys: make one with `dreams api-key create --tenant T`, or set DREAMS_API_KEYS "
                       "to key=tenant[,key=tenant] or to a JSON file (docs/api.md#auth-and-tenancy)",
                       field="api_keys")
    from importlib.metadata import version

    app = FastAPI(title="dreams", version=version("dreams"),
                  description="Dreams and Memory Store APIs, compatible with Anthropic's (docs/api.md).")
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.keyring = KeyRing(keys, catalog)
    app.state.runner = InProcessRunner(app.state.catalog)

    app.add_middleware(RequestId)

    @app.exception_handler(DreamsError)
    async def _dreams_error(request: Request, exc: DreamsError):
        return error_body(exc.http_status, exc.error_type, str(exc), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_body(400, "invalid_request_error", validation_message(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_body(exc.status_code, _HTTP_TYPES.get(exc.status_code, "api_error"), message, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_body(500, "api_error", "internal server error", request)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    from dreaming.api import dreams, memory_stores, sessions

    app.include_router(memory_stores.router)
    app.include_router(dreams.router)
    app.include_router(sessions.router)
    return app
