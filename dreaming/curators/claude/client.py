"""The anthropic SDK behind the Claude curator: one validated tool call, its budget and its errors.

``call_tool(client, run, request, phase)`` sends a request whose ``tool_choice`` names one tool and
returns the tool input validated by that tool's pydantic model (``schemas.OUTPUT_MODELS``). Malformed
output is retried once, with the validation error sent back as an ``is_error`` tool result; a second
malformed answer raises ``DreamFailure('invalid_model_output')``. Before each call ``max_tokens`` is set
to what the dream's token budget has left (``afford``); a call the budget cannot cover raises
``budget_exceeded`` before it is made.

Errors: transient API errors (429, 529, 5xx, 408/409, connection errors, timeouts) are re-raised as
the SDK's own exceptions — ``is_transient_error`` recognises them and Prefect retries the task; the
SDK's own retries default to 0 (``claude_sdk_max_retries``) so the two layers do not multiply.
Everything deterministic raises ``DreamFailure`` (``authentication_error``, ``permission_error``,
``invalid_request_error``, ``budget_exceeded``, ``invalid_model_output``, ...).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import anthropic
from pydantic import BaseModel, ValidationError

from dreaming.curators.claude.schemas import OUTPUT_MODELS, short_validation
from dreaming.digest import estimate_tokens
from dreaming.errors import DreamFailure, DreamsError
from dreaming.models import Usage
from dreaming.settings import Settings

MIN_OUTPUT_TOKENS = 1024  # a call that cannot afford this much output is not made
BUDGET_SAFETY = 1.25  # the chars/4 estimate under-counts id-heavy text; budget checks add 25 %


# --- configuration -------------------------------------------------------------------------------


def check_credentials(settings: Settings | None = None) -> None:  # noqa: ARG001 — settings kept for symmetry
    """Raise ``DreamsError`` (exit 2) when no Anthropic credentials are configured.

    ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``, which the SDK also reads) must be set.
    """
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise DreamsError(
            "the claude curator needs ANTHROPIC_API_KEY: export ANTHROPIC_API_KEY=sk-ant-… "
            "(and ANTHROPIC_BASE_URL for another Messages API endpoint), or run with --curator rules"
        )


def make_client(settings: Settings) -> anthropic.Anthropic:
    """The SDK client from the environment (key checked first); base_url: ANTHROPIC_BASE_URL, else the SDK's."""
    check_credentials(settings)
    return anthropic.Anthropic(max_retries=settings.claude_sdk_max_retries, timeout=settings.claude_timeout_s)


# --- errors --------------------------------------------------------------------------------------

_TRANSIENT_STATUS = {408, 409, 429}


def is_transient_error(exc: BaseException) -> bool:
    """True for errors worth retrying: 429, 529 overloaded, 5xx, 408/409, connection errors, timeouts.

    Looks through ``__cause__``/``__context__`` chains; a ``DreamFailure`` is never transient.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, DreamFailure):
            return False
        if isinstance(cur, anthropic.APIStatusError):
            return cur.status_code in _TRANSIENT_STATUS or cur.status_code >= 500
        if isinstance(cur, (anthropic.APIConnectionError, anthropic.RetryableError, TimeoutError, ConnectionError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
}


def failure_from_status(exc: anthropic.APIStatusError, phase: str) -> DreamFailure:
    """A deterministic API error as a ``DreamFailure`` with the API's ``error.type`` where it has one."""
    etype, msg = None, None
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else body
    if isinstance(err, dict):
        etype, msg = err.get("type"), err.get("message")
    etype = etype if isinstance(etype, str) and etype else _STATUS_TYPES.get(exc.status_code, "api_error")
    hint = ""
    if exc.status_code == 401:
        hint = " — check ANTHROPIC_API_KEY"
    elif exc.status_code == 404:
        hint = " — check the model id and ANTHROPIC_BASE_URL"
    return DreamFailure(etype, f"Messages API answered {exc.status_code} during {phase}: {msg or exc.message}{hint}")


# --- one call ------------------------------------------------------------------------------------


@dataclass
class Run:
    """The state of one dream's calls: model, budget, the stable system blocks, and what was spent."""

    model: str
    budget: int
    max_output: int
    system: list[dict]
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    notes: list[str] = field(default_factory=list)


