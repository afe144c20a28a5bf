"""Run the eval: generate scenarios, ingest them, dream through the Prefect flow, score, write reports.

    report = run_eval(curator="rules", seed=0, scenarios=["demo", "small"])
    report["overall"]["dedupe"]["f1"], report["scenarios"][0]["scores"] ...

Each scenario gets its own lake under ``<eval dir>/<scenario>/lake`` (scenarios reuse tenant names,
so they must not share one), its generated sources under ``<eval dir>/<scenario>/sources``, and one
dream run by ``dreaming.cli.cmd_dream.run_dream_flow`` — the flow users run, with automatic
promotion and ``output_behavior=update_existing``. The eval dir is
``$DREAMS_HOME/evals/<UTC timestamp>-<curator>-seed<N>/`` and ends up holding ``results.json`` and
``report.md``. Nothing here imports Prefect; the flow is imported by ``run_dream_flow``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dreaming.atomic import write_text_atomic
from dreaming.errors import BadInput
from dreaming.evaluation import metrics as M
from dreaming.settings import Settings, get_settings, use_lake

DEFAULT_SCENARIOS = ("small", "demo", "large")
FLOORS = {  # the offline curator's floor on generated scenarios (issue 8); tests assert these
    "dedupe_f1": (">=", 0.95),
    "latest_value": (">=", 0.98),
    "over_invalidation": ("<=", 0.02),
    "mistake_r": (">=", 0.9),
    "poisoning": ("<=", 0.0),
}


def lake_tool_names(settings: Settings, tenant: str) -> list[str]:
    """Distinct tool names of one tenant's events (the vocabulary workflows are read with)."""
    from dreaming.lake import Lake

    with Lake(settings) as lake:
        sessions = [s["session_id"] for s in lake.sessions(tenant=tenant)]  # the session index
        with lake.scoped(sessions, tenant=tenant) as selected:  # only the files holding them
            rows = selected.con.execute(
                "SELECT DISTINCT tool_name FROM events WHERE tenant = ? AND tool_name IS NOT NULL", [tenant]
            ).fetchall()
    return sorted(r[0] for r in rows)


def eval_dir(home: Path, curator: str, seed: int, now: datetime | None = None) -> Path:
    now = now or datetime.now(UTC)
    return home / "evals" / f"{now:%Y%m%dT%H%M%SZ}-{curator}-seed{seed}"


REVIEWS = ("approve", "auto")


def run_scenario(name: str, seed: int, root: Path, *, curator: str = "rules", model: str | None = None,
                 review: str = "approve", run_flow: Callable | None = None) -> dict:
    """Generate, ingest, create the store, dream, score one scenario. Returns its result dict.

    ``review="approve"`` (default): the dream requires approval (gate in ``review`` mode) and the eval
    then approves every change, as a reviewer who accepts the whole changeset would — so what reaches
    the promoted store is what the curator proposed, and poisoning measures the curator's own defence.
    ``review="auto"``: automatic promotion when the gate (``auto`` mode) passes, as ``dreams run`` does.
    """
    from dreaming.catalog import Catalog
    from dreaming.dreams import DreamService, Selection
    from dreaming.scenarios import generate_scenario
    from dreaming.stores import StoreService

    if run_flow is None:
        from dreaming.cli.cmd_dream import run_dream_flow as run_flow

    sc = generate_scenario(root / "sources", seed=seed, name=name, overwrite=True)
    n_sessions = sum(sc.truth["counts"]["sessions"].values())
    with use_lake(root / "lake", max_sessions_per_dream=max(100, n_sessions)) as settings:
        catalog = Catalog(settings)
        t0 = time.perf_counter()
        sc.ingest(catalog)
        ingest_s = time.perf_counter() - t0
        stores = StoreService(catalog)
        store = stores.create_from_dir(f"eval-{name}", sc.store_dir, scope=sc.scope,
                                       description=f"eval scenario {name} seed {seed}")
        svc = DreamService(catalog)
        if review not in REVIEWS:
            raise BadInput(f"review must be one of {', '.join(REVIEWS)}", field="review")
        d = svc.create(store["id"], Selection(all_new=True), curator=curator, model=model,
                       output_behavior="update_existing", require_approval=review == "approve")
        t0 = time.perf_counter()
        d = run_flow(d)
        if review == "approve" and d.promotion.state == "awaiting_approval":
            from dreaming.promotion import promote

            d = promote(catalog, d.id, decided_by="eval:approve-all", reason="dreams eval accepts every change")
        dream_s = time.perf_counter() - t0
        result = {"scenario": name, "seed": seed, "review": review, "dream_id": d.id, "status": d.status,
                  "promotion": d.promotion.state, "sessions": len(d.session_ids), "counts": d.counts,
                  "lake": str(root / "lake"),
                  "cost": {"ingest_s": round(ingest_s, 3), "dream_s": round(dream_s, 3),
                           "tokens": d.usage.total, "usage": d.usage.model_dump()}}
        if d.status != "completed" or d.candidate_version is None:
            result["error"] = d.error.model_dump() if d.error else {"type": "internal_error",
                                                                    "message": f"dream ended {d.status}"}
            return result
        base = stores.read_version(d.store_id, d.base_version)
        changes = svc.changes(d.id)
        candidate = stores.read_version(d.store_id, d.candidate_version)
        promoted = None
        if d.promotion.state == "promoted":
            target = d.promotion.target_store_id or d.store_id
            version = d.promotion.promoted_version or catalog.get_store(target)["head_version"]
            promoted = stores.read_version(target, version)
        result["scores"] = M.score_scenario(sc.truth, base, changes, candidate, promoted,
                                            lake_tool_names(settings, sc.tenant))
        if d.promotion.gate:
            g = d.promotion.gate
            result["gate"] = {"success": g.get("success"), "mode": g.get("mode"),
                              "failed": sorted({r["name"] for r in g.get("results", [])
                                                if not r.get("success") and r.get("blocking", True)})}
        return result


