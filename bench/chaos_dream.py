"""Chaos: kill -9 `dreams run` / `dreams approve` / `dreams reject` at many points, then reap, rerun and
check that nothing was lost or left half-done.

    .venv/bin/python bench/chaos_dream.py            # 21 trials (named crash points + random delays)
    .venv/bin/python bench/chaos_dream.py --quick    # 2 trials (the subset tests/test_chaos.py runs)

Each trial copies a small prepared lake (the demo scenario: sessions ingested, a store created) into
its own DREAMS_HOME, kills a real `dreams` subprocess with SIGKILL — either at a named crash point
(``DREAMS_TEST_CRASH_AT``, dreaming/chaos.py: the process kills itself there) or after a random
delay — waits for the dream's lease to expire, runs `dreams reap`, reruns what was killed until a
dream is promoted (or rejected), and counts:

- ``heads_on_partial_version``: a store head on a version that is not ready, whose file is missing,
  or whose file's sha256 or row count differs from the catalog (target 0)
- ``sessions_lost``: sessions marked dreamt over without a promoted dream that read them (target 0)
- ``stuck_after_reap``: dreams still pending/running after `dreams reap` (target 0)
- ``integrity_errors``: SQLite integrity_check failures, dreams pointing at missing versions (target 0)
- ``not_finished``: trials whose rerun did not end promoted (or rejected, for reject trials) (target 0)

All `dreams` processes of a run share one Prefect server (started here unless PREFECT_API_URL is
set), so a killed run stays RUNNING in it — the case leases exist for.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DREAMS = str(Path(sys.executable).with_name("dreams"))
LEASE_S = 1.5
COUNTS = ("trials", "killed", "heads_on_partial_version", "sessions_lost", "stuck_after_reap", "integrity_errors",
          "not_finished")
TARGETS = COUNTS[2:]  # each should be 0; ``killed``: trials whose process really died by SIGKILL


@dataclass
class Trial:
    name: str
    command: str  # run | approve | reject
    point: str | None = None  # a DREAMS_TEST_CRASH_AT point, else a random delay
    delay: float | None = None
    behavior: str = "update_existing"


def trials(quick: bool, seed: int = 7) -> list[Trial]:
    if quick:
        return [Trial("run@output.changeset_written", "run", "output.changeset_written"),
                Trial("approve@promote.in_commit", "approve", "promote.in_commit")]
    rng = random.Random(seed)
    out = [Trial(f"run@{p}", "run", p) for p in ("create.after_insert", "read.running", "curate.done",
                                                 "output.version_written", "output.changeset_written",
                                                 "output.completed")]
    out += [Trial(f"approve@{p}", "approve", p) for p in ("promote.before_commit", "promote.in_commit")]
    out += [Trial(f"fork-approve@{p}", "approve", p, behavior="create_new")
            for p in ("promote.fork_file_written", "promote.in_commit")]
    out.append(Trial("reject@reject.before_commit", "reject", "reject.before_commit"))
    # spread over a `dreams run` (imports, flow, curate, gate: ~10-25 s here) and a `dreams approve` (~3-10 s)
    out += [Trial(f"run@{d:.1f}s", "run", delay=d) for d in sorted(rng.uniform(2.0, 20.0) for _ in range(6))]
    out += [Trial(f"approve@{d:.1f}s", "approve", delay=d) for d in sorted(rng.uniform(1.5, 9.0) for _ in range(4))]
    return out


# --- processes ----------------------------------------------------------------------------------


def _env(home: Path, crash_at: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREAMS_")}
    env.update(DREAMS_HOME=str(home), DREAMS_DREAM_LEASE_S=str(LEASE_S), PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if crash_at:
        env["DREAMS_TEST_CRASH_AT"] = crash_at
    return env


def dreams(home: Path, *args: str, crash_at: str | None = None, kill_after: float | None = None) -> int:
    """Run `dreams ARGS` in ``home``; killed with SIGKILL at ``crash_at`` or after ``kill_after`` s."""
    p = subprocess.Popen([DREAMS, *args], env=_env(home, crash_at), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=kill_after if kill_after is not None else 300)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return -9
    if p.returncode not in (0, 1, -9):
        raise RuntimeError(f"dreams {' '.join(args)} exited {p.returncode}: {err[-2000:]}")
    return p.returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect(tmp: Path) -> subprocess.Popen | None:
    """One Prefect server for every `dreams` process of the run (PREFECT_API_URL wins if set)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    import httpx

    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                os.environ["PREFECT_API_URL"] = url
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the Prefect server did not start within 120 s")


# --- the lake -----------------------------------------------------------------------------------


def prepare_template(home: Path) -> None:
    """A small demo lake: sessions ingested and a store `chaos` created from the scenario's files."""
    from dreaming.catalog import Catalog
    from dreaming.scenarios import generate_scenario
    from dreaming.settings import use_lake
    from dreaming.stores import StoreService

    with use_lake(home):
        scenario = generate_scenario(home / "sources", seed=0)
        cat = Catalog()
        scenario.ingest(cat)
        StoreService(cat).create_from_dir("chaos", scenario.store_dir, scope=scenario.scope)


def newest_dream(home: Path):
    from dreaming.catalog import Catalog
    from dreaming.settings import get_settings

    cat = Catalog(get_settings(home=home))
    ds = cat.list_dreams(store_id=cat.get_store("chaos")["id"], include_archived=True, limit=1)
    return ds[0] if ds else None