def request_tokens(req: dict) -> int:
    """Estimated input tokens of a request: the one estimate (characters/4) over the text the model
    reads — system blocks, tool definitions (compact JSON) and message contents."""
    parts = [b["text"] if isinstance(b, dict) else str(b) for b in (
        req["system"] if isinstance(req["system"], list) else [req["system"]])]
    parts.append(json.dumps(req["tools"], ensure_ascii=False, separators=(",", ":")))
    for m in req["messages"]:
        content = m["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for b in content:
            if b.get("type") == "text":
                parts.append(b["text"])
            elif b.get("type") == "tool_use":
                parts.append(json.dumps(b["input"], ensure_ascii=False, separators=(",", ":")))
            elif b.get("type") == "tool_result":
                c = b.get("content")
                parts.append(c if isinstance(c, str) else json.dumps(c, ensure_ascii=False))
    return sum(estimate_tokens(p) for p in parts)


def usage_of(resp) -> Usage:
    u = getattr(resp, "usage", None)
    if u is None:
        return Usage()
    return Usage(
        input_tokens=getattr(u, "input_tokens", 0) or 0,
        output_tokens=getattr(u, "output_tokens", 0) or 0,
        cache_creation_input_tokens=getattr(u, "cache_creation_input_tokens", 0) or 0,
        cache_read_input_tokens=getattr(u, "cache_read_input_tokens", 0) or 0,
    )


def _block_param(b) -> dict | None:
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
    if b.type == "text" and b.text:
        return {"type": "text", "text": b.text}
    return None


def afford(run: Run, body: dict, phase: str) -> int:
    """max_tokens for the next call, or ``budget_exceeded`` if the budget cannot cover it."""
    est = math.ceil(request_tokens(body) * BUDGET_SAFETY)
    left = run.budget - run.usage.total - est
    if left < min(MIN_OUTPUT_TOKENS, run.max_output):
        raise DreamFailure(
            "budget_exceeded",
            f"stopped before {phase}: it needs about {est} input tokens (estimate: characters/4 + 25 %) plus room for "
            f"output, and {run.usage.total} of the token budget per dream of {run.budget} are already used "
            f"({run.calls} calls); raise DREAMS_TOKEN_BUDGET_PER_DREAM or select fewer sessions",
        )
    return min(run.max_output, left)


def call_tool(client, run: Run, req: dict, phase: str) -> BaseModel:
    """Send ``req`` and return its tool's validated input (one retry on malformed output)."""
    tool = req["tool_choice"]["name"]
    schema = OUTPUT_MODELS[tool]
    messages = list(req["messages"])
    last_error = ""
    for attempt in (1, 2):
        body = {**req, "messages": messages}
        body["max_tokens"] = afford(run, body, phase)
        try:
            resp = client.messages.create(**body)
        except anthropic.APIStatusError as exc:
            if is_transient_error(exc):
                raise
            raise failure_from_status(exc, phase) from exc
        run.calls += 1
        run.usage.add(usage_of(resp))
        block = next((b for b in resp.content if b.type == "tool_use" and b.name == tool), None)
        if block is not None:
            try:
                return schema.model_validate(block.input)
            except ValidationError as exc:
                last_error = short_validation(exc)
        else:
            last_error = f"no call of the {tool} tool in the answer (stop_reason={resp.stop_reason})"
        if resp.stop_reason == "max_tokens":
            last_error += "; the answer was cut at max_tokens — be more concise"
        if attempt == 2:
            break
        assistant = [p for p in (_block_param(b) for b in resp.content) if p]
        if block is not None:
            feedback = [{"type": "tool_result", "tool_use_id": block.id, "is_error": True,
                         "content": f"Invalid {tool} input: {last_error}\nCall {tool} again with corrected input."}]
        else:
            feedback = [{"type": "text", "text": f"Error: {last_error}. Call the {tool} tool."}]
        if assistant:
            messages = [*messages, {"role": "assistant", "content": assistant}, {"role": "user", "content": feedback}]
        else:
            messages = [*messages, {"role": "user", "content": feedback}]
    raise DreamFailure(
        "invalid_model_output", f"{phase}: the model's {tool} output was invalid twice (retried once): {last_error}"
    )
