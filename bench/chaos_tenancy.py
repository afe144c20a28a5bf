"""Chaos: tenants that reuse each other's session and event ids, through every selection path.

For each trial, two tenants ingest Anthropic session-event files (real ingest) whose session ids
and event ids collide; each tenant's text carries a marker word of its own. A dream of the first
tenant's store then runs read → curate → output → promote for each way a dream picks sessions
(explicit ids, a window, all new, one backfill day), and everything it read or wrote is searched
for the other tenant's marker: signals, changes, the candidate version.

    .venv/bin/python bench/chaos_tenancy.py [--trials N]

Counts, not timings: the target is 0 cross-tenant events read and 0 in any output.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY = "2026-11-02"


def _events(tenant: str, marker: str, sid: str, k: int, rng: random.Random, reuse_event_ids: bool) -> list[dict]:
    ts = f"{DAY}T{9 + k % 12:02d}:{k // 12:02d}:{{:02d}}Z"
    base = f"sevt_{k:03d}" if reuse_event_ids else f"sevt_{tenant}_{k:03d}"
    pref = rng.choice(["Always use {m}-tool, never the old one.", "Never run {m}-deploy on Fridays.",
                       "Please use {m}-lint instead of flake8."]).format(m=marker)
    return [
        {"id": f"{base}_1", "session_id": sid, "type": "user.message", "processed_at": ts.format(1),
         "content": [{"type": "text", "text": pref}]},
        {"id": f"{base}_2", "session_id": sid, "type": "agent.tool_use", "processed_at": ts.format(2),
         "name": "bash", "input": {"command": f"{marker}-cli sync --all"}},
        {"id": f"{base}_3", "session_id": sid, "type": "agent.tool_result", "processed_at": ts.format(3),
         "tool_use_id": f"{base}_2", "is_error": True,
         "content": [{"type": "text", "text": f"Error: {marker}-cli: connection to {marker}-db refused"}]},
        {"id": f"{base}_4", "session_id": sid, "type": "agent.tool_use", "processed_at": ts.format(4),
         "name": "bash", "input": {"command": f"{marker}-cli sync --all --retry"}},
        {"id": f"{base}_5", "session_id": sid, "type": "agent.tool_result", "processed_at": ts.format(5),
         "tool_use_id": f"{base}_4", "content": [{"type": "text", "text": "synced"}]},
    ]


def trial(root: Path, rng: random.Random) -> dict[str, int]:
    os.environ["DREAMS_HOME"] = str(root / "lake")
    from dreaming.catalog import Catalog
    from dreaming.dreams import DreamService, Selection
    from dreaming.errors import DreamFailure
    from dreaming.ingest import ingest_files
    from dreaming.promotion import promote
    from dreaming.settings import get_settings
    from dreaming.stores import StoreService

    settings = get_settings()
    cat = Catalog(settings)
    n = rng.randint(2, 6)
    shared = [f"sesn_{rng.randrange(10**6):06d}" for _ in range(n)]
    reuse = rng.random() < 0.5
    # the other tenant's name sorts before or after this one's (both orders broke the old lookups)
    other = rng.choice(["aardvark", "beta"])
    tenants = {"alpha": "zebraword", other: "quokkaword"}
    for tenant, marker in tenants.items():
        folder = root / "src" / tenant
        folder.mkdir(parents=True)
        for k, sid in enumerate(shared):
            lines = _events(tenant, marker, sid, k, rng, reuse)
            (folder / f"{sid}.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
        ingest_files(sorted(folder.glob("*.jsonl")), cat, tenant=tenant, agent="bot")
    StoreService(cat).create("alpha-memory", scope="alpha")
    paths = {
        "session": Selection(session_ids=shared),
        "since": Selection(since=datetime(2026, 11, 1, tzinfo=UTC)),
        "all": Selection(all_new=True),
        "day": Selection.for_day(DAY),
    }
    out = {"dreams": 0, "sessions_read": 0, "dreams_failed": 0, "cross_tenant_events_read": 0,
           "cross_tenant_in_outputs": 0}
    svc = DreamService(cat)
    foreign = tenants[other]
    for _how, sel in paths.items():
        d = svc.create("alpha-memory", sel, output_behavior="update_existing")
        out["dreams"] += 1
        try:
            inputs = svc.read(d.id)
        except DreamFailure:  # e.g. another tenant's session taken for this one's (a colliding id)
            out["dreams_failed"] += 1
            continue
        sig = inputs.signals
        read_texts = [e.get("text") or "" for e in sig.errors] + [p.get("text") or "" for p in sig.preferences]
        read_texts += [e.get("failed_command") or "" for e in sig.errors]
        out["cross_tenant_events_read"] += sum(foreign in t for t in read_texts)
        out["cross_tenant_events_read"] += sum(s.get("tenant") != "alpha" for s in sig.sessions)
        result = svc.curate(inputs)
        d = svc.output(inputs, result)
        promote(cat, d.id, "chaos")
        written = " ".join(m.content + m.path for m in svc.stores.read_version(d.store_id, d.candidate_version))
        written += " ".join((c.after or "") + c.reason for c in svc.changes(d.id))
        out["cross_tenant_in_outputs"] += foreign in written
        out["sessions_read"] += len(inputs.sessions)
    cat.engine.dispose()
    return out


def run(quick: bool = False, trials: int | None = None, seed: int = 0) -> dict[str, int]:
    """Run ``trials`` randomised trials (3 when quick, else 10) and sum their counts."""
    trials = trials or (3 if quick else 10)
    rng = random.Random(seed)
    total: dict[str, int] = {"trials": 0}
    old = os.environ.get("DREAMS_HOME")
    try:
        for _ in range(trials):
            with tempfile.TemporaryDirectory(prefix="chaos-tenancy-") as tmp:
                for k, v in trial(Path(tmp), rng).items():
                    total[k] = total.get(k, 0) + v
            total["trials"] += 1
    finally:
        if old is None:
            os.environ.pop("DREAMS_HOME", None)
        else:
            os.environ["DREAMS_HOME"] = old
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counts = run(trials=args.trials, seed=args.seed)
    print("| check | count | target |\n|---|---:|---|")
    for k, v in counts.items():
        target = "0" if k.startswith("cross_tenant") or k == "dreams_failed" else ""
        print(f"| {k} | {v} | {target} |")


if __name__ == "__main__":
    main()
