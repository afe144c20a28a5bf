"""Benchmark: start-up time of the `dreams` CLI against a bare `python -c "import duckdb, pyarrow"`.

Each command runs as a fresh process on a scratch lake (DREAMS_HOME in a temp folder: one store of a
generated 20-session lake), the way a user types it. The baseline is the bare import of the two
libraries every data command needs, measured in the same run and interleaved with the commands
(repetition i runs every command once, in an order rotated by i) so that a busy machine slows both
alike. The figure is the median of ``--repeat`` runs; the ratio is median / median baseline.

Every process reads its modules' bytecode from a cache of this run (``PYTHONPYCACHEPREFIX``, a temp
folder; the warm-up writes it), as an installed package has it (pip compiles on install), whatever
``PYTHONDONTWRITEBYTECODE`` says here and without writing into the tree. ``--no-bytecode-cache``
writes none and reads only the .pyc files there are (the interpreter's standard library has its own):
in an environment with ``PYTHONDONTWRITEBYTECODE=1`` and no .pyc in the virtual environment, every
other module is compiled from source in every run. That costs the CLI, which is mostly pure-Python
modules (typer, pydantic, rich), far more than the baseline, which is mostly compiled extensions.

    .venv/bin/python bench/cli.py [--repeat 9] [--no-bytecode-cache] [--json bench/results/cli.json]

Target (issue 14): `dreams --help`, `--version` and the read-only commands within 1.5x the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
DREAMS = str(Path(PY).with_name("dreams"))
TARGET = 1.5

BASELINE = ("bare `import duckdb, pyarrow`", [PY, "-c", "import duckdb, pyarrow"])
COMMANDS = [
    ("dreams --help", ["--help"]),
    ("dreams --version", ["--version"]),
    ("dreams store list", ["store", "list"]),
    ("dreams store list --json", ["store", "list", "--json"]),
    ("dreams list", ["list"]),
    ("dreams sessions", ["sessions"]),
    ("dreams store show bench", ["store", "show", "bench"]),
]


def scratch_lake() -> Path:
    """A lake with 20 generated sessions and one store, in a temp folder (built in a child process so
    that this one stays free of the imports it measures)."""
    home = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    code = ("from dreaming.catalog import Catalog\nfrom dreaming.scenarios import generate_bench_lake\n"
            "from dreaming.settings import get_settings\nfrom dreaming.stores import StoreService\n"
            "s = get_settings()\nlake = generate_bench_lake(s, 20, seed=0)\n"
            "StoreService(Catalog(s)).create('bench', scope=lake.scope)\n")
    subprocess.run([PY, "-c", code], check=True, cwd=ROOT, env={**os.environ, "DREAMS_HOME": str(home)})
    return home


def time_once(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return took


def measure(repeat: int, env: dict) -> dict[str, list[float]]:
    runs = [BASELINE, *((label, [DREAMS, *args]) for label, args in COMMANDS)]
    times: dict[str, list[float]] = {label: [] for label, _ in runs}
    for label, argv in runs:  # warm-up: the OS file cache, .pyc files
        time_once(argv, env)
    for i in range(repeat):
        k = i % len(runs)
        for label, argv in runs[k:] + runs[:k]:
            times[label].append(time_once(argv, env))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="write no .pyc and read only those there are (baseline included)")
    args = ap.parse_args()
    home = scratch_lake()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env.update(DREAMS_HOME=str(home), COLUMNS="80")
    if args.no_bytecode_cache:  # write none, read what there is (the interpreter's standard library has its own)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:  # an empty cache of this run's own, written by the warm-up
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="bench-cli-pyc-")
    times = measure(args.repeat, env)
    base = statistics.median(times[BASELINE[0]])
    rows = []
    for label, ts in times.items():
        med = statistics.median(ts)
        rows.append({"command": label, "median_s": round(med, 3), "min_s": round(min(ts), 3),
                     "ratio": round(med / base, 2), "ok": label == BASELINE[0] or med / base <= TARGET})
    cache = "no bytecode cache written" if args.no_bytecode_cache else "bytecode cached"
    print(f"`dreams` start-up, median of {args.repeat} runs each (interleaved), {cache}, scratch lake {home}\n")
    print("| command | median s | min s | ratio to baseline | target ≤ 1.5× |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        mark = "baseline" if r["command"] == BASELINE[0] else ("✔" if r["ok"] else "✘")
        print(f"| {r['command']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['ratio']:.2f}× | {mark} |")
    met = [r["command"] for r in rows[1:] if r["ok"]]
    missed = [r["command"] for r in rows[1:] if not r["ok"]]
    print(f"\n1.5× target holds for {len(met)} of {len(rows) - 1} commands"
          + (f"; not for: {', '.join(missed)}" if missed else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"repeat": args.repeat, "bytecode_cache": not args.no_bytecode_cache,
                                         "baseline_s": base, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
