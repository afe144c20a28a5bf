"""`dreams store create|list|show|export` (history and rollback: see cmd_review)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dreaming.cli import store_app
from dreaming.cli.common import JsonOpt, console, print_json, print_list, print_table


def _service():
    from dreaming.catalog import Catalog
    from dreaming.stores import StoreService

    return StoreService(Catalog())


def _reading_service():
    """A StoreService for the read-only commands: no SQLAlchemy, no pyarrow (StoreService.for_reading)."""
    from dreaming.stores import StoreService

    return StoreService.for_reading()


def _store_api(s: dict) -> dict:
    return {
        "type": "memory_store",
        "id": s["id"],
        "name": s["name"],
        "description": s["description"],
        "metadata": s["metadata"],
        "scope": s["scope"],
        "head_version": s["head_version"],
        "forked_from": s["forked_from"],
        "created_at": s["created_at"],
        "updated_at": s["updated_at"],
        "archived_at": s["archived_at"],
    }


@store_app.command("create")
def create(
    name: str = typer.Argument(..., help="Store name (unique)."),
    scope: str = typer.Option("default", help="Tenant or tenant/agent whose sessions this store learns from."),
    description: str = typer.Option("", help="What the store holds."),
    from_dir: Path | None = typer.Option(None, "--from-dir", help="Folder of Markdown/text files → memories."),
    json_: bool = JsonOpt,
) -> None:
    """Create a memory store (version 1), empty or from a folder of files."""
    svc = _service()
    if from_dir is not None:
        store = svc.create_from_dir(name, from_dir, scope=scope, description=description)
    else:
        store = svc.create(name, scope=scope, description=description)
    if json_:
        print_json(_store_api(store))
    else:
        n = len(svc.read_version(store["id"]))
        console.print(f"created [bold]{store['name']}[/] ({store['id']}), scope {store['scope']}, v1 with {n} memories")


@store_app.command("list")
def list_(json_: bool = JsonOpt, include_archived: bool = typer.Option(False, "--include-archived")) -> None:
    """List memory stores."""
    from dreaming.catalog_read import open_catalog

    stores = open_catalog().list_stores(include_archived=include_archived)
    if json_:
        print_list(_store_api(s) for s in stores)
    else:
        print_table(stores, ["id", "name", "scope", "head_version", "updated_at"], title="memory stores")


@store_app.command("show")
def show(
    store: str = typer.Argument(..., help="Store id or name."),
    version: int | None = typer.Option(None, help="A version other than the head."),
    json_: bool = JsonOpt,
) -> None:
    """Show a store and the memories of its head (or of --version)."""
    svc = _reading_service()
    s = svc.catalog.get_store(store)
    memories = svc.read_version(s["id"], version)
    if json_:
        print_json({**_store_api(s), "version": version or s["head_version"],
                    "memories": [m.to_api() for m in memories]})
        return
    console.print(f"[bold]{s['name']}[/] {s['id']}  scope={s['scope']}  head=v{s['head_version']}")
    rows = [
        {"path": m.path, "kind": m.kind, "key": m.key, "support": m.support, "pinned": m.pinned,
         "content": (m.content[:70] + "…") if len(m.content) > 70 else m.content}
        for m in memories
    ]
    print_table(rows, ["path", "kind", "key", "support", "pinned", "content"],
                title=f"v{version or s['head_version']}: {len(memories)} memories")


class ExportFormat(str, Enum):
    dir = "dir"
    claude_md = "claude-md"
    agents_md = "agents-md"


@store_app.command("export")
def export(
    store: str = typer.Argument(..., help="Store id or name."),
    directory: Path = typer.Argument(..., help="Folder to write into."),
    version: int | None = typer.Option(None, help="A version other than the head."),
    format_: ExportFormat = typer.Option(
        ExportFormat.dir, "--format",
        help="dir: one file per memory path plus the index MEMORY.md; claude-md / agents-md: one "
             "instruction file DIR/CLAUDE.md / DIR/AGENTS.md."),
    json_: bool = JsonOpt,
) -> None:
    """Write the head version (or --version) out as files, or as one CLAUDE.md / AGENTS.md."""
    written = _service().export(store, directory, version, format=format_.value)
    if json_:
        print_list(str(p) for p in written)
    elif format_ is ExportFormat.dir:
        console.print(f"wrote {len(written) - 1} memory files and the index {written[-1]}")
    else:
        console.print(f"wrote {written[0]}")
