"""SIGTERM ends `dreams backfill` / `dreams fleet` promptly: exit 143, a summary on stderr, nothing half-written.

The CLI runs as a real process against the session's Prefect test server; a dream is held mid-read by
the test-only stall point (dreaming.chaos, ``DREAMS_TEST_STALL_AT``) so that the signal lands while a
Prefect flow runs. The 30 s bound is liveness (it ignored SIGTERM for 15 minutes before), not speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dreaming.catalog import Catalog
from dreaming.stores import StoreService
from tests.factories import write_sessions

pytestmark = pytest.mark.flow

DAY0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DREAMS = str(Path(sys.executable).with_name("dreams"))
BOUND_S = 30


def _lake(lake, stores=("bf",)) -> None:
    for name in stores:
        StoreService(Catalog(lake)).create(name, scope="acme")
    write_sessions(lake, [{"session_id": f"sesn_d{i}_{j}", "tenant": "acme", "start": DAY0 + timedelta(days=i, hours=j),
                           "events": [("user", "always use uv, never pip"), ("assistant", f"done day {i}")]}
                          for i in range(3) for j in range(2)])


def _start(lake, *args: str) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "DREAMS_HOME": str(lake.home), "PREFECT_API_URL": PREFECT_API_URL.value(),
           "DREAMS_TEST_STALL_AT": "read.running", "DREAMS_SIGNAL_GRACE_S": "5", "DREAMS_DREAM_LEASE_S": "2"}
    return subprocess.Popen([DREAMS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _when_running(proc: subprocess.Popen, lake, within: float = 120) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        running = Catalog(lake).list_dreams(statuses=["running"])
        if running:
            return running[0].id
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"no dream started within {within} s: {proc.communicate()}")


def _terminate(proc: subprocess.Popen) -> tuple[float, str]:
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {BOUND_S} s after SIGTERM: {proc.communicate()[1][-2000:]}")
    return time.monotonic() - t, err


def _nothing_half_written(lake, store: str) -> None:
    import sqlalchemy as sa

    from dreaming.catalog import store_versions

    cat = Catalog(lake)
    s = cat.get_store(store)
    assert s["head_version"] == 1  # the cut-off dream promoted nothing
    with cat.engine.connect() as conn:  # every version row, reserved ones included
        rows = conn.execute(sa.select(store_versions.c.version, store_versions.c.state)
                            .where(store_versions.c.store_id == s["id"])).all()
    assert [tuple(r) for r in rows] == [(1, "ready")]


def test_sigterm_ends_a_backfill_with_a_summary_and_exit_143(prefect_harness, lake):
    _lake(lake)
    proc = _start(lake, "backfill", "--store", "bf", "--from", "2026-11-02", "--to", "2026-11-04")
    dream_id = _when_running(proc, lake)
    took, err = _terminate(proc)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM" in err and "backfill of bf:" in err, err[-2000:]
    assert "not started: 2026-11-03, 2026-11-04" in err
    assert dream_id in err  # the day that was cut off is named
    _nothing_half_written(lake, "bf")
    # not lost: the cut-off dream is failed (Prefect's crash hook, or the reaper once its lease expired)
    time.sleep(2.5)
    subprocess.run([DREAMS, "reap", "--store", "bf"], env={**os.environ, "DREAMS_HOME": str(lake.home)},
                   capture_output=True, check=True)
    d = Catalog(lake).get_dream(dream_id)
    assert d.status == "failed" and d.error.type == "crashed"


def test_sigterm_ends_a_fleet_waiting_on_its_workers(prefect_harness, lake):
    _lake(lake, stores=("f1", "f2"))
    proc = _start(lake, "fleet", "--scope", "acme", "--workers", "1")
    _when_running(proc, lake)
    took, err = _terminate(proc)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM" in err and "fleet of 2 store(s):" in err, err[-2000:]
    assert "not started:" in err  # one worker: the second store never began
    for s in ("f1", "f2"):
        _nothing_half_written(lake, s)
