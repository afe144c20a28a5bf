"""Shared CLI plumbing: output as a rich table or JSON, and the error → exit-code contract.

Exit codes: 0 success; 1 a run that ended failed/rejected; 2 bad usage or bad input.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print the object(s) as JSON.")


def _default(o: Any):
    if isinstance(o, datetime):
        return o.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(o, date):
        return o.isoformat()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    return str(o)


def print_json(obj: Any) -> None:
    """JSON on stdout, nothing else (so scripts can pipe it)."""
    typer.echo(json.dumps(obj, default=_default, indent=2, ensure_ascii=False))


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    t = Table(title=title, show_lines=False)
    for c in columns:
        if c == "id" or c.endswith("_id") or c == "session":
            # ids are never cut short: a user copies them into the next command
            width = max([len(c), *(len(str(r.get(c) or "")) for r in rows)])
            t.add_column(c, min_width=width, no_wrap=True)
        else:
            t.add_column(c)
    for r in rows:
        t.add_row(*("" if r.get(c) is None else _cell(r.get(c)) for c in columns))
    console.print(t)


def _cell(v: Any) -> str:
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def parse_since(text: str | None) -> datetime | None:
    """'7d', '12h', '30m', '2w' or an ISO date/time → an aware UTC datetime (exit 2 otherwise)."""
    from dreaming.errors import BadInput
    from dreaming.timewindow import parse_since as parse

    try:
        return parse(text)
    except BadInput as e:
        fail(f"--since: {e.reason}")


def prefect_defaults() -> None:
    """Defaults for running flows from the CLI (the user's own settings win).

    Without PREFECT_API_URL, Prefect starts a temporary local server; on a small or busy machine
    it needs longer than Prefect's 20 s default to come up. Telemetry stays off.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def read_instructions(text: str | None, file: Path | None) -> str | None:
    """The dream's instructions from ``--instructions`` or ``--instructions-file`` (not both)."""
    if text and file:
        fail("give --instructions or --instructions-file, not both")
    if file:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            fail(f"{file}: {e}")
    return text
