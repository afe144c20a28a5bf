"""Fleet throughput and Prefect overhead per dream, against the bare pipeline measured in the same run.

    .venv/bin/python bench/fleet.py [--sizes 1,10,100] [--workers 2] [--no-dask] [--dask-max 100]
                                    [--overhead-n 10]

For each size N it makes N small stores (own lake under a temp dir, 3 sessions each) and dreams them:

- bare:    DreamService create → read → curate → output, then promotion (which runs the GX gate)
           as plain function calls, one store after another — the work without Prefect;
- threads: the fleet flow on ThreadPoolTaskRunner(workers);
- dask:    the fleet flow on a local Dask cluster of `workers` processes (prefect-dask).

It prints stores per minute and the ratio to bare. Then the Prefect overhead per dream: the same
dream as a `dream` flow run, sequentially on a warm server, minus the bare time per dream.
Uses PREFECT_API_URL when set; otherwise starts `prefect server start` on a free loopback port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def start_server(tmp: Path) -> subprocess.Popen | None:
    """A local Prefect server (its own PREFECT_HOME) unless PREFECT_API_URL is already set."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_HOME"] = str(tmp / "prefect-home")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PREFECT_UI_API_URL": api})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                os.environ["PREFECT_API_URL"] = api
                return proc
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("prefect server did not start in 180 s")


def make_lake(home: Path, n: int, sessions: int = 3) -> list[str]:
    """N stores (scope bench/agent-i) with `sessions` sessions each; sets DREAMS_HOME to the lake."""
    os.environ["DREAMS_HOME"] = str(home)
    from dreaming.catalog import Catalog
    from dreaming.settings import get_settings
    from dreaming.stores import StoreService
    from tests.factories import write_sessions

    settings = get_settings()
    st = StoreService(Catalog(settings))
    names = [st.create(f"agent-{i}", scope=f"bench/agent-{i}")["name"] for i in range(n)]
    write_sessions(settings, [
        {"session_id": f"sesn_{i}_{j}", "tenant": "bench", "agent_id": f"agent-{i}",
         "start": T0 + timedelta(hours=j),
         "events": [("user", "always use uv, never pip"), ("user", "please indent with 4 spaces"),
                    ("assistant", "noted")]}
        for i in range(n) for j in range(sessions)])
    return names


def bare_dream(store: str) -> None:
    from dreaming.catalog import Catalog
    from dreaming.dreams import DreamService, Selection
    from dreaming.promotion import promote

    svc = DreamService(Catalog())
    d = svc.create(store, Selection(all_new=True), output_behavior="update_existing")
    inputs = svc.read(d.id)
    svc.output(inputs, svc.curate(inputs))
    promote(svc.catalog, d.id, decided_by="bench")


def check_promoted(n: int) -> int:
    from dreaming.catalog import Catalog

    return sum(d.promotion.state == "promoted" for d in Catalog().list_dreams(limit=10 * n + 10))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--workers", type=int, default=2, help="threads / Dask worker processes (default 2 = cores)")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--dask-max", type=int, default=100, help="skip Dask above this many stores")
    ap.add_argument("--overhead-n", type=int, default=10, help="sequential dreams for the overhead measurement")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="dreams-bench-"))
    server = start_server(tmp)
    try:
        from flows.dream import run_dream_to_state
        from flows.fleet import fleet_flow

        # warm-up: imports (GX ~10 s), server caches; not counted
        names = make_lake(tmp / "warm", 2)
        bare_dream(names[0])
        run_dream_to_state(store=names[1], output_behavior="update_existing")

        print(f"\nfleet throughput ({os.cpu_count()} cores, workers={args.workers}; "
              "each dream = read+curate+output+gate+promote)")
        print(f"{'mode':<8} {'stores':>6} {'seconds':>9} {'stores/min':>11} {'vs bare':>8} {'promoted':>9}",
              flush=True)
        for n in sizes:
            names = make_lake(tmp / f"bare-{n}", n)
            t_bare = timed(lambda: [bare_dream(s) for s in names])
            rows = [("bare", n, t_bare, check_promoted(n))]
            runners = ["threads"] + ([] if args.no_dask or n > args.dask_max else ["dask"])
            for runner in runners:
                make_lake(tmp / f"{runner}-{n}", n)
                f = fleet_flow(runner, args.workers)
                t = timed(lambda: f(scope="bench", max_concurrency=args.workers, return_state=True))
                rows.append((runner, n, t, check_promoted(n)))
            for mode, n_, t, ok in rows:
                print(f"{mode:<8} {n_:>6} {t:>9.2f} {60 * n_ / t:>11.1f} {t_bare / t:>7.2f}x {ok:>9}", flush=True)

        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        k = args.overhead_n
        names = make_lake(tmp / "ovh-bare", k)
        bare = [timed(lambda s=s: bare_dream(s)) for s in names]
        names = make_lake(tmp / "ovh-flow", k)
        flows_ = [timed(lambda s=s: run_dream_to_state(store=s, output_behavior="update_existing")) for s in names]
        names = make_lake(tmp / "ovh-flow-nohb", k)
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            nohb = [timed(lambda s=s: run_dream_to_state(store=s, output_behavior="update_existing")) for s in names]
        b = statistics.mean(bare)
        print(f"\nPrefect overhead per dream (sequential, warm server, {k} dreams each)")
        print(f"{'mode':<28} {'s/dream':>8} {'median':>8} {'overhead':>9} {'vs bare':>8}")
        for label, xs in (("bare pipeline", bare), ("dream flow run", flows_),
                          ("dream flow run, no heartbeat", nohb)):
            m = statistics.mean(xs)
            print(f"{label:<28} {m:>8.3f} {statistics.median(xs):>8.3f} {m - b:>9.3f} {m / b:>7.2f}x")
        ovh = statistics.mean(flows_) - b
        print(f"target: overhead <= 1 s per dream with default settings: {'met' if ovh <= 1 else 'NOT met'}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
