"""A real `dreams api` server on 127.0.0.1 per test module (a subprocess on a free port, its own lake),
driven with the official anthropic SDK. Two tenants' keys: ``acme`` (KEY_A) and ``globex`` (KEY_B)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY_A = "sk-test-acme-0123456789"
KEY_B = "sk-test-globex-9876543210"
STARTUP_S = 90


@dataclass
class Server:
    url: str
    home: Path
    proc: subprocess.Popen
    log: Path

    def client(self, key: str = KEY_A):
        import anthropic

        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=30)

    @property
    def settings(self):
        from dreaming.settings import Settings

        return Settings(home=self.home)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, extra_env: dict[str, str] | None = None) -> Server:
    port = _free_port()
    env = {**os.environ, "DREAMS_HOME": str(home), "DREAMS_API_KEYS": f"{KEY_A}=acme,{KEY_B}=globex",
           "DREAMS_LOCAL_PREFECT_URL": "", **(extra_env or {})}
    log = home.parent / f"api-{port}.log"
    home.mkdir(parents=True, exist_ok=True)
    out = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-c", "from dreaming.cli import main; main()", "api",
                             "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dreams api exited {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return Server(url, home, proc, log)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"dreams api did not answer within {STARTUP_S} s:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("api") / "lake")
    yield server
    stop_server(server)
