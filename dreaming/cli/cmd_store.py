"""`dreams store create|list|show|export|policy` (history and rollback: see cmd_review)."""

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
    read_only: bool = typer.Option(False, "--read-only", help="A read-only tier (organisation, project): dreams "
                                   "never write to it; `dreams store promote-to` is the way in."),
    json_: bool = JsonOpt,
) -> None:
    """Create a memory store (version 1), empty or from a folder of files."""
    svc = _service()
    if from_dir is not None:
        store = svc.create_from_dir(name, from_dir, scope=scope, description=description)
    else:
        store = svc.create(name, scope=scope, description=description)
    store = _tiers().set_read_only(svc.catalog, store["id"]) if read_only else store  # dreaming.tiers
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


@store_app.command("policy")
def policy(
    store: str = typer.Argument(..., help="Store id or name."),
    show: bool = typer.Option(False, "--show", help="Print the policy (the default when nothing is changed)."),
    set_: list[str] = typer.Option(None, "--set", help="key=value (repeatable); lists comma-separated, e.g. "
                                   "hold_taints=tool_output,untrusted; an empty value clears a list."),
    release: list[str] = typer.Option(None, "--release", help="Stop holding this op:kind (a learned hold, or one "
                                      "of hold_kinds); repeatable."),
    reset: bool = typer.Option(False, "--reset", help="Back to the defaults (learned holds are dropped too)."),
    json_: bool = JsonOpt,
) -> None:
    """Show or edit the store's review policy: which changes promote on their own in automatic mode and
    which wait for a person (docs/review.md, "Review policy")."""
    from dreaming import review_policy as rp
    from dreaming.catalog import Catalog
    from dreaming.errors import BadInput
    from dreaming.models import utcnow

    catalog = Catalog()
    s = catalog.get_store(store)
    if reset and (set_ or release):
        raise BadInput("--reset cannot be combined with --set or --release", field="reset")
    pol = rp.load(catalog, s["id"])
    changed = False
    if reset:
        pol, changed = rp.ReviewPolicy(edited_at=utcnow()), True
    for a in set_ or []:
        pol, changed = rp.with_setting(pol, a), True
    for k in release or []:
        pol, changed = rp.release(pol, k), True
    if changed:
        rp.save(catalog, s["id"], pol)
    body = {"store_id": s["id"], "name": s["name"], "policy": pol.model_dump(mode="json"),
            "defaults": pol == rp.ReviewPolicy(edited_at=pol.edited_at)}
    if json_:
        print_json(body)
        return
    state = " (the defaults)" if body["defaults"] else ""
    console.print(f"review policy of [bold]{s['name']}[/]{state}" + (": updated" if changed else ""))
    rows = [{"setting": k, "value": ", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict)
             else (", ".join(v) if isinstance(v, list) else v),
             "meaning": rp.ReviewPolicy.model_fields[k].description or ""}
            for k, v in body["policy"].items()]
    print_table(rows, ["setting", "value", "meaning"], title="promote on their own / wait for a person")


# --- read-only tiers (dreaming.tiers) --------------------------------------------------------------


def _tiers():
    from dreaming import tiers

    return tiers


def _tier_body(catalog, s: dict) -> dict:
    ctx = _tiers().context_stores(catalog, s)
    return {"store_id": s["id"], "name": s["name"], "read_only": bool(s.get("read_only")),
            "context_stores": [{"id": c["id"], "name": c["name"], "head_version": c["head_version"]} for c in ctx]}


@store_app.command("read-only")
def read_only_(
    store: str = typer.Argument(..., help="Store id or name."),
    off: bool = typer.Option(False, "--off", help="Writable again (refused while a store reads it as context)."),
    json_: bool = JsonOpt,
) -> None:
    """Make a store a read-only tier (dreams, rollbacks and edits never write to it), or writable again."""
    from dreaming.catalog import Catalog

    catalog = Catalog()
    s = _tiers().set_read_only(catalog, store, not off)
    if json_:
        print_json(_tier_body(catalog, s))
    else:
        console.print(f"{s['name']}: {'read-only' if s['read_only'] else 'writable'}")


@store_app.command("context")
def context(
    store: str = typer.Argument(..., help="The working store (id or name)."),
    add: list[str] = typer.Option(None, "--add", help="A read-only store to read as context (repeatable)."),
    remove: list[str] = typer.Option(None, "--remove", help="Stop reading this store as context (repeatable)."),
    check: bool = typer.Option(False, "--check", help="List the store's memories that contradict its context "
                               "stores (exit 1 when there is one)."),
    json_: bool = JsonOpt,
) -> None:
    """Show or change the read-only stores a working store reads as context: its dreams do not add what they
    already say, and flag for a person what contradicts them."""
    from dreaming.catalog import Catalog
    from dreaming.stores import StoreService

    t, catalog = _tiers(), Catalog()
    s = catalog.get_store(store)
    for ref in add or []:
        s = t.add_context(catalog, s["id"], ref)
    for ref in remove or []:
        s = t.remove_context(catalog, s["id"], ref)
    body = _tier_body(catalog, s)
    found = []
    if check:
        head = StoreService(catalog).read_version(s["id"], s["head_version"]) if s["head_version"] else []
        found = t.contradictions(head, t.context_memories(catalog, s))
        body["contradictions"] = [vars(x) for x in found]
    if json_:
        print_json(body)
    else:
        names = ", ".join(c["name"] for c in body["context_stores"]) or "none"
        console.print(f"{s['name']}{' (read-only)' if body['read_only'] else ''}: context stores {names}")
        for x in found:
            console.print(x.note(), highlight=False)
        if check and not found:
            console.print("no memory contradicts its context stores")
    if found:
        raise typer.Exit(1)


@store_app.command("promote-to")
def promote_to(
    store: str = typer.Argument(..., help="The working store the memory is in (id or name)."),
    to: str = typer.Option(..., "--to", help="The read-only store it goes into."),
    memory: str = typer.Option(..., "--memory", help="The memory's id or path in the working store's head."),
    by: str | None = typer.Option(None, "--by", help="Who decides (default: user:<login>); recorded."),
    json_: bool = JsonOpt,
) -> None:
    """Copy one reviewed memory into a read-only tier: a new head version of it whose actor says promote-to
    (the only way a memory gets into a read-only store)."""
    from dreaming.catalog import Catalog
    from dreaming.cli.cmd_review import _who

    catalog = Catalog()
    version = _tiers().promote_to(catalog, store, to, memory, _who(by))
    dst = catalog.get_store(to)
    row = catalog.get_version(dst["id"], version)
    if json_:
        print_json({"store_id": dst["id"], "name": dst["name"], "version": version, "created_by": row["created_by"],
                    "message": row["message"]})
    else:
        console.print(f"{dst['name']}: new head v{version} ({row['message']})")
