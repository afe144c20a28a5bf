"""Benchmark: `dreams lake compact` of a day made of many small ingests (issue 15).

One tenant/day partition is written as ``--files`` small snapshot files (default 1,000), each holding a
few whole sessions, as many small ingests leave it: the sessions of a ``generate_bench_lake`` day, cut
into consecutive slices, each registered as its own snapshot. Then, in the same process and on the same
data:

- **before**: a dream's read of 100 sessions spread over the day (``Lake(settings).scoped(ids, tenant)``
  and every event of it), best of ``--repeat``;
- **compact**: ``dreaming.lake_compact.compact`` (time, files before and after);
- **after**: the same read again; and a check that the whole-lake ``events`` view holds the same number
  of events and the same event ids as before.

    .venv/bin/python bench/compact.py [--files 1000] [--sessions 1000] [--repeat 3] [--json FILE]

Targets: one file after, the same events (count and ids), and the read after ≥ 2× faster than before.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _best(fn, repeat: int):
    best, out = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return best, out


def run(n_files: int, n_sessions: int, repeat: int) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    scratch = Path(tempfile.mkdtemp(prefix="bench-compact-src-"))
    home = Path(tempfile.mkdtemp(prefix="bench-compact-"))
    try:
        from dreaming.settings import Settings

        src = Settings(home=scratch)
        from dreaming.scenarios.bench import generate_bench_lake

        lake = generate_bench_lake(src, n_sessions, seed=0, other_tenant_share=0.0)
        # the partition (tenant, day) with most rows: the day we cut into small ingests
        path = max(lake.paths, key=lambda p: pq.ParquetFile(p).metadata.num_rows)
        table = pq.read_table(path)
        table = table.sort_by([("session_id", "ascending"), ("seq", "ascending")])
        sessions = sorted(set(table["session_id"].to_pylist()))
        rel_dir = path.parent.relative_to(scratch)
        tenant = rel_dir.parts[-2].split("=", 1)[1]

        os.environ["DREAMS_HOME"] = str(home)
        dst = Settings(home=home)
        from dreaming.catalog import Catalog
        from dreaming.lake import Lake
        from dreaming.lake_compact import compact

        catalog = Catalog(dst)
        out_dir = home / rel_dir
        out_dir.mkdir(parents=True)
        per = max(1, -(-len(sessions) // n_files))
        written = 0
        for i in range(0, len(sessions), per):
            part = table.filter(pc.is_in(table["session_id"], value_set=pa.array(sessions[i:i + per])))
            snap = f"snp_bench{written:05d}"
            part = part.set_column(part.schema.get_field_index("snapshot_id"), "snapshot_id",
                                   pa.array([snap] * part.num_rows))
            p = out_dir / f"{snap}.parquet"
            pq.write_table(part, p)
            catalog.register_written(snap, [p], rows=part.num_rows)
            written += 1

        step = max(1, len(sessions) // 100)
        chosen = sessions[::step][:100]

        def read():
            with Lake(dst) as lk, lk.scoped(chosen, tenant=tenant) as sc:
                return sc.con.sql("SELECT * FROM events").to_arrow_table().num_rows

        def ids():
            with Lake(dst) as lk:
                return lk.con.execute("SELECT count(*), sum(hash(event_id)) FROM events").fetchone()

        before_ids = ids()
        t_before, rows_before = _best(read, repeat)
        files_before = len(list(out_dir.glob("*.parquet")))
        t0 = time.perf_counter()
        report = compact(dst)
        t_compact = time.perf_counter() - t0
        files_after = len(list(out_dir.glob("*.parquet")))
        t_after, rows_after = _best(read, repeat)
        after_ids = ids()
        return {
            "files_before": files_before, "files_after": files_after, "sessions": len(sessions),
            "events": table.num_rows, "read_sessions": len(chosen), "read_rows": rows_before,
            "same_read_rows": rows_before == rows_after, "same_events": before_ids == after_ids,
            "compact_s": round(t_compact, 3), "read_before_s": round(t_before, 4),
            "read_after_s": round(t_after, 4), "speedup": round(t_before / t_after, 2),
            "compacted": len(report.compacted),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    r = run(a.files, a.sessions, a.repeat)
    ok = r["files_after"] == 1 and r["same_events"] and r["same_read_rows"] and r["speedup"] >= 2
    print(f"day of {r['events']:,} events in {r['sessions']:,} sessions, {r['files_before']:,} files "
          f"-> {r['files_after']} file(s) in {r['compact_s']} s; same events: {r['same_events']}")
    print(f"read of {r['read_sessions']} sessions ({r['read_rows']:,} events): before {r['read_before_s']} s, "
          f"after {r['read_after_s']} s -> {r['speedup']}x faster  {'✔' if ok else '✘'} (target: one file, "
          f"same events, ≥ 2x)")
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