def check(home: Path) -> dict[str, int]:
    """Count partial heads, lost sessions, open dreams and integrity errors in the lake at ``home``."""
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from dreaming import ids
    from dreaming.catalog import Catalog, dreamt_sessions, store_versions
    from dreaming.errors import NotFound
    from dreaming.settings import get_settings

    cat = Catalog(get_settings(home=home))
    out = dict.fromkeys(TARGETS[:-1], 0)
    with cat.engine.connect() as conn:
        if conn.exec_driver_sql("PRAGMA integrity_check").scalar() != "ok":
            out["integrity_errors"] += 1
        versions = {(r.store_id, r.version): r for r in conn.execute(sa.select(store_versions))}
        rows = list(conn.execute(sa.select(dreamt_sessions)))
    for s in cat.list_stores(include_archived=True):
        v = versions.get((s["id"], s["head_version"]))
        path = home / v.path if v is not None and v.path else None
        if (v is None or v.state != "ready" or path is None or not path.exists()
                or ids.sha256_file(path) != v.file_sha256 or pq.read_metadata(path).num_rows != v.memory_count):
            out["heads_on_partial_version"] += 1
    for r in rows:
        try:
            d = cat.get_dream(r.dream_id)
        except NotFound:
            out["sessions_lost"] += 1
            continue
        if d.promotion.state != "promoted" or r.session_id not in d.session_ids:
            out["sessions_lost"] += 1
    for d in cat.list_dreams(include_archived=True):
        if d.status in ("pending", "running"):
            out["stuck_after_reap"] += 1
        for sid, ver in ((d.store_id, d.candidate_version),
                         (d.promotion.target_store_id, d.promotion.promoted_version)):
            if ver is not None and (sid, ver) in versions and versions[(sid, ver)].state != "ready":
                out["integrity_errors"] += 1
            elif ver is not None and (sid, ver) not in versions:
                out["integrity_errors"] += 1
    return out


# --- one trial ----------------------------------------------------------------------------------


def run_trial(t: Trial, template: Path, work: Path) -> dict[str, int]:
    home = work / t.name.replace("@", "-").replace("/", "_")
    shutil.copytree(template, home)
    run = ["run", "--store", "chaos", "--all", "--output-behavior", t.behavior, "--require-approval"]
    kill = {"crash_at": t.point, "kill_after": t.delay}
    if t.command == "run":
        rc = dreams(home, *run, **kill)
    else:
        dreams(home, *run)
        d = newest_dream(home)
        if t.command == "approve":
            rc = dreams(home, "approve", d.id, "--by", "chaos", "--wait", "0", **kill)
        else:
            rc = dreams(home, "reject", d.id, "--by", "chaos", "--reason", "chaos", "--wait", "0", **kill)
    time.sleep(LEASE_S + 0.5)
    dreams(home, "reap", "--store", "chaos")
    counts = check(home)
    stuck = counts["stuck_after_reap"]
    # rerun what was killed until it is decided
    d = newest_dream(home)
    if t.command == "reject":
        dreams(home, "reject", d.id, "--by", "chaos", "--reason", "chaos", "--wait", "0")
        finished = newest_dream(home).promotion.state == "rejected"
    else:
        if d is None or d.status != "completed" or d.promotion.state not in ("awaiting_approval", "promoted"):
            dreams(home, *run)
            d = newest_dream(home)
        if d.promotion.state != "promoted":
            dreams(home, "approve", d.id, "--by", "chaos", "--wait", "0")
        finished = newest_dream(home).promotion.state == "promoted"
    if not finished:
        last = newest_dream(home)
        print(f"{t.name}: not finished: {last.id} {last.status} promotion {last.promotion.state} "
              f"({last.promotion.reason}) error {last.error}", file=sys.stderr, flush=True)
    after = check(home)
    after["stuck_after_reap"] = stuck
    after["not_finished"] = 0 if finished else 1
    after["killed"] = int(rc == -9)
    shutil.rmtree(home, ignore_errors=True)
    return after


def run(quick: bool = False) -> dict[str, int]:
    """Run the chaos trials; returns the summed counts (every one in TARGETS should be 0)."""
    tmp = Path(tempfile.mkdtemp(prefix="dreams-chaos-"))
    server = start_prefect(tmp)
    try:
        template = tmp / "template"
        prepare_template(template)
        totals = dict.fromkeys(COUNTS, 0)
        rows = []
        for t in trials(quick):
            c = run_trial(t, template, tmp)
            rows.append((t.name, c))
            totals["trials"] += 1
            for k in COUNTS[1:]:
                totals[k] += c[k]
            print(f"{t.name}: " + " ".join(f"{k}={c[k]}" for k in COUNTS[1:]), file=sys.stderr, flush=True)
        run.rows = rows  # for the table
        return totals
    finally:
        if server is not None:
            server.kill()
            server.wait()
            os.environ.pop("PREFECT_API_URL", None)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    quick = "--quick" in sys.argv
    t0 = time.monotonic()
    totals = run(quick=quick)
    cols = COUNTS[1:]
    print("| trial | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, c in run.rows:
        print(f"| {name} | " + " | ".join(str(c[k]) for k in cols) + " |")
    print(f"| **total ({totals['trials']} trials)** | " + " | ".join(f"**{totals[k]}**" for k in cols) + " |")
    print(f"\n{time.monotonic() - t0:.0f} s; every count but `killed` should be 0")
    if "--json" in sys.argv:
        print(json.dumps(totals))


if __name__ == "__main__":
    main()
