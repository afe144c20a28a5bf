"""Benchmark: one dream's read + curate + output on synthetic lakes of growing size.

For each size (default 100, 1,000, 10,000 sessions) a child process builds a fresh lake with
`dreaming.scenarios.generate_bench_lake`, creates a store (one memory per 10 sessions, with planted
duplicates), and times the three pipeline steps through `DreamService` — Prefect start-up and the
one-off import of the curator's libraries (a worker pays it once; reported apart) are excluded, the steps are the same functions the flow's tasks call. The baseline, measured in the same
child on the same files, is a bare DuckDB scan of every column the read step touches. Peak RSS is
the child's high-water mark.

    .venv/bin/python bench/dream.py [--sizes 100 1000 10000] [--json bench/results/dream.json]

Targets (issue 4): 100 sessions ≤ 3 s; 10,000 sessions ≤ 60 s with peak RSS ≤ 2 GB; cost linear
in events.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(n: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"bench-dream-{n}-"))
    os.environ["DREAMS_HOME"] = str(home)
    os.environ["DREAMS_MAX_SESSIONS_PER_DREAM"] = str(max(n, 100))
    import duckdb

    from dreaming.catalog import Catalog
    from dreaming.dreams import DreamService, Selection
    from dreaming.models import Memory
    from dreaming.scenarios import generate_bench_lake
    from dreaming.settings import get_settings

    t = time.perf_counter()
    import dreaming.curators.rules  # noqa: F401 - a worker imports once; reported apart from the steps
    import dreaming.signals  # noqa: F401

    import_s = time.perf_counter() - t
    settings = get_settings()
    lake = generate_bench_lake(settings, n, seed=0)
    topics = ["deploys", "the billing API", "migrations", "code review", "the VPN", "flaky tests", "retries"]
    memories = []
    for i in range(max(n // 10, 5)):
        topic = topics[i % len(topics)]
        text = f"Note {i // 2 if i % 4 == 0 else i}: when working on {topic}, check the runbook section {i % 13}."
        memories.append(Memory(path=f"/notes/n{i:05d}.md", content=text, kind="note"))
    svc = DreamService(Catalog(settings))
    store = svc.stores.create("bench", scope=lake.scope, memories=memories)

    # baseline: a bare scan of the same files, every column the read step uses
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(
        "SELECT count(*), sum(length(text)), count(DISTINCT session_id), sum(length(tool_input)), "
        "count(*) FILTER (WHERE is_error) FROM read_parquet(?, hive_partitioning=true)",
        [str(settings.transcripts_dir / "tenant=*" / "day=*" / "*.parquet")],
    ).fetchall()
    bare = time.perf_counter() - t
    con.close()

    t0 = time.perf_counter()
    d = svc.create(store["id"], Selection(all_new=True))
    inputs = svc.read(d.id)
    t1 = time.perf_counter()
    result = svc.curate(inputs)
    t2 = time.perf_counter()
    d = svc.output(inputs, result)
    t3 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "sessions": len(d.session_ids), "events": lake.events, "memories": len(memories),
        "changes": sum(v for k, v in d.counts.items() if k != "keep"),
        "read_s": t1 - t0, "curate_s": t2 - t1, "output_s": t3 - t2, "total_s": t3 - t0,
        "bare_scan_s": bare, "import_s": import_s, "read_vs_bare": (t1 - t0) / bare if bare else None, "peak_rss_mb": rss_mb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                             check=False)
        if out.returncode:
            sys.exit(f"size {n} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print("| sessions | events | memories | changes | read s | curate s | output s | total s | bare scan s "
          "| read / bare | peak RSS MB | µs per event | cold import s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sessions']:,} | {r['events']:,} | {r['memories']:,} | {r['changes']} | {r['read_s']:.2f} "
              f"| {r['curate_s']:.2f} | {r['output_s']:.2f} | {r['total_s']:.2f} | {r['bare_scan_s']:.3f} "
              f"| {r['read_vs_bare']:.1f}× | {r['peak_rss_mb']:.0f} | {r['total_s'] / r['events'] * 1e6:.0f} | {r['import_s']:.1f} |")
    last = rows[-1]
    growth = (last["total_s"] / base["total_s"]) / (last["events"] / base["events"])
    print(f"\ncost growth vs event growth from {base['sessions']:,} to {last['sessions']:,} sessions: "
          f"{growth:.2f} (1.0 = linear; below 1 means fixed costs dominate the small lake)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
