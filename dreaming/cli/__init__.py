"""The `dreams` command line (typer). Each command group lives in its own module.

See docs/cli.md for every command; DESIGN §9 is the contract.
"""

from __future__ import annotations

import sys

import typer

from dreaming.errors import DreamsError

app = typer.Typer(
    name="dreams",
    help="Dreaming for agent memory: consolidate memory stores from past agent sessions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"dreams {version('dreams')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Dreaming for agent memory: consolidate memory stores from past agent sessions."""


store_app = typer.Typer(help="Memory stores: create, list, show, export, history.", no_args_is_help=True)
app.add_typer(store_app, name="store")


def _register() -> None:
    # Importing a module registers its commands on `app` / `store_app`.
    import importlib
    import pkgutil

    import dreaming.cli as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
        if mod.startswith("cmd_"):
            importlib.import_module(f"dreaming.cli.{mod}")


_register()


def main() -> None:
    """Entry point: run the app, turning DreamsError into a clear message and exit code 2, and SIGINT /
    SIGTERM into a summary on stderr and exit 130 / 143 (dreaming.cli.interrupt)."""
    from dreaming.cli import interrupt

    interrupt.install()
    signum = None
    try:
        rc = _run()
    except BaseException as e:  # noqa: BLE001 - a signal may surface as any of three exception types
        signum = interrupt.from_exception(e) or interrupt.pending()
        if signum is None:
            raise
    signum = signum or interrupt.pending()  # also when something on the way up swallowed its exception
    if signum is not None:
        interrupt.leave(signum)  # summary on stderr, atexit callbacks, exit 130 / 143 without waiting
    sys.exit(rc)


def _run() -> int:
    """The app's exit code (click usage errors: 2; DreamsError: its code, after the message)."""
    try:
        rc = app(standalone_mode=False)
        # with standalone_mode=False, click returns the code of `raise typer.Exit(n)` instead of raising
        return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0
    except DreamsError as e:
        from dreaming.cli.common import err_console

        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        return 1
    except Exception as e:  # click usage errors
        import click

        # typer >= 0.29 vendors click (typer._click): match both exception families
        if isinstance(e, click.exceptions.ClickException) or (
            type(e).__module__.startswith("typer.") and hasattr(e, "show") and hasattr(e, "exit_code")
        ):
            e.show()
            return 2
        raise
