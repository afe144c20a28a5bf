"""`dreams notifications [DREAM] [--retry]`: the webhook deliveries of dreams' events (dreaming.notifications),
and `dreams store webhook STORE`: a store's own webhook targets."""

from __future__ import annotations

import typer

from dreaming.cli import app, store_app
from dreaming.cli.common import JsonOpt, console, print_json, print_list, print_table

STATUS_HELP = "Only deliveries with this status: pending, delivered or failed."


def _rows(rows: list[dict]) -> list[dict]:
    from dreaming.notifications import redact

    return [{"dream_id": r["dream_id"], "store_id": r["store_id"], "event": r["event"], "target": redact(r["target"]),
             "status": r["status"], "attempts": r["attempts"], "last_error": r["last_error"],
             "created_at": r["created_at"], "delivered_at": r["delivered_at"]} for r in rows]


@app.command("notifications")
def notifications_(
    dream: str | None = typer.Argument(None, help="A dream id (default: every dream's deliveries)."),
    status: str | None = typer.Option(None, "--status", help=STATUS_HELP),
    retry: bool = typer.Option(False, "--retry", help="Send the failed deliveries again (and those a killed "
                               "sender left pending for 10 minutes)."),
    json_: bool = JsonOpt,
) -> None:
    """List the webhook deliveries of dreams' events (awaiting approval, promoted, gate failed, failed); exit 1
    when one of those listed failed."""
    from dreaming import notifications as n
    from dreaming.catalog import Catalog
    from dreaming.errors import BadInput

    if status is not None and status not in n.STATUSES:
        raise BadInput(f"--status {status}: choose one of {', '.join(n.STATUSES)}", field="status")
    catalog = Catalog()
    if dream:
        catalog.get_dream(dream)  # NotFound names it
    rows = n.retry(catalog, dream) if retry else n.deliveries(catalog, dream, status)
    if retry and status:
        rows = [r for r in rows if r["status"] == status]
    shown = _rows(rows)
    if json_:
        print_list(shown)
    elif not shown:
        console.print("no deliveries to send again" if retry else "no webhook deliveries")
    else:
        print_table(shown, ["dream_id", "event", "target", "status", "attempts", "last_error", "delivered_at"],
                    title="sent again" if retry else "webhook deliveries")
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


@store_app.command("webhook")
def store_webhook(
    store: str = typer.Argument(..., help="Store id or name."),
    url: list[str] = typer.Option(None, "--url", help="A webhook URL for this store's dreams (repeatable); replaces "
                                  "DREAMS_WEBHOOK_URL for this store."),
    secret_env: str | None = typer.Option(None, "--secret-env", help="The environment variable that holds this "
                                          "store's signing secret (default: DREAMS_WEBHOOK_SECRET)."),
    none: bool = typer.Option(False, "--none", help="No webhook for this store (not even DREAMS_WEBHOOK_URL)."),
    clear: bool = typer.Option(False, "--clear", help="Back to DREAMS_WEBHOOK_URL and DREAMS_WEBHOOK_SECRET."),
    json_: bool = JsonOpt,
) -> None:
    """Show or set a store's webhook targets (its metadata `webhook_url`, `webhook_secret_env`)."""
    from dreaming.catalog import Catalog
    from dreaming.errors import BadInput
    from dreaming.notifications import check_url

    if sum(bool(x) for x in (url, none, clear)) > 1:
        raise BadInput("give one of --url, --none and --clear")
    if secret_env is not None and (none or clear):
        raise BadInput("--secret-env goes with --url (or alone)")
    catalog = Catalog()
    s = catalog.get_store(store)
    meta = dict(s["metadata"] or {})
    if url or none or clear or secret_env is not None:
        if url:
            meta["webhook_url"] = " ".join(check_url(u, "url") for u in url)
        if none:
            meta["webhook_url"] = ""
        if clear:
            meta.pop("webhook_url", None)
            meta.pop("webhook_secret_env", None)
        if secret_env is not None:
            if secret_env and not secret_env.replace("_", "").isalnum():
                raise BadInput(f"--secret-env {secret_env!r} is not an environment variable name", field="secret_env")
            meta["webhook_secret_env"] = secret_env
            if not secret_env:
                meta.pop("webhook_secret_env")
        s = catalog.update_store(s["id"], metadata=meta)
        meta = s["metadata"] or {}
    out = {"store_id": s["id"], "name": s["name"], "webhook_url": meta.get("webhook_url"),
           "webhook_secret_env": meta.get("webhook_secret_env")}
    if json_:
        print_json(out)
        return
    if "webhook_url" not in meta:
        console.print(f"{s['name']}: the default targets (DREAMS_WEBHOOK_URL)")
    elif not meta["webhook_url"]:
        console.print(f"{s['name']}: no webhook")
    else:
        console.print(f"{s['name']}: {meta['webhook_url']} (secret from "
                      f"{meta.get('webhook_secret_env') or 'DREAMS_WEBHOOK_SECRET'})")
