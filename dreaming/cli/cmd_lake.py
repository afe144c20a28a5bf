"""`dreams lake fsck`: recover the lake after a crash (docs/ingest.md, "Crashes and fsck")."""

from __future__ import annotations

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, err_console, print_json

lake_app = typer.Typer(help="The transcript lake: consistency checks and recovery.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("fsck")
def fsck_cmd(
    grace: float | None = typer.Option(
        None, "--grace", min=0, help="Seconds after which a staged file without a live writer is stale "
                                      "(default: the staging_grace_s setting, 3600)."),
    json_: bool = JsonOpt,
) -> None:
    """Remove staging files of dead writers and quarantine lake files the catalog does not list.

    Nothing is deleted from the lake: unregistered files move to $DREAMS_HOME/quarantine/<stamp>/.
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
        for m in report.missing:
            err_console.print(f"[bold red]missing:[/] {m} (registered in the catalog, not on disk)", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
