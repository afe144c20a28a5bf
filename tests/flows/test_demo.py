"""`dreams demo` — the README's first command — runs end to end and finds what was planted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytestmark = [pytest.mark.flow, pytest.mark.gx]


def test_demo_runs_end_to_end_and_promotes(prefect_harness, tmp_path, monkeypatch):
    from dreaming.cli import app

    monkeypatch.setenv("DREAMS_HOME", str(tmp_path / "lake"))
    home = tmp_path / "lake" / "demo"
    for attempt in range(2):  # a second run rebuilds the demo lake from scratch
        out = CliRunner().invoke(app, ["demo", "--json"])
        assert out.exit_code == 0, out.output
        d = json.JSONDecoder().raw_decode(out.output[out.output.index("{"):])[0]["dream"]
        assert d["status"] == "completed" and d["promotion"]["state"] == "promoted"
        assert d["counts"]["merge"] >= 1 and d["counts"]["supersede"] >= 1 and d["counts"]["add"] >= 3
    monkeypatch.setenv("DREAMS_HOME", str(home))
    from dreaming.dreams import DreamService

    paths = {c.path for c in DreamService().changes(d["id"]) if c.op == "add"}
    assert any(p.startswith("/mistakes/") for p in paths)
    assert any(p.startswith("/workflows/") for p in paths)
    assert any(p.startswith("/preferences/") for p in paths)
    assert (home / ".dreams-demo").exists()


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    from dreaming.cli import app

    mine = tmp_path / "precious"
    mine.mkdir()
    (mine / "notes.md").write_text("keep me")
    out = CliRunner().invoke(app, ["demo", "--home", str(mine)])
    assert out.exit_code == 2
    assert (mine / "notes.md").read_text() == "keep me"
