"""`dreams digest`: print exactly what the Claude curator would send for a dream or a session selection.

The requests come from ``dreaming.curators.claude.plan_dream``, the function the curator itself calls
before its first model call: what is printed is what is sent (no second digest builder). Nothing is
recorded, no dream changes state and no model is called, so no API key is needed.
"""

from __future__ import annotations

from pathlib import Path


import typer

from dreaming.cli import app
from dreaming.cli.common import err_console, fail, print_json, read_instructions
from dreaming.errors import BadInput, NotFound



def _instructions(text: str | None, file: Path | None, limit: int) -> str | None:
    text = read_instructions(text, file)
    if text is not None and not text.strip():
        return None
    if text is not None and len(text) > limit:
        raise BadInput(f"instructions are {len(text)} characters; at most {limit} are allowed", field="instructions")
    return text


def curation_input(svc, store: dict, session_ids: list[str], *, base_version: int | None,
                   instructions: str | None, model: str | None, dream_id: str = "drm_digest", created_at=None):
    """The ``CurationInput`` a dream over these sessions would hand its curator, read by the same
    ``DreamService.gather`` as the dream's read step (read-only: nothing is recorded, no dream changes
    state). A session not in the lake within the store's scope is exit 2."""
    from dreaming.curators.base import CurationInput
    from dreaming.errors import DreamFailure
    from dreaming.models import utcnow
    from dreaming.policy import Policy

    version = base_version if base_version is not None else store["head_version"]
    try:
        base, _, signals, now, age_out, _ = svc.gather(store, session_ids, version, created_at or utcnow())
    except DreamFailure as e:
        raise NotFound(e.message) from None
    return CurationInput(dream_id=dream_id, store=store, base=base, session_ids=session_ids, signals=signals,
                         instructions=instructions, policy=Policy(), now=now, model=model, age_out=age_out)


def _print_text(plan) -> None:
    # plain text on stdout (typer.echo, not rich: the digests are full of [brackets])
    typer.echo("=== system ===")
    typer.echo("\n\n".join(b["text"] for b in plan.run.system))
    for i, req in enumerate(plan.requests, 1):
        tool = req["tool_choice"]["name"]
        typer.echo(f"=== user (call {i} of {len(plan.requests)}: {tool}) ===")
        typer.echo(req["messages"][0]["content"])


@app.command("digest")
def digest(
    dream: str | None = typer.Argument(None, help="A dream id: what its Claude curator sends (or would send)."),
    store: str | None = typer.Option(None, "--store", help="Store id or name (instead of a dream)."),
    session: list[str] | None = typer.Option(None, "--session", help="A session id (repeatable)."),
    since: str | None = typer.Option(None, help="Sessions started within this window (7d, 12h) or since a date."),
    all_: bool = typer.Option(False, "--all", help="All sessions of the store's scope not yet dreamt over (default)."),
    model: str | None = typer.Option(None, help="Model (default: the dream's, else DREAMS_DEFAULT_MODEL)."),
    instructions: str | None = typer.Option(None, help="Guidance for the dream (with --store)."),
    instructions_file: Path | None = typer.Option(None, "--instructions-file", help="Read instructions from a file."),
    json_: bool = typer.Option(False, "--json", help="Print the request bodies as JSON."),
) -> None:
    """Print what the Claude curator would send: system prompt and user content (or request bodies, --json)."""
    from dreaming.settings import get_settings

    if (dream is None) == (store is None):
        fail("give a dream id or --store (with --session, --since or --all), not both")
    if model is not None:
        get_settings().check_model(model)  # refused before the SDK and the lake are loaded
    from dreaming.curators.claude import plan_dream
    from dreaming.dreams import DreamService

    svc = DreamService()
    cat, settings = svc.catalog, svc.settings
    if dream is not None:
        if session or since or all_ or instructions or instructions_file:
            fail("--session, --since, --all and --instructions go with --store; a dream has its own")
        d = cat.get_dream(dream)
        row = cat.get_store(d.store_id)
        dream_model = d.model.get("id") if d.curator == "claude" else None
        inp = curation_input(svc, row, list(d.session_ids), base_version=d.base_version or row["head_version"],
                             instructions=d.instructions, model=model or dream_model, dream_id=d.id,
                             created_at=d.created_at)
        what = f"dream {d.id} ({d.curator} curator)"
    else:
        from dreaming.cli.cmd_dream import _selection

        instr = _instructions(instructions, instructions_file, settings.max_instructions_chars)
        row = cat.get_store(store)
        ids_ = sorted(svc.select_sessions(row, _selection(session, since, all_)))
        inp = curation_input(svc, row, ids_, base_version=row["head_version"], instructions=instr, model=model)
        what = f"store {row['name']}"
    plan = plan_dream(inp, settings)
    need = plan.input_tokens
    if json_:
        print_json({"model": plan.run.model, "sessions": len(inp.session_ids), "single_pass": plan.single_pass,
                    "estimated_input_tokens": need, "token_budget": settings.token_budget_per_dream,
                    "requests": plan.requests})
    else:
        _print_text(plan)
    calls = "1 call (single pass)" if plan.single_pass else f"{len(plan.requests)} map calls, then a reduce call"
    err_console.print(f"{what}: {len(inp.session_ids)} sessions, model {plan.run.model}, {calls}; about {need} "
                      f"input tokens (characters/4), budget {settings.token_budget_per_dream}",
                      markup=False, highlight=False, soft_wrap=True)
    if need > settings.token_budget_per_dream:
        err_console.print("[yellow]note:[/] over the token budget: a dream would fail with budget_exceeded "
                          "before its first call", highlight=False, soft_wrap=True)
