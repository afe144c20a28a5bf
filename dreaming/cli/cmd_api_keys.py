"""`dreams api-key create | list | revoke`: the HTTP API's keys in the catalog (docs/api.md#auth-and-tenancy)."""

from __future__ import annotations

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, err_console, print_json, print_list, print_table

api_key_app = typer.Typer(help="Keys of the HTTP API (`dreams api`): create, list, revoke.", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")

COLUMNS = ["id", "tenant", "agent_id", "name", "hint", "created_at", "revoked_at"]


@api_key_app.command("create")
def create(
    tenant: str = typer.Option(..., "--tenant", "-t", help="The tenant the key reaches."),
    agent: str | None = typer.Option(None, "--agent", "-a",
                                     help="Confine the key to this agent's stores (scope tenant/agent)."),
    name: str = typer.Option("", "--name", "-n", help="A label for people telling keys apart."),
    json_: bool = JsonOpt,
) -> None:
    """Make a key; its secret is printed once, here, and kept nowhere (the catalog holds its SHA-256)."""
    from dreaming import api_keys
    from dreaming.catalog import Catalog

    key, secret = api_keys.create(Catalog(), tenant, agent, name)
    if json_:
        print_json({**key.to_dict(), "secret": secret})
        return
    typer.echo(secret)
    err_console.print(f"key {key.id} for {key.scope}: the secret above is shown only now "
                      f"(send it as x-api-key; revoke with `dreams api-key revoke {key.id}`)", highlight=False)


@api_key_app.command("list")
def list_(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="Only this tenant's keys."),
    active: bool = typer.Option(False, "--active", help="Leave out revoked keys."),
    json_: bool = JsonOpt,
) -> None:
    """List keys, oldest first: id, tenant, agent, name, the secret's last characters, created, revoked."""
    from dreaming import api_keys
    from dreaming.catalog import Catalog

    keys = api_keys.list_keys(Catalog(), tenant=tenant, include_revoked=not active)
    if json_:
        print_list(k.to_dict() for k in keys)
        return
    if not keys:
        console.print("no API keys (make one with `dreams api-key create --tenant T`)")
        return
    print_table([k.to_dict() for k in keys], COLUMNS, title=f"{len(keys)} API keys")


@api_key_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (apikey_…, see `dreams api-key list`)."),
    json_: bool = JsonOpt,
) -> None:
    """Revoke a key: the server refuses it (401) from the next request on. Revoking twice is a no-op."""
    from dreaming import api_keys
    from dreaming.catalog import Catalog

    key = api_keys.revoke(Catalog(), key_id)
    if json_:
        print_json(key.to_dict())
        return
    console.print(f"revoked {key.id} ({key.scope}) at {key.to_dict()['revoked_at']}", highlight=False)
