"""Use a Prefect server that already runs on this machine instead of starting a temporary one.

Without ``PREFECT_API_URL``, every flow run of a CLI process (``dreams run``, ``backfill``, ``fleet``,
``demo``) makes Prefect start a temporary server in a subprocess — 14–28 s on a small machine, and the
run is gone from every UI when the process ends. When a server answers on the local address a plain
``prefect server start`` serves (``http://127.0.0.1:4200/api``, or ``DREAMS_LOCAL_PREFECT_URL``), the
CLI points this process at it: the dream starts at once and shows up in that server's UI, where its
approval form can be answered.

The probe is a TCP connect (a refused port answers in well under a millisecond) and, when something
listens, one ``GET /health`` that must answer ``true``; anything else — another program on the port,
a slow answer — leaves Prefect's default alone. It runs before Prefect reads its settings, and never
overrides a ``PREFECT_API_URL`` set in the environment or in the active Prefect profile.
"""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:4200/api"
CONNECT_TIMEOUT_S = 0.2
HEALTH_TIMEOUT_S = 1.0


def local_url() -> str:
    """The address probed: ``DREAMS_LOCAL_PREFECT_URL`` (empty turns the probe off), else the default."""
    return os.environ.get("DREAMS_LOCAL_PREFECT_URL", DEFAULT_URL).strip()


def healthy(api_url: str) -> bool:
    """A Prefect API answers ``true`` on ``<api_url>/health``."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError:
        return False
    import urllib.request  # only when something listens: it imports http.client and ssl

    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S) as resp:  # noqa: S310
            return resp.status == 200 and json.loads(resp.read(64) or b"null") is True
    except (OSError, ValueError):
        return False


def _configured() -> bool:
    """PREFECT_API_URL is set in the environment or in the active Prefect profile (read from the profiles
    file without importing Prefect, which would fix its settings before this process could change them)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    import tomllib
    from pathlib import Path

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    return bool(((data.get("profiles") or {}).get(active) or {}).get("PREFECT_API_URL"))


def adopt_local_server() -> str | None:
    """Point this process at a local Prefect server when none is configured and one answers; returns its
    URL, or None when Prefect's own behaviour (the configured server, or a temporary one) is kept."""
    url = local_url()
    if not url or _configured() or not healthy(url):
        return None
    os.environ["PREFECT_API_URL"] = url
    return url
