"""The reliability suite's long cases, one table of counts (the README's reliability table).

    .venv/bin/python bench/chaos.py [--quick] [--only ingest,dream,poison,tenancy]

Each part is a module beside this one with ``run(quick) -> dict[str, int]``:

- ``chaos_ingest``: kill -9 during ingest at many points, then fsck; ≥ 1,000 fuzzed inputs over
  every adapter (exit 2 naming file and line, no traceback, no silent drop);
- ``chaos_dream``: kill -9 during run / approve at ≥ 20 points, then reap and rerun (head old or
  complete, no session lost, no dream stuck);
- ``chaos_poison``: ≥ 60 injection variants over user, tool, page and error channels, and ≥ 10
  secret kinds, through real dreams in automatic mode (none in the promoted head or any output);
- ``chaos_tenancy``: two tenants reusing session and event ids, every selection path (no
  cross-tenant event read or written).

Counts, not timings; the fast subset of each runs in the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTS = ("ingest", "dream", "poison", "tenancy")


def main() -> int:
    ap = argparse.ArgumentParser(description="reliability counts (kill -9, fuzzing, poisoning, tenancy)")
    ap.add_argument("--quick", action="store_true", help="the short version of each part")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    args = ap.parse_args()
    rows = []
    for part in [p.strip() for p in args.only.split(",") if p.strip()]:
        if part not in PARTS:
            ap.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
        mod = importlib.import_module(f"chaos_{part}")
        t0 = time.perf_counter()
        counts = mod.run(quick=args.quick)
        rows.append((part, counts, time.perf_counter() - t0))
    print("| part | check | count |\n|---|---|---:|")
    for part, counts, secs in rows:
        for k, v in counts.items():
            print(f"| {part} | {k} | {v} |")
        print(f"| {part} | seconds | {secs:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
