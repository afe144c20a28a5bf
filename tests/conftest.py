"""Shared fixtures. Unit tests use a temporary lake; flow tests share one Prefect test server."""

from __future__ import annotations

import os
import tempfile

import pytest

# Before anything imports Prefect: a private PREFECT_HOME, no telemetry, quiet logs.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="dreams-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# a developer's own Prefect server on :4200 is never adopted by the CLI under test (dreaming.local_server)
os.environ["DREAMS_LOCAL_PREFECT_URL"] = ""



@pytest.fixture
def lake(tmp_path, monkeypatch):
    """A fresh, empty lake: DREAMS_HOME points at a temp folder. Returns its Settings."""
    from dreaming.settings import get_settings

    home = tmp_path / "lake"
    monkeypatch.setenv("DREAMS_HOME", str(home))
    return get_settings()


@pytest.fixture
def catalog(lake):
    from dreaming.catalog import Catalog

    return Catalog(lake)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (startup is ~15 s on 2 cores)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


@pytest.fixture
def research_data():
    """The research transcripts (setting ``DREAMS_RESEARCH_DATA``, default ../shared/research-data), or skip."""
    from dreaming.settings import get_settings

    path = get_settings().research_data
    if not path.is_dir():
        pytest.skip(f"{path} is absent (set DREAMS_RESEARCH_DATA to point at the research data)")
    return path
