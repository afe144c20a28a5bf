"""`dreams api`: serve the Dreams and Memory Store HTTP API (docs/api.md)."""

from __future__ import annotations

import typer

from dreaming.cli import app


@app.command("api")
def api(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level: debug, info, warning, error."),
) -> None:
    """Serve Anthropic's Dreams and Memory Store APIs (keys: DREAMS_API_KEYS) until stopped."""
    import uvicorn

    from dreaming.api import create_app
    from dreaming.cli.common import err_console, prefect_defaults

    prefect_defaults()  # dreams run through Prefect as `dreams run` does: the local server's UI, if one answers
    application = create_app()  # no keys: a clear error, exit 2
    err_console.print(f"dreams API on http://{host}:{port} (OpenAPI: /docs), lake {application.state.settings.home}",
                      highlight=False)
    uvicorn.run(application, host=host, port=port, log_level=log_level)
