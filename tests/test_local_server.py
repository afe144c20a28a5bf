"""The CLI uses a Prefect server that already answers on this machine instead of starting a temporary one
(issue 14), and never overrides a server that is configured."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dreaming import local_server


def _serve(body: bytes, status: int = 200):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(status if self.path == "/api/health" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/api"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "")  # unset for the probe; restored after the test (adopt sets it)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    return monkeypatch


def test_a_healthy_local_server_is_adopted(clean_env):
    srv, url = _serve(b"true")
    try:
        clean_env.setenv("DREAMS_LOCAL_PREFECT_URL", url)
        assert local_server.adopt_local_server() == url
        assert os.environ["PREFECT_API_URL"] == url
    finally:
        srv.shutdown()


@pytest.mark.parametrize("body,status", [(b"false", 200), (b"<html>hello</html>", 200), (b"true", 500)])
def test_something_else_on_the_port_is_not_a_prefect_server(clean_env, body, status):
    srv, url = _serve(body, status)
    try:
        clean_env.setenv("DREAMS_LOCAL_PREFECT_URL", url)
        assert local_server.adopt_local_server() is None
    finally:
        srv.shutdown()


def test_nothing_listening_keeps_prefects_default(clean_env):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clean_env.setenv("DREAMS_LOCAL_PREFECT_URL", f"http://127.0.0.1:{port}/api")
    assert local_server.adopt_local_server() is None
    clean_env.setenv("DREAMS_LOCAL_PREFECT_URL", "")  # the probe turned off
    assert local_server.adopt_local_server() is None


def test_a_configured_server_is_never_overridden(clean_env, tmp_path):
    srv, url = _serve(b"true")
    try:
        clean_env.setenv("DREAMS_LOCAL_PREFECT_URL", url)
        profiles = tmp_path / "prefect-home" / "profiles.toml"
        profiles.parent.mkdir(parents=True)
        profiles.write_text('active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect.internal/api"\n')
        assert local_server.adopt_local_server() is None  # the active profile names a server
        clean_env.setenv("PREFECT_PROFILE", "other")
        assert local_server.adopt_local_server() == url  # a profile without a server
        clean_env.setenv("PREFECT_API_URL", "http://elsewhere/api")
        assert local_server.adopt_local_server() is None
    finally:
        srv.shutdown()
