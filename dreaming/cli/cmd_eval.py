"""`dreams eval`: score consolidation quality on planted-truth scenarios (or report on real data)."""

from __future__ import annotations

from pathlib import Path

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, err_console, fail, print_json


def _names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


@app.command("eval")
def eval_(
    curator: str = typer.Option("rules", help="rules (offline, default) or claude."),
    seed: int = typer.Option(0, help="Scenario seed (same seed → same scenarios)."),
    scenarios: list[str] | None = typer.Option(
        None, "--scenarios", help="Scenario name (repeatable or comma-separated; default: small, demo, large)."),
    model: str | None = typer.Option(None, help="Model for the claude curator."),
    review: str = typer.Option("approve", help="approve: the eval accepts every change after the review-mode "
                               "gate (scores what the curator proposed); auto: automatic promotion when the "
                               "auto-mode gate passes, as `dreams run` does."),
    real: Path | None = typer.Option(None, "--real", help="Report on a real set instead: a tau-bench file, a "
                                     "SWE-bench trajectory folder, or LoCoMo (folder or conversation file)."),
    conversations: int = typer.Option(0, "--conversations", help="LoCoMo: only the first N conversations (0 = all)."),
    unlabelled_out: Path | None = typer.Option(
        None, "--unlabelled-out", help="With --real (tau-bench, SWE-bench): write the memories that have no label "
        "yet to FILE as JSONL in the labels format (label null), to fill in and append to the labels file."),
    dream_size: int = typer.Option(
        0, "--dream-size", help="With --real (tau-bench, SWE-bench): the user's path, consecutive dreams of at most N "
        "sessions (oldest first), each approved before the next, scoring the final store (0 = one dream over all)."),
    json_: bool = JsonOpt,
) -> None:
    """Generate scenarios with known truth, dream over them with the real flow, and score the result."""
    if curator not in ("rules", "claude"):
        fail(f"unknown curator {curator!r}; choose rules or claude")
    if review not in ("approve", "auto"):
        fail(f"unknown review {review!r}; choose approve or auto")
    if curator == "claude":
        from dreaming.catalog import Catalog
        from dreaming.curators.claude import check_credentials

        check_credentials(Catalog().settings)
    say = (lambda *a, **k: None) if json_ else err_console.print
    if unlabelled_out is not None and real is None:
        fail("--unlabelled-out needs --real PATH")
    if dream_size and real is None:
        fail("--dream-size needs --real PATH")
    if dream_size < 0:
        fail(f"--dream-size must be 0 or a number of sessions, got {dream_size}")
    if real is not None:
        from dreaming.evaluation.realdata import print_real_report, run_real

        report = run_real(real, curator=curator, model=model, limit=conversations or None, progress=say,
                          unlabelled_out=unlabelled_out, dream_size=dream_size or None)
        print_json(report) if json_ else print_real_report(report, console)
        return
    from dreaming.evaluation.runner import run_eval

    report = run_eval(curator=curator, seed=seed, scenarios=_names(scenarios), model=model, review=review,
                      progress=say)
    if json_:
        print_json(report)
    else:
        print_eval_table(report)
        console.print(f"results: {report['dir']}/results.json · {report['dir']}/report.md")
    failed = [r for r in report["scenarios"] if "scores" not in r]
    raise typer.Exit(1 if failed else 0)


def print_eval_table(report: dict) -> None:
    from rich.table import Table

    from dreaming.evaluation.runner import COLUMNS, failures, fmt, table_rows

    cols = [("scenario", "scenario"), ("sessions", "sess."), ("promotion", "promotion"), *COLUMNS,
            ("time_s", "dream s"), ("tokens", "tokens")]
    rows = table_rows(report)
    # metrics as rows and scenarios as columns: readable in an 80-column terminal
    t = Table(title=f"dreams eval · curator {report['curator']} · review {report['review']} · seed {report['seed']} · "
                    f"{report['started_at'][:10]}")
    t.add_column("metric")
    for row in rows:
        t.add_column(str(row["scenario"]), justify="right", style="bold" if row["scenario"] == "overall" else None)
    for key, header in cols[1:]:
        t.add_row(header, *(fmt(row.get(key)) for row in rows))
    console.print(t)
    if report.get("floors"):
        console.print("floors: " + " · ".join(
            f"{k} {f['op']} {f['floor']}: {fmt(f['value'])} " + ("[green]ok[/]" if f["ok"] else "[red]FAIL[/]")
            for k, f in report["floors"].items()))
    for r in report["scenarios"]:
        if "error" in r:
            console.print(f"[red]{r['scenario']}: dream {r['dream_id']} {r['status']}: {r['error']}[/]")
            continue
        fl = failures(r["scores"])
        if fl:
            console.print(f"[bold]{r['scenario']}[/] ({len(fl)} finding(s)):")
            for x in fl[:20]:
                console.print(f"  • {x}", highlight=False)
            if len(fl) > 20:
                console.print(f"  … {len(fl) - 20} more in report.md")