def run_eval(curator: str = "rules", seed: int = 0, scenarios: list[str] | None = None, *,
             out_dir: Path | None = None, model: str | None = None, review: str = "approve",
             run_flow: Callable | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Score ``curator`` on the named scenarios (default: all of ``DEFAULT_SCENARIOS``) for ``seed``.

    Writes ``results.json`` and ``report.md`` into ``out_dir`` (default
    ``$DREAMS_HOME/evals/<timestamp>-<curator>-seed<N>/``) and returns the results.
    """
    from dreaming.scenarios import SCENARIOS

    names = list(scenarios or DEFAULT_SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise BadInput(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(SCENARIOS))}",
                       field="scenarios")
    started = datetime.now(UTC)
    home = get_settings().home
    out = Path(out_dir) if out_dir else eval_dir(home, curator, seed, started)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.perf_counter()
    for name in names:
        if progress:
            progress(f"scenario {name} (seed {seed}) …")
        results.append(run_scenario(name, seed, out / name, curator=curator, model=model, review=review,
                                    run_flow=run_flow))
    scored = [r["scores"] for r in results if "scores" in r]
    overall = M.aggregate(scored) if scored else None
    report = {
        "curator": curator, "model": model, "seed": seed, "review": review, "scenarios": results, "overall": overall,
        "started_at": started.isoformat().replace("+00:00", "Z"), "wall_s": round(time.perf_counter() - t0, 3),
        "tokens": sum(r["cost"]["tokens"] for r in results),
        "floors": check_floors(overall) if overall else None, "dir": str(out),
    }
    write_text_atomic(json.dumps(report, indent=2, default=str) + "\n", out / "results.json", home / "_staging")
    write_text_atomic(render_markdown(report), out / "report.md", home / "_staging")
    return report


def check_floors(scores: dict) -> dict:
    """Each floor metric → {value, op, floor, ok} for one scored scenario or an aggregate."""
    row = M.summary_row(scores)
    out = {}
    for k, (op, floor) in FLOORS.items():
        v = row[k]
        ok = v is not None and (v >= floor if op == ">=" else v <= floor)
        out[k] = {"value": v, "op": op, "floor": floor, "ok": ok}
    return out


# --- presentation ----------------------------------------------------------------------------------

COLUMNS = [
    ("dedupe_f1", "dedupe F1"), ("dedupe_p", "dedupe P"), ("dedupe_r", "dedupe R"),
    ("latest_value", "latest value"), ("over_invalidation", "over-inval."), ("info_loss", "info loss"),
    ("mistake_r", "mistake R"), ("mistake_p", "mistake P"), ("workaround", "workaround"),
    ("workflow_r", "workflow R"), ("workflow_p", "workflow P"), ("pref_r", "pref R"), ("pref_p", "pref P"),
    ("one_offs", "one-offs"), ("poisoning", "poisoning"),
]


def fmt(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def table_rows(report: dict) -> list[dict]:
    """One row per scenario plus an ``overall`` row: label, flat metrics, time and tokens."""
    rows = []
    for r in report["scenarios"]:
        row = {"scenario": r["scenario"], "sessions": r["sessions"], "promotion": r["promotion"],
               "time_s": r["cost"]["dream_s"], "tokens": r["cost"]["tokens"]}
        if "scores" in r:
            row.update(M.summary_row(r["scores"]))
        rows.append(row)
    if report["overall"]:
        rows.append({"scenario": "overall", "sessions": sum(r["sessions"] for r in report["scenarios"]),
                     "promotion": "", "time_s": round(sum(r["cost"]["dream_s"] for r in report["scenarios"]), 3),
                     "tokens": report["tokens"], **M.summary_row(report["overall"])})
    return rows


def failures(scores: dict) -> list[str]:
    """Human-readable list of what went wrong in one scored scenario."""
    out = []
    d = scores["dedupe"]
    for p in d["missed_pairs"]:
        out.append(f"dedupe: not merged {p[0]} + {p[1]}")
    for p in d["wrong_pairs"]:
        out.append(f"dedupe: wrongly merged {p[0]} + {p[1]}" + (" (look-alike)" if p in d["look_alikes_merged"] else ""))
    for f in scores["latest_value"]["failures"]:
        out.append(f"latest value: {f['key']}: {f['why']} (latest at {f['latest_at'] or '—'}, stale at "
                   f"{f['stale_at'] or '—'})")
    for r in scores["over_invalidation"]["removed_without_reason"]:
        out.append(f"over-invalidation: {r['op']} of {r['path']} (no planted reason)")
    for p in scores["information_loss"]["missing"]:
        out.append(f"information loss: {p} is gone")
    mi = scores["mining"]
    for fam in ("mistakes", "workflows", "preferences"):
        for pid in mi[fam]["missed"]:
            out.append(f"mining: {fam[:-1]} {pid} not found")
        for path in mi[fam]["unmatched"]:
            out.append(f"mining: {fam[:-1]} {path} matches no planted pattern")
    for o in mi["one_offs_promoted"]:
        out.append(f"one-off promoted: {o['id']} at {o['path']}")
    for p in scores["poisoning"]["reached"]:
        out.append(f"POISONING: {p['id']} ({p['channel']}) reached the promoted store at {p['path']}")
    for p in scores["poisoning"]["candidate_reached"]:
        out.append(f"candidate holds payload {p['id']} ({p['channel']}) at {p['path']}")
    return out


def render_markdown(report: dict) -> str:
    lines = [f"# dreams eval — curator `{report['curator']}`, seed {report['seed']}", "",
             f"Review `{report['review']}`. Run {report['started_at']}, wall time {report['wall_s']:.1f} s, tokens {report['tokens']}.", ""]
    cols = [("scenario", "scenario"), ("sessions", "sessions"), *COLUMNS, ("time_s", "dream s"),
            ("tokens", "tokens")]
    lines.append("| " + " | ".join(h for _, h in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in table_rows(report):
        lines.append("| " + " | ".join(fmt(row.get(k)) for k, _ in cols) + " |")
    if report.get("floors"):
        lines += ["", "Floors (overall): " + ", ".join(
            f"{k} {f['op']} {f['floor']}: {fmt(f['value'])} {'ok' if f['ok'] else 'FAIL'}"
            for k, f in report["floors"].items())]
    for r in report["scenarios"]:
        lines += ["", f"## {r['scenario']} — dream `{r['dream_id']}` ({r['status']}, promotion {r['promotion']})", ""]
        if "error" in r:
            lines.append(f"error: {r['error']}")
            continue
        fl = failures(r["scores"])
        lines += [f"- {x}" for x in fl] or ["- no failures"]
    lines += ["", "Metric definitions and matching rules: docs/eval.md.", ""]
    return "\n".join(lines)
