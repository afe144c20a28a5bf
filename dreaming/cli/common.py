"""Shared CLI plumbing: output as a rich table or JSON, and the error → exit-code contract.

Exit codes: 0 success; 1 a run that ended failed/rejected; 2 bad usage or bad input.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()
# a message to a file or a pipe is one line per message, never wrapped at 80 columns
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

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


def list_page(items: Iterable[Any]) -> dict:
    """Anthropic's list envelope, ``{"data": [...], "next_page": null}``: the one shape every listing
    prints with ``--json`` (the CLI returns the whole list, so there is never a next page)."""
    return {"data": list(items), "next_page": None}


def print_list(items: Iterable[Any]) -> None:
    """A listing as JSON on stdout, in the list envelope of ``list_page``."""
    print_json(list_page(items))


_FREE_TEXT = {"message", "reason", "error", "content", "description", "text", "title", "summary", "why", "file"}


def _is_id(c: str) -> bool:
    return c == "id" or c.endswith("_id") or c in ("session", "dream", "store")


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    """A table that fits the terminal: ids and headers are never cut, free text wraps, and columns that do
    not fit are left out (said below the table; ``--json`` has everything). When stdout is not a terminal
    (a pipe, a file) nothing wraps and nothing is left out."""
    cells = [["" if r.get(c) is None else _cell(r.get(c)) for c in columns] for r in rows]
    natural = {c: max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)}
    piped = not console.is_terminal
    width = console.width
    keep = list(columns)

    def need(cols: list[str]) -> int:  # borders and padding: 3 per column + 1
        return sum(min(natural[c], max(len(c), 24)) if c in _FREE_TEXT else natural[c] for c in cols) + 3 * len(cols) + 1

    dropped: list[str] = []
    if not piped:
        while need(keep) > width:
            victims = [c for c in keep[1:] if not _is_id(c)]
            if not victims:
                break
            dropped.insert(0, victims[-1])
            keep.remove(victims[-1])
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in keep:
        if c in _FREE_TEXT and not piped:
            t.add_column(c, min_width=len(c), overflow="fold")
        else:  # ids are never cut short: a user copies them into the next command
            t.add_column(c, min_width=natural[c], no_wrap=True)
    idx = [columns.index(c) for c in keep]
    for row in cells:
        t.add_row(*(row[i] for i in idx))
    if piped:
        full = sum(natural[c] for c in keep) + 3 * len(keep) + 1
        Console(width=max(full, len(title or "")) + 1, force_terminal=False, soft_wrap=False).print(t)
    else:
        console.print(t)
    if dropped:
        err_console.print(f"[dim]not shown at {width} columns: {', '.join(dropped)} (a wider terminal, or --json)[/]",
                          highlight=False)


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

    Without PREFECT_API_URL, a Prefect server already answering on this machine (``prefect server
    start``'s address, or ``DREAMS_LOCAL_PREFECT_URL``) is used (``dreaming.local_server``): no temporary
    server to start, and the run shows in that UI. Else Prefect starts a temporary local server; on a
    small or busy machine it needs longer than Prefect's 20 s default to come up. Telemetry stays off.
    """
    from dreaming.local_server import adopt_local_server

    url = adopt_local_server()
    if url:
        err_console.print(f"[dim]using the Prefect server running at {url} (PREFECT_API_URL is not set)[/]")
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
