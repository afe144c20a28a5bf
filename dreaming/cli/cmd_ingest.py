"""`dreams ingest PATH...` and `dreams sessions` (docs/ingest.md, docs/sessions.md)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from typing import TYPE_CHECKING

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, err_console, fail, parse_since, print_json, print_list, print_table
from dreaming.errors import BadInput
from dreaming.schema import SOURCE_FORMATS as FORMATS  # == dreaming.ingest.FORMATS (tests/test_cli_startup.py)

if TYPE_CHECKING:  # imported inside the commands: `dreams --help` stays quick
    from dreaming.ingest import IngestReport

PROGRESS_MIN_FILES = 2
"""The progress bar shows when stderr is a terminal and the batch has at least this many files."""

SESSION_COLUMNS = ["session_id", "tenant", "agent_id", "started_at", "ended_at", "events", "tool_calls",
                   "errors", "outcome"]


@app.command("ingest")
def ingest(
    paths: list[Path] = typer.Argument(..., help="Transcript files or folders (folders: *.json, *.jsonl, *.ndjson, recursively)."),
    format_: str = typer.Option(
        "auto", "--format", "-f", help=f"auto (sniff the content) or one of: {', '.join(FORMATS)}."
    ),
    tenant: str = typer.Option("default", "--tenant", "-t", help="Tenant the sessions belong to."),
    agent: str | None = typer.Option(None, "--agent", "-a", help="Agent id recorded on every event."),
    keep_secrets: bool = typer.Option(
        False, "--keep-secrets",
        help="Also keep the unredacted originals of redacted events in a sidecar under $DREAMS_HOME/originals/ "
             "(the lake itself is always redacted; default: the keep_secrets setting)."),
    labels: Path | None = typer.Option(
        None, "--labels",
        help="Outcome labels for mini-swe-agent trajectories: SWE-bench's results_summary.csv or sb-cli report "
             "JSON (default: one found beside the trajectories). Named instances get outcome resolved/unresolved."),
    json_: bool = JsonOpt,
) -> None:
    """Turn agent transcripts into immutable Parquet snapshots in the lake.

    Each file is all or nothing; re-ingesting a file is a no-op. Secrets are redacted; lines
    skipped or repaired are reported. Exit 2 if any file failed (after ingesting the good ones)."""
    from dreaming.catalog import Catalog
    from dreaming.ingest import check_name, expand_paths, ingest_files

    if format_ != "auto" and format_ not in FORMATS:
        raise typer.BadParameter(f"choose auto or one of {', '.join(FORMATS)}", param_hint="--format")
    catalog = Catalog()
    try:
        check_name(tenant, "tenant")
        check_name(agent, "agent")
    except BadInput as e:
        fail(f"--{e.field}: {e.reason}")
    if labels is not None:
        from dreaming.ingest.mini_swe_agent import read_labels

        try:
            read_labels(labels)
        except BadInput as e:
            fail(f"--labels: {e}")
    keep = True if keep_secrets else None  # None: the setting decides
    n_files = len(expand_paths(paths))
    if n_files == 0:  # nothing to do is bad input, not a success
        fail(f"no transcript files in {', '.join(str(p) for p in paths)} (folders are searched for *.json, "
             f"*.jsonl, *.ndjson)")
    show_bar = not json_ and err_console.is_terminal and n_files >= PROGRESS_MIN_FILES
    if show_bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=err_console, transient=True,
        ) as bar:
            task = bar.add_task("ingest", total=n_files)
            report = ingest_files(paths, catalog, fmt=format_, tenant=tenant, agent=agent, keep_secrets=keep,
                                  labels=labels, progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        report = ingest_files(paths, catalog, fmt=format_, tenant=tenant, agent=agent, keep_secrets=keep,
                              labels=labels)

    if json_:
        print_json(report.to_dict())
    else:
        _print_summary(report)
    if report.failed:
        raise typer.Exit(2)


def _print_summary(report: IngestReport) -> None:
    from rich.table import Table

    if not report.files:
        console.print("no files to ingest (folders are searched for *.json, *.jsonl, *.ndjson)")
        return
    if len(report.files) <= 20:
        t = Table(title="ingest", show_lines=False)
        t.add_column("file", overflow="fold", ratio=3)
        for c in ("status", "format"):
            t.add_column(c)
        for c in ("sessions", "events", "tool calls", "errors seen"):
            t.add_column(c, justify="right")
        for f in report.files:
            style = {"failed": "red", "skipped": "yellow"}.get(f.status)
            t.add_row(f.path, f.status, f.format or "", *(str(x) for x in (f.sessions, f.events, f.tool_calls, f.errors)),
                      style=style)
        console.print(t)
    tot = report.totals()
    s = Table(title="summary", show_header=True)
    for c in ("files", "ingested", "skipped", "failed", "sessions", "events", "tool calls", "errors seen",
              "lines skipped", "lines repaired", "redacted"):
        s.add_column(c, justify="right")
    s.add_row(*(str(tot[k]) for k in ("files", "ingested", "skipped", "failed", "sessions", "events", "tool_calls",
                                      "errors", "skipped_lines", "repaired_lines", "redacted")))
    console.print(s)
    _print_notes(report)
    for f in report.failed:
        err_console.print(f"[bold red]failed:[/] {f.error}", highlight=False)


ISSUES_SHOWN = 20
"""Skipped/repaired lines listed in the plain summary (all of them with --json)."""


def _print_notes(report: IngestReport) -> None:
    tot = report.totals()
    if report.recovery:
        r = report.recovery
        err_console.print(f"recovered first: {len(r['staging_removed'])} stale staging file(s) removed, "
                          f"{len(r['quarantined'])} unregistered lake file(s) quarantined", highlight=False)
    if tot["redacted"]:
        kinds = ", ".join(f"{k} {n}" for k, n in report.redactions.items())
        console.print(f"redacted {tot['redacted']} secret(s): {kinds}", highlight=False)
    if tot["ignored_records"]:
        console.print(f"ignored {tot['ignored_records']} record(s) that hold no conversation "
                      "(e.g. Claude Code summary lines)", highlight=False)
    shown = 0
    for f in report.ingested:
        for i in f.issues:
            if shown < ISSUES_SHOWN:
                where = f"{f.path}:{i['line']}" if i["line"] is not None else f.path
                field = f" (field {i['field']!r})" if i["field"] else ""
                err_console.print(f"[yellow]{i['action']}:[/] {where}: {i['reason']}{field}", highlight=False)
            shown += 1
    if shown > ISSUES_SHOWN:
        err_console.print(f"… and {shown - ISSUES_SHOWN} more; --json lists every one", highlight=False)


@app.command("sessions")
def sessions(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant."),
    agent: str | None = typer.Option(None, "--agent", "-a", help="Only this agent."),
    since: str | None = typer.Option(None, "--since", help="Started within DUR (7d, 12h, 30m, 2w) or since an ISO date."),
    json_: bool = JsonOpt,
) -> None:
    """List sessions in the lake (the DuckDB `sessions` view): start, end, events, tool calls, errors, outcome."""
    from dreaming.lake import Lake

    with Lake() as lake:
        rows = lake.sessions(tenant=tenant, agent=agent, since=parse_since(since))
    if json_:
        print_list({k: r.get(k) for k in [*SESSION_COLUMNS, "source_format"]} for r in rows)
        return
    if not rows:
        console.print("no sessions (ingest some with `dreams ingest PATH`)")
        return
    # the shared table: session ids are never cut (a user copies them into `dreams run --session`),
    # columns that do not fit 80 columns are named below it, nothing wraps when piped
    cols = ["session", *(["tenant"] if not tenant else []), *(["agent"] if not agent else []), "start", "events",
            "errors", "outcome", "end", "tools"]
    table = [{"session": r["session_id"], "tenant": r["tenant"], "agent": r["agent_id"] or "",
              "start": _when(r["started_at"]), "end": _when(r["ended_at"]), "events": r["events"],
              "tools": r["tool_calls"], "errors": r["errors"], "outcome": r["outcome"] or ""} for r in rows]
    print_table(table, cols, title=f"{len(rows)} sessions (times in UTC)")


def _when(dt) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if dt else ""
