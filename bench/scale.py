"""Benchmark: a dream's read cost follows its sessions, not the lake (issue 15, first part).

For each lake size (default 30k, 300k and 3M events; ``--big`` adds 10M) a child process builds a
fresh lake with `dreaming.scenarios.generate_bench_lake` (two tenants, one file per tenant and day,
~30 events per session) and times, in the same process and on the same files:

- **bare query**: a fresh DuckDB connection reading the events of the 100 selected sessions straight
  from the Parquet files of their tenant and day(s) (the baseline the targets are ratios of);
- **lake read**: what a dream reads through the lake: ``Lake(settings).scoped(ids, tenant)`` and every
  event of it (catalog look-ups, the session index, the dedupe window) — and **dream read**: the whole
  ``DreamService.read`` (the same, plus the store's base version and the signals SQL);
- **old read**: the same events through the whole-lake ``events`` view (``Lake.con``, what every read
  paid before the session index) and the old ``extract_signals(lake.con, ...)``;
- **fleet** (``--fleet 10 50 100``): N stores dreamt one after another, each over 100 sessions of its own
  (acme's sessions, oldest first, 100 per store), timing ``DreamService.read`` (what the fleet's read share
  is): the total read time should grow with N (the selected sessions), and the read per store stay flat
  as N and the lake grow — not N × the whole-lake read it was before the index;
- **sessions --since 1d**: ``Lake.sessions(tenant=acme, since=<last day>)`` against a bare DuckDB count of
  the sessions in acme's files of that day (``count(DISTINCT session_id)``: a plain ``count(*)`` reads only
  the Parquet footers), and the same selection through the whole-lake view.

The 100 sessions are acme's first 100 of the lake's last day (a nightly dream's window). Times are the
best of ``--repeat`` runs (``sessions --since 1d`` and its bare count: of at least 25, in turns; the old
whole-lake paths run once at the largest sizes). The lake is built by one child process and read by another, so **peak RSS** is the reading process's high-water mark after
the new paths (the selection, the lake read, the dream read), taken before the old whole-lake paths run:
what a worker needs to dream, not what the generator needed.

    .venv/bin/python bench/scale.py [--sizes 30000 300000 3000000] [--big] [--no-old] [--json FILE]

Targets: lake read ≤ 3× the bare query at every size, and flat: read at the largest size ≤ 1.3× read at
300k; ``sessions --since 1d`` ≤ 3× the bare count; peak RSS ≤ 1 GB at 10M.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVENTS_PER_SESSION = 30.9  # generate_bench_lake's mean (20-40 steps and the outcome)


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, out


def _best_pair(a, b, repeat: int) -> tuple[float, float]:
    """The best times of ``a`` and ``b`` over ``repeat`` rounds of one call each, in turns."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((a, b)):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best[0], best[1]


def child(events: int, repeat: int, old: bool, fleet: list[int] | None = None) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"bench-scale-{events}-"))
    try:
        gen = subprocess.run([sys.executable, __file__, "--generate", str(events), "--home", str(home)],
                             capture_output=True, text=True, check=False)
        if gen.returncode:
            raise RuntimeError(f"building the {events:,}-event lake failed:\n{gen.stderr[-3000:]}")
        os.environ["DREAMS_HOME"] = str(home)
        return {**json.loads(gen.stdout.strip().splitlines()[-1]), **_child(home, repeat, old, fleet or [])}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def generate(events: int, home: Path) -> dict:
    """Build the lake (a process of its own: the generator's memory is not the reader's)."""
    os.environ["DREAMS_HOME"] = str(home)
    from dreaming.scenarios import generate_bench_lake
    from dreaming.settings import get_settings

    settings = get_settings()
    t = time.perf_counter()
    bl = generate_bench_lake(settings, max(100, round(events / EVENTS_PER_SESSION)), seed=0)
    days = sorted({p.parent.name[4:] for p in bl.paths})
    return {"events": bl.events, "sessions": bl.sessions, "files": len(bl.paths), "gen_s": time.perf_counter() - t,
            "last_day": days[-1]}


