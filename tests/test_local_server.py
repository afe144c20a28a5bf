"""The CLI uses a Prefect server that already answers on this machine instead of starting a temporary one
(issue 14), and never overrides a server that is configured."""

from __future__ import annotations

import json
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


@pytest.mark.flow
def test_dreams_run_uses_the_running_server_instead_of_a_temporary_one(prefect_harness, lake, tmp_path):
    """`dreams run` with no PREFECT_API_URL, a server answering locally: the flow run is on that server."""
    import subprocess
    import sys
    from datetime import timedelta
    from pathlib import Path

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from dreaming.catalog import Catalog
    from dreaming.stores import StoreService
    from tests.factories import T0, write_sessions

    StoreService(Catalog(lake)).create("local", scope="acme")
    write_sessions(lake, [{"session_id": f"sesn_local{i}", "tenant": "acme", "start": T0 + timedelta(hours=i),
                           "events": [("user", "always use uv, never pip"), ("assistant", "ok")]} for i in range(2)])
    url = PREFECT_API_URL.value()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(DREAMS_HOME=str(lake.home), DREAMS_LOCAL_PREFECT_URL=url, PREFECT_HOME=str(tmp_path / "ph"))
    dreams = str(Path(sys.executable).with_name("dreams"))
    out = subprocess.run([dreams, "run", "--store", "local", "--json"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"using the Prefect server running at {url}" in out.stderr
    assert "temporary server" not in out.stderr.lower()
    dream_id = json.loads(out.stdout)["id"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    assert any((r.parameters or {}).get("dream_id") == dream_id for r in runs), "the run is not on that server"
