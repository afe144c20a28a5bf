"""Benchmark: the HTTP API's overhead on memory retrieve and memories list (issue 16).

One store of ``--memories`` memories (default 200) on a scratch lake. For each operation, ``--clients``
threads (default 50) each make ``--requests`` calls (default 40) at once, after a warm-up:

- **http**: a real `dreams api` server (uvicorn, a subprocess on 127.0.0.1) called with httpx, one
  keep-alive client per thread: ``GET /v1/memory_stores/{id}/memories/{mem}`` and
  ``GET /v1/memory_stores/{id}/memories?limit=20``;
- **in-process** (the baseline, same run): the same route functions (dreaming.api.memory_stores
  ``retrieve_memory`` / ``list_memories``) called directly in this process, with the same concurrency —
  the same catalog reads, version file read and conversion, without HTTP, ASGI, JSON and auth.

Prints p50/p99 of each and the p50 overhead (http − in-process). Target: p50 overhead ≤ 5 ms.

    .venv/bin/python bench/api.py [--memories 200] [--clients 50] [--requests 40] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "sk-bench-0123456789"
TARGET_MS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _load(call_factory, clients: int, requests: int) -> list[float]:
    """``clients`` threads at once, ``requests`` calls each; the latency of every call, in ms."""
    out: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def worker():
        call = call_factory()
        for _ in range(3):  # warm-up: a connection, the first reads
            call()
        start.wait()
        mine = []
        for _ in range(requests):
            t = time.perf_counter()
            call()
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "DREAMS_HOME": str(home), "DREAMS_API_KEYS": f"{KEY}=bench", "DREAMS_LOCAL_PREFECT_URL": ""}
    proc = subprocess.Popen([sys.executable, "-c", "from dreaming.cli import main; main()", "api", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("dreams api did not start")


def run(n_memories: int, clients: int, requests: int) -> dict:
    import httpx

    from dreaming.api import memory_stores as routes
    from dreaming.api.auth import Principal
    from dreaming.catalog import Catalog
    from dreaming.settings import Settings
    from dreaming.store_edits import MemoryEditor
    from dreaming.stores import StoreService

    home = Path(tempfile.mkdtemp(prefix="bench-api-"))
    notes = home.parent / (home.name + "-notes")
    try:
        notes.mkdir()
        for i in range(n_memories):
            (notes / f"note-{i:04d}.md").write_text(f"Memory {i}: always run the tests with uv before pushing "
                                                    f"(rule {i}).\n")
        settings = Settings(home=home / "lake")
        cat = Catalog(settings)
        store = StoreService(cat).create_from_dir("bench", notes, scope="bench")
        _, memories = MemoryEditor(cat).head(store["id"])
        mem = memories[len(memories) // 2]
        sid, mid = store["id"], mem.memory_id

        request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(catalog=cat, settings=settings)))
        who = Principal(tenant="bench", key_id="key:bench")
        inproc = {
            "retrieve": lambda: lambda: routes.retrieve_memory(sid, mid, request, "full", who),
            "list": lambda: lambda: routes.list_memories(sid, request, who, 0, 20, None, None, "basic"),
        }
        assert inproc["retrieve"]()()["id"] == mid and len(inproc["list"]()()["data"]) == 20

        proc, url = _start_server(settings.home)
        try:
            def http(path):
                def factory():
                    client = httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=60)

                    def call():
                        r = client.get(path)
                        r.raise_for_status()
                    return call
                return factory

            over_http = {"retrieve": http(f"/v1/memory_stores/{sid}/memories/{mid}"),
                         "list": http(f"/v1/memory_stores/{sid}/memories?limit=20")}
            rows = {}
            for op in ("retrieve", "list"):
                base = _load(inproc[op], clients, requests)
                net = _load(over_http[op], clients, requests)
                rows[op] = {"in_process_p50_ms": statistics.median(base), "in_process_p99_ms": _pct(base, 0.99),
                            "http_p50_ms": statistics.median(net), "http_p99_ms": _pct(net, 0.99),
                            "calls": len(net)}
                rows[op]["p50_overhead_ms"] = rows[op]["http_p50_ms"] - rows[op]["in_process_p50_ms"]
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        cat.engine.dispose()
        return {"memories": n_memories, "clients": clients, "requests_per_client": requests, "cpus": os.cpu_count(),
                "ops": rows}
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(notes, ignore_errors=True)


def table(res: dict) -> str:
    lines = [f"{res['clients']} concurrent clients × {res['requests_per_client']} calls, a store of "
             f"{res['memories']} memories, {res['cpus']} CPUs",
             "",
             "| operation | in-process p50 | in-process p99 | HTTP p50 | HTTP p99 | p50 overhead | target ≤ 5 ms |",
             "|---|---:|---:|---:|---:|---:|---|"]
    names = {"retrieve": "memory retrieve (`view=full`)", "list": "memories list (`limit=20`)"}
    for op, r in res["ops"].items():
        ok = "✔" if r["p50_overhead_ms"] <= TARGET_MS else "✘"
        lines.append(f"| {names[op]} | {r['in_process_p50_ms']:.1f} ms | {r['in_process_p99_ms']:.1f} ms | "
                     f"{r['http_p50_ms']:.1f} ms | {r['http_p99_ms']:.1f} ms | {r['p50_overhead_ms']:+.1f} ms | {ok} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memories", type=int, default=200)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--json", type=Path, help="Also write the results as JSON here.")
    args = ap.parse_args()
    res = run(args.memories, args.clients, args.requests)
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
