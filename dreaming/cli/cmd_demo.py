"""`dreams demo`: generate a realistic sample lake and run a dream on it end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, fail, print_json

MARKER = ".dreams-demo"


def _prepare(home: Path) -> None:
    """The demo owns its lake: rebuild it, but never wipe a folder the demo did not make."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            fail(f"{home} exists and is not a demo lake; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `dreams demo`; rebuilt on every run\n")


@app.command("demo")
def demo(
    seed: int = typer.Option(0, help="Scenario seed (same seed → same lake and same dream)."),
    home: Path | None = typer.Option(None, help="Demo lake (default: $DREAMS_HOME/demo)."),
    json_: bool = JsonOpt,
) -> None:
    """Generate a sample lake (agents, sessions, a starting store) and dream over it."""
    from dreaming.settings import get_settings, use_lake

    home = (home or get_settings().home / "demo").resolve()
    _prepare(home)
    with use_lake(home):  # flows and tasks read the lake from the environment
        code = _run(home, seed, json_)
    raise typer.Exit(code)


def _run(home: Path, seed: int, json_: bool) -> int:
    """Ingest → store → dream (→ review) in the demo lake; returns the exit code."""
    from dreaming.catalog import Catalog
    from dreaming.cli.cmd_dream import exit_code, print_outcome, run_dream_flow
    from dreaming.dreams import DreamService
    from dreaming.report import grouped
    from dreaming.scenarios import generate_scenario
    from dreaming.stores import StoreService

    say = (lambda *a, **k: None) if json_ else console.print
    scenario = generate_scenario(home / "sources", seed=seed)
    catalog = Catalog()
    reports = scenario.ingest(catalog)
    files = sum(len(r.files) for r in reports)
    sessions = sum(f.sessions for r in reports for f in r.files)
    events = sum(f.events for r in reports for f in r.files)
    say(f"[bold]1. ingest[/]  {files} transcript files ({', '.join(scenario.transcripts)}) → "
        f"{sessions} sessions, {events} events in {home / 'transcripts'}")
    store = StoreService(catalog).create_from_dir("demo-memory", scenario.store_dir, scope=scenario.scope,
                                                  description="what the support agents have learned")
    say(f"[bold]2. store[/]   {store['name']} ({store['id']}) v1 from {scenario.store_dir}, scope {store['scope']}")
    svc = DreamService(catalog)
    d = svc.create(store["id"], output_behavior="update_existing")
    say(f"[bold]3. dream[/]   {d.id} over {len(d.session_ids)} sessions (Prefect flow `dream`) …")
    d = run_dream_flow(d)
    if d.promotion.state == "awaiting_approval":
        # The gate wants a person (e.g. mistakes quoted from tool output are tainted). The demo plays
        # that person, visibly: in real use this is `dreams approve` after reading `dreams diff`.
        from dreaming.promotion import review

        say(f"[bold]4. review[/]  {d.promotion.reason}")
        say(f"           the demo approves on your behalf: [bold]dreams approve {d.id} --by 'dreams demo'[/]")
        d = review(catalog, d.id, approve=True, decided_by="dreams demo",
                   note="approved by the demo; read the diff before approving in real use").dream
    if json_:
        print_json({"lake": str(home), "dream": d.to_api()})
        return exit_code(d)
    print_outcome(d)
    if d.candidate_version:
        for op, cs in grouped(svc.changes(d.id)).items():
            if op == "keep":
                continue
            console.print(f"\n[bold underline]{op}[/] ({len(cs)})")
            for c in cs[:8]:
                text = (c.after or c.before or "").replace("\n", " ")
                console.print(f"  • [cyan]{c.path or c.memory_id}[/] — {c.reason}")
                if text:
                    console.print(f"    {text[:150]}{'…' if len(text) > 150 else ''}", highlight=False)
            if len(cs) > 8:
                console.print(f"  … and {len(cs) - 8} more (`dreams diff {d.id}`)")
    exe = _dreams_command()
    console.print(f"\nexplore it (this lake is not the default one, so name it first):\n"
                  f"  export DREAMS_HOME={home}\n  {exe} diff {d.id}\n  {exe} store show demo-memory\n"
                  f"  {exe} store history demo-memory", highlight=False, soft_wrap=True)
    return exit_code(d)


def _dreams_command() -> str:
    """How the user can call this CLI again: `dreams` when it is on PATH, else its path (relative to the
    current folder when inside it: `.venv/bin/dreams`)."""
    import shutil
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("dreams")
    on_path = shutil.which("dreams")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "dreams"
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)
