"""A local stand-in of Anthropic's Messages API for tests: a real HTTP server on loopback, in a thread.

It answers ``POST /v1/messages`` from a script — a queue of responses built with ``tool_use(...)``,
``text(...)`` or ``error(status, type, message)``, or callables ``fn(request_body) -> response`` —
and records every request (path, headers, JSON body) in ``requests``. The real ``anthropic`` SDK
talks to it through ``base_url``, so the whole client code path (serialisation, headers, status →
exception mapping, response parsing) runs for real.

    with MessagesStandin([tool_use("record_findings", {...}), error(429)]) as api:
        client = anthropic.Anthropic(base_url=api.url, api_key="test", max_retries=0)

When the script runs out the server answers 500 with ``standin_script_exhausted`` so a test that
makes an unexpected call fails loudly. ``POST /v1/messages/count_tokens`` answers with the same
chars/4 estimate the project uses.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ids = itertools.count(1)


def usage(input_tokens=100, output_tokens=50, cache_creation_input_tokens=0, cache_read_input_tokens=0) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
    }


def tool_use(name: str, input: dict, *, use: dict | None = None, stop_reason: str = "tool_use") -> dict:
    """A 200 response whose content is one tool_use block."""
    n = next(_ids)
    return {
        "status": 200,
        "body": {
            "id": f"msg_standin{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": None,  # filled with the requested model
            "content": [{"type": "tool_use", "id": f"toolu_standin{n:04d}", "name": name, "input": input}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": use or usage(),
        },
    }


def text(message: str, *, use: dict | None = None) -> dict:
    """A 200 response with a text block only (no tool call)."""
    n = next(_ids)
    return {
        "status": 200,
        "body": {
            "id": f"msg_standin{n:04d}", "type": "message", "role": "assistant", "model": None,
            "content": [{"type": "text", "text": message}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": use or usage(),
        },
    }


_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}


def error(status: int, type: str | None = None, message: str | None = None) -> dict:
    """An error response shaped like Anthropic's: {"type": "error", "error": {type, message}}."""
    etype = type or _ERROR_TYPES.get(status, "api_error")
    return {
        "status": status,
        "body": {"type": "error", "error": {"type": etype, "message": message or f"stand-in {etype}"}},
    }


class MessagesStandin:
    def __init__(self, script=None):
        self.script: deque = deque(script or [])
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                path = self.path.split("?")[0]
                with standin._lock:
                    standin.requests.append({"path": path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "raw": raw})
                    if path.endswith("/count_tokens"):
                        chars = len(json.dumps(body.get("system", ""))) + len(json.dumps(body.get("messages", [])))
                        resp = {"status": 200, "body": {"input_tokens": -(-chars // 4)}}
                    elif not path.endswith("/v1/messages"):
                        resp = error(404, "not_found_error", f"stand-in has no route {path}")
                    elif standin.script:
                        resp = standin.script.popleft()
                    else:
                        resp = error(500, "standin_script_exhausted", "the stand-in's script ran out")
                if callable(resp):
                    resp = resp(body)
                payload = dict(resp["body"])
                if payload.get("type") == "message" and payload.get("model") is None:
                    payload["model"] = body.get("model", "claude-standin")
                data = json.dumps(payload).encode()
                self.send_response(resp["status"])
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_standin{len(standin.requests):04d}")
                for k, v in resp.get("headers", {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="messages-standin", daemon=True)

    def push(self, *responses) -> None:
        with self._lock:
            self.script.extend(responses)

    @property
    def message_requests(self) -> list[dict]:
        """Bodies of the POST /v1/messages requests, in order."""
        return [r["body"] for r in self.requests if r["path"].endswith("/v1/messages")]

    def __enter__(self) -> "MessagesStandin":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
