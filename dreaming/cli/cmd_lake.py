"""`dreams lake fsck | compact | stats`: recovery, compaction and statistics of the lake (docs/lake.md)."""

from __future__ import annotations

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, err_console, fail, list_page, print_json, print_table

lake_app = typer.Typer(help="The transcript lake: consistency checks, recovery, compaction and statistics.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("fsck")
def fsck_cmd(
    grace: float | None = typer.Option(
        None, "--grace", min=0, help="Seconds after which a staged file without a live writer is stale "
                                      "(default: the staging_grace_s setting, 3600)."),
    json_: bool = JsonOpt,
) -> None:
    """Remove staging files of dead writers and quarantine lake files the catalog does not list.

    Nothing is deleted from the lake: unregistered files move to $DREAMS_HOME/quarantine/<stamp>/
    (on an object-store lake, to $DREAMS_LAKE_URL/quarantine/<stamp>/, once older than the grace).
    Exit 1 when registered files are missing on disk (fsck cannot restore them)."""
    from dreaming.fsck import fsck

    report = fsck(grace_s=grace)
    if json_:
        print_json(report.to_dict())
    else:
        console.print(f"staging: {len(report.staging_removed)} stale file(s) removed, "
                      f"{len(report.staging_active)} in use by live writers (left alone)")
        console.print(f"lake: {report.registered} registered file(s), {len(report.quarantined)} unregistered "
                      f"file(s) quarantined, {len(report.missing)} missing")
        for q in report.quarantined:
            console.print(f"  quarantined {q['from']} -> {q['to']}", highlight=False)
        if report.retired_removed or report.retired_waiting:
            console.print(f"compacted away: {len(report.retired_removed)} old file(s) deleted, "
                          f"{len(report.retired_waiting)} kept for readers until the grace has passed")
        for m in report.missing:
            err_console.print(f"[bold red]missing:[/] {m} (registered in the catalog, not on disk)", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


COMPACT_COLUMNS = ["tenant", "day", "files", "rows", "MB", "status"]
STATS_COLUMNS = ["tenant", "day", "files", "rows", "MB", "missing"]


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


@lake_app.command("compact")
def compact_cmd(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's partitions."),
    before: str | None = typer.Option(None, "--before", metavar="DAY",
                                      help="Only days before DAY (YYYY-MM-DD, exclusive), e.g. leave today alone."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be compacted; write nothing."),
    json_: bool = JsonOpt,
) -> None:
    """Rewrite each tenant/day partition with more than one file into one file, sorted by session.

    Atomic: the new file is validated (same rows, same event and snapshot ids), then registered and the
    old files retired in one catalog transaction; a crash at any point leaves every event readable
    exactly once (`dreams lake fsck` tidies what is left). Skipped partitions are listed with the reason."""
    from datetime import date

    from dreaming.lake_compact import compact

    if before is not None:
        try:
            before = date.fromisoformat(before).isoformat()
        except ValueError:
            fail(f"--before: {before!r} is not a day (YYYY-MM-DD)")
    report = compact(tenant=tenant, before=before, dry_run=dry_run)
    if json_:
        print_json(report.to_dict())
        return
    rows = [{"tenant": p.tenant, "day": p.day, "files": len(p.files), "rows": p.rows or None, "MB": _mb(p.bytes),
             "status": p.status + (f": {p.reason}" if p.reason else "")} for p in report.partitions]
    if rows:
        print_table(rows, COMPACT_COLUMNS, title="lake compact" + (" (dry run)" if dry_run else ""))
    verb = "would compact" if dry_run else "compacted"
    n = len([p for p in report.partitions if p.status in ("compacted", "would compact")])
    console.print(f"{verb} {n} partition(s), skipped {len(report.skipped)}; "
                  f"{len(report.partitions)} partition(s) had more than one file")


@lake_app.command("stats")
def stats_cmd(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
    json_: bool = JsonOpt,
) -> None:
    """Files, rows and bytes per tenant and day of the registered snapshot files, and the totals."""
    from dreaming.lake_compact import stats

    s = stats(tenant=tenant)
    if json_:
        print_json({**list_page(s["partitions"]), "totals": s["totals"]})
        return
    rows = [{**r, "MB": _mb(r["bytes"])} for r in s["partitions"]]
    t = s["totals"]
    if rows:
        print_table(rows + [{"tenant": "total", "day": f"{t['partitions']} days", "files": t["files"],
                             "rows": t["rows"], "MB": _mb(t["bytes"]), "missing": t["missing"]}],
                    STATS_COLUMNS, title="lake stats")
    else:
        console.print("no registered snapshot files")