def _child(home: Path, repeat: int, old: bool, fleet: list[int]) -> dict:
    import duckdb

    import dreaming.curators.rules  # noqa: F401 - imported once, as a worker does
    from dreaming.catalog import Catalog
    from dreaming.dreams import DreamService, Selection
    from dreaming.lake import Lake, query_sessions
    from dreaming.policy import Policy
    from dreaming.settings import get_settings
    from dreaming.signals import extract_signals

    settings = get_settings()
    built = json.loads((home / "_bench.json").read_text())
    last_day = built["last_day"]
    last = datetime.fromisoformat(last_day).replace(tzinfo=UTC)

    # the selection: acme's first 100 sessions of the last day, through the index (also the second target)
    rows = Lake(settings).sessions(tenant="acme", since=last)
    ids = [r["session_id"] for r in rows[:100]]
    sel_days = sorted({r["day"].isoformat() for r in rows[:100]}
                      | {r["ended_at"].date().isoformat() for r in rows[:100]})
    day_files = [str(settings.transcripts_dir / "tenant=acme" / f"day={d}" / "*.parquet") for d in sel_days]
    con = duckdb.connect()

    def bare_query():
        return con.execute("SELECT * FROM read_parquet(?, hive_partitioning=true) WHERE list_contains(?, session_id)",
                           [day_files, ids]).to_arrow_table()

    def bare_count():
        return con.execute("SELECT count(DISTINCT session_id) FROM read_parquet(?)",
                           [str(settings.transcripts_dir / "tenant=acme" / f"day={last_day}" / "*.parquet")]).fetchall()

    bare_s, bare = _best(bare_query, repeat)
    # both are milliseconds: the best of many runs, taken in turns, so a noisy moment hits both alike
    sessions_s, count_s = _best_pair(lambda: Lake(settings).sessions(tenant="acme", since=last), bare_count,
                                     max(repeat, 25))

    def lake_read():
        with Lake(settings) as lk, lk.scoped(ids, tenant="acme") as sc:
            return sc.con.execute("SELECT * FROM events").to_arrow_table()

    read_s, got = _best(lake_read, repeat)
    assert got.num_rows == bare.num_rows, (got.num_rows, bare.num_rows)

    svc = DreamService(Catalog(settings))
    store = svc.stores.create("bench", scope="acme")

    def dream_read():
        d = svc.create(store["id"], Selection(session_ids=ids))
        return svc.read(d.id)

    dream_s, inputs = _best(dream_read, repeat)
    out = {"selected": len(ids), "selected_events": bare.num_rows, "bare_query_s": bare_s, "lake_read_s": read_s,
           "dream_read_s": dream_s, "sessions_since_s": sessions_s, "since_sessions": len(rows),
           "bare_count_s": count_s, "signals_errors": len(inputs.signals.errors),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # before the old paths
    if fleet:
        out["fleet"] = _fleet(svc, settings, fleet)
    if old:  # what the same reads cost before the session index: the whole-lake views
        n_old = 1 if built["events"] > 1_000_000 else repeat

        def old_read():
            with Lake(settings) as lk:
                return lk.con.execute("SELECT * FROM events WHERE tenant = 'acme' AND list_contains(?, session_id)",
                                      [ids]).to_arrow_table()

        def old_dream_read():
            with Lake(settings) as lk:
                query_sessions(lk.con, tenant="acme", session_ids=ids)
                return extract_signals(lk.con, ids, Policy(), tenant="acme")

        def old_sessions():
            with Lake(settings) as lk:
                return query_sessions(lk.con, tenant="acme", since=last)

        out["old_read_s"], old_rows = _best(old_read, n_old)
        assert old_rows.num_rows == bare.num_rows
        out["old_dream_read_s"], old_signals = _best(old_dream_read, n_old)
        assert old_signals.errors == inputs.signals.errors  # the same signals either way
        out["old_sessions_s"], old_sess = _best(old_sessions, n_old)
        assert old_sess == rows
        out["old_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _fleet(svc, settings, sizes: list[int]) -> list[dict]:
    """N stores × 100 sessions each, read one after another: total and per-store read time per N."""
    from dreaming.dreams import Selection
    from dreaming.lake import Lake

    pool = [r["session_id"] for r in Lake(settings).sessions(tenant="acme")]
    out = []
    for n in sizes:
        if n * 100 > len(pool):
            out.append({"stores": n, "skipped": f"the lake holds {len(pool)} acme sessions, {n * 100} needed"})
            continue
        t = time.perf_counter()
        for i in range(n):
            store = svc.stores.create(f"fleet-{n}-{i}", scope="acme")
            d = svc.create(store["id"], Selection(session_ids=pool[i * 100:(i + 1) * 100]))
            svc.read(d.id)
        total = time.perf_counter() - t
        out.append({"stores": n, "sessions": n * 100, "read_s": total, "per_store_s": total / n})
    return out


def _fmt(v, spec=".3f") -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[30_000, 300_000, 3_000_000], help="lake events")
    ap.add_argument("--big", action="store_true", help="also 10M events (~15 GB RAM and several minutes to build)")
    ap.add_argument("--no-old", action="store_true", help="skip the whole-lake (pre-index) baseline")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--fleet", type=int, nargs="*", default=[], help="also read fleets of N stores × 100 sessions")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        info = generate(args.generate, args.home)
        (args.home / "_bench.json").write_text(json.dumps(info))
        print(json.dumps(info))
        return
    if args.child:
        print(json.dumps(child(args.child, args.repeat, not args.no_old, args.fleet)))
        return
    sizes = args.sizes + ([10_000_000] if args.big and 10_000_000 not in args.sizes else [])
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--repeat", str(args.repeat)] + (["--no-old"] * args.no_old)
        cmd += ["--fleet", *map(str, args.fleet)] if args.fleet else []
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode:
            sys.exit(f"size {n} failed:\n{res.stderr[-3000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"# {n:,} events done", file=sys.stderr, flush=True)
    print("| lake events | files | build s | bare query s | lake read s | read / bare | dream read s "
          "| old read s | old dream read s | sessions --since 1d s | bare count s | sessions / count "
          "| old sessions s | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['events']:,} | {r['files']} | {r['gen_s']:.1f} | {r['bare_query_s']:.3f} | {r['lake_read_s']:.3f} "
              f"| {r['lake_read_s'] / r['bare_query_s']:.1f}× | {r['dream_read_s']:.3f} | {_fmt(r.get('old_read_s'))} "
              f"| {_fmt(r.get('old_dream_read_s'))} | {r['sessions_since_s']:.3f} | {r['bare_count_s']:.3f} "
              f"| {r['sessions_since_s'] / r['bare_count_s']:.1f}× | {_fmt(r.get('old_sessions_s'))} "
              f"| {r['peak_rss_mb']:.0f} |")
    print(f"\n{rows[0]['selected']} sessions ({rows[-1]['selected_events']:,} events at the largest size); "
          f"sessions --since 1d selects {rows[-1]['since_sessions']:,} sessions at the largest size")
    ok = all(r["lake_read_s"] <= 3 * r["bare_query_s"] for r in rows)
    print(f"lake read ≤ 3× bare query at every size: {'✔' if ok else '✘'}")
    ref = next((r for r in rows if r["events"] >= 250_000), None)
    if ref is not None and rows[-1] is not ref:
        for key, name in (("lake_read_s", "lake read"), ("dream_read_s", "dream read")):
            f = rows[-1][key] / ref[key]
            print(f"{name} flat: {rows[-1]['events']:,} events / {ref['events']:,} = {f:.2f}× (≤ 1.3×) "
                  f"{'✔' if f <= 1.3 else '✘'}")
    ok = all(r["sessions_since_s"] <= 3 * r["bare_count_s"] for r in rows)
    print(f"sessions --since 1d ≤ 3× bare count at every size: {'✔' if ok else '✘'}")
    if args.fleet:
        print("\n| lake events | stores × 100 sessions | read s (total) | read s per store |")
        print("|---:|---:|---:|---:|")
        for r in rows:
            for f in r.get("fleet") or []:
                if "skipped" in f:
                    print(f"| {r['events']:,} | {f['stores']} | skipped: {f['skipped']} | |")
                else:
                    print(f"| {r['events']:,} | {f['stores']} | {f['read_s']:.2f} | {f['per_store_s']:.3f} |")
    big = rows[-1]
    if big["events"] >= 9_000_000:
        print(f"peak RSS of the reading process at {big['events']:,} events: {big['peak_rss_mb']:.0f} MB (≤ 1,024) "
              f"{'✔' if big['peak_rss_mb'] <= 1024 else '✘'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
