"""The CLI starts quickly because it imports little (structural checks, no timings: bench/cli.py times
it), `--help` still lists every command, and every listing prints Anthropic's list shape with --json."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from dreaming.cli import app

HEAVY = ("sqlalchemy", "prefect", "great_expectations", "pyarrow", "duckdb", "pydantic_settings", "anthropic")


def _imported_by(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('imported:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].split()[1:]


def test_importing_the_cli_imports_no_heavy_library():
    assert _imported_by("import dreaming.cli") == []


def test_help_and_version_import_no_heavy_library():
    run = "import sys\nfrom dreaming.cli import main\nsys.argv = ['dreams', {}]\ntry:\n    main()\nexcept SystemExit:\n    pass"
    assert _imported_by(run.format("'--help'")) == []
    assert _imported_by(run.format("'--version'")) == []


def test_reading_the_catalog_needs_neither_pyarrow_nor_prefect():
    assert _imported_by("import dreaming.catalog") == ["sqlalchemy"]


def test_the_read_only_path_imports_nothing_heavy():
    # the listing commands' modules (tests/test_catalog_read.py runs the commands themselves)
    assert _imported_by("import dreaming.catalog_read, dreaming.migrations, dreaming.stores") == []


def test_help_lists_every_command_with_its_help():
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for cmd in ("demo", "ingest", "sessions", "store", "run", "list", "show", "diff", "approve", "reject",
                "rollback", "gate", "digest", "eval", "serve", "backfill", "fleet", "reap", "lake"):
        assert f" {cmd} " in out, cmd
    assert "One dream per day" in out and "List dreams, newest first" in out
    store = CliRunner().invoke(app, ["store", "--help"], env={"COLUMNS": "200"}).output
    for cmd in ("create", "list", "show", "export", "history"):
        assert f" {cmd} " in store, cmd


def test_the_cli_format_list_is_the_ingest_one():
    from dreaming.cli.cmd_ingest import FORMATS
    from dreaming.ingest import FORMATS as INGEST_FORMATS

    assert tuple(FORMATS) == tuple(INGEST_FORMATS)


def test_settings_read_the_environment_without_pydantic_settings(monkeypatch, tmp_path):
    from dreaming.settings import get_settings

    monkeypatch.setenv("DREAMS_HOME", str(tmp_path))
    monkeypatch.setenv("DREAMS_MAX_SESSIONS_PER_DREAM", "7")
    monkeypatch.setenv("DREAMS_ALLOWED_MODELS", '["claude-sonnet-4-6"]')
    monkeypatch.setenv("dreams_keep_secrets", "true")  # names are case-insensitive
    monkeypatch.setenv("DREAMS_MAX_FUTURE", "2h")
    s = get_settings()
    assert (s.home, s.max_sessions_per_dream, s.allowed_models, s.keep_secrets) == (
        tmp_path, 7, ["claude-sonnet-4-6"], True)
    assert s.max_future.total_seconds() == 7200
    assert get_settings(max_sessions_per_dream=3).max_sessions_per_dream == 3  # arguments win


def test_every_listing_prints_the_list_shape(lake):
    from dreaming.catalog import Catalog
    from dreaming.stores import StoreService

    StoreService(Catalog(lake)).create("s", scope="acme")
    runner = CliRunner()
    for args in (["store", "list"], ["list"], ["sessions"], ["store", "history", "s"],
                 ["fleet", "--scope", "acme", "--all-stores", "--dry-run"]):
        r = runner.invoke(app, [*args, "--json"])
        assert r.exit_code == 0, (args, r.output)
        page = json.loads(r.stdout)
        assert set(page) == {"data", "next_page"} and page["next_page"] is None, args
        assert isinstance(page["data"], list), args
    assert [s["name"] for s in json.loads(runner.invoke(app, ["store", "list", "--json"]).stdout)["data"]] == ["s"]
