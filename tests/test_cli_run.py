"""`dreams run` contract checks through the installed entry point (real exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dreaming.catalog import Catalog
from dreaming.stores import StoreService

DREAMS = str(Path(sys.executable).with_name("dreams"))


def _run(lake, *args, env_extra=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["DREAMS_HOME"] = str(lake.home)
    env.update(env_extra or {})
    return subprocess.run([DREAMS, *args], capture_output=True, text=True, env=env, timeout=120)


def test_claude_without_a_key_fails_before_any_dream_is_recorded(lake):
    StoreService(Catalog(lake)).create("s", scope="acme")
    out = _run(lake, "run", "--store", "s", "--curator", "claude",
               drop=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"))
    assert out.returncode == 2, out.stderr
    assert "ANTHROPIC_API_KEY" in out.stderr
    assert Catalog(lake).list_dreams(include_archived=True) == []


def test_bad_usage_exits_2_with_a_message(lake):
    StoreService(Catalog(lake)).create("s", scope="acme")
    out = _run(lake, "run", "--store", "s", "--instructions", "x" * 4097)
    assert out.returncode == 2 and "4096" in out.stderr
    out = _run(lake, "run", "--store", "nope")
    assert out.returncode == 2 and "no memory store 'nope'" in out.stderr
    out = _run(lake, "run", "--store", "s", "--since", "7d", "--all")
    assert out.returncode == 2 and "choose one of" in out.stderr
    assert Catalog(lake).list_dreams(include_archived=True) == []


def test_a_missing_session_exits_2_before_any_dream_or_flow_run(lake):
    StoreService(Catalog(lake)).create("s", scope="acme")
    out = _run(lake, "run", "--store", "s", "--session", "sesn_DOESNOTEXIST")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "sesn_DOESNOTEXIST" in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert Catalog(lake).list_dreams(include_archived=True) == []  # nothing recorded, nothing retried


def test_version(lake):
    from importlib.metadata import version

    out = _run(lake, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"dreams {version('dreams')}"


def test_commands_that_would_do_nothing_say_so_and_exit_2(lake, tmp_path):
    """Nothing to do is bad input, never a silent success (issue 14, finding 9)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _run(lake, "ingest", str(empty), "--tenant", "acme")
    assert out.returncode == 2 and "no transcript files in" in out.stderr, out.stdout + out.stderr
    out = _run(lake, "list", "--status", "bogus")
    assert out.returncode == 2 and "not a dream status" in out.stderr
    out = _run(lake, "fleet", "--scope", "nobody")
    assert out.returncode == 2 and "no store matches --scope nobody" in out.stderr
    StoreService(Catalog(lake)).create("s", scope="acme")  # a store, but nothing new to dream
    out = _run(lake, "fleet", "--scope", "acme")
    assert out.returncode == 0 and "nothing to do" in out.stderr, out.stdout + out.stderr
    assert Catalog(lake).list_dreams(include_archived=True) == []


def test_nothing_to_dream_says_so_exits_0_and_records_nothing(lake):
    """`dreams run --store S` when every session of the scope is dreamt over (here: none at all): no empty
    dream, no copy of the head promoted — a message and exit 0 (a cron job's quiet night is no failure)."""
    import json

    store = StoreService(Catalog(lake)).create("s", scope="acme")
    out = _run(lake, "run", "--store", "s", "--all")
    assert out.returncode == 0, out.stderr
    assert "nothing to dream: no new session of store s's scope acme" in out.stderr
    out = _run(lake, "run", "--store", "s", "--since", "7d", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["type"] == "nothing_to_dream", out
    assert Catalog(lake).list_dreams(include_archived=True) == []
    assert Catalog(lake).get_store("s")["head_version"] == store["head_version"]
