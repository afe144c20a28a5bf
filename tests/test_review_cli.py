"""`dreams approve | reject | rollback | store history` through the real entry point (exit codes)."""

from __future__ import annotations

import json
import sys

import pytest

from dreaming.catalog import Catalog
from dreaming.changeset import read_changeset
from dreaming.stores import StoreService
from tests.test_promotion import base_memories, make_dream

pytestmark = pytest.mark.gx


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from dreaming.cli import main

    monkeypatch.setattr(sys, "argv", ["dreams", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_prefect(monkeypatch):
    """Record resume attempts instead of talking to a Prefect server."""
    calls = []
    monkeypatch.setattr("dreaming.cli.cmd_review.prefect_resumer", lambda fr, inp: calls.append((fr, inp)) or False)
    return calls


def test_approve_promotes_and_prints_the_dream(catalog, monkeypatch, capsys, no_prefect):
    d = make_dream(catalog, require_approval=True, state="awaiting_approval")
    code, out, err = run_cli(monkeypatch, capsys, "approve", d.id, "--by", "alice", "--note", "ok", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["promotion"]["state"] == "promoted" and body["promotion"]["decided_by"] == "alice"
    assert Catalog().get_store(d.store_id)["head_version"] == d.candidate_version
    assert no_prefect == []  # no flow run: nothing to resume
    # approving again is a no-op, still exit 0
    code, out, _ = run_cli(monkeypatch, capsys, "approve", d.id)
    assert code == 0 and "already promoted" in out


def test_approve_some_changes(catalog, monkeypatch, capsys, no_prefect):
    d = make_dream(catalog, state="awaiting_approval")
    changes = read_changeset(catalog.settings.dreams_dir / d.id / "changeset.parquet")
    prune = next(c for c in changes if c.op == "prune")
    code, out, err = run_cli(monkeypatch, capsys, "approve", d.id, "--change", prune.change_id, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["promotion"]["accepted_change_ids"] == [prune.change_id]
    head = StoreService(Catalog()).head(d.store_id)[1]
    assert {m.memory_id for m in head} == {m.memory_id for m in base_memories()} - {prune.memory_id}


def test_approve_hands_a_paused_flow_its_input(catalog, monkeypatch, capsys):
    d = make_dream(catalog, state="awaiting_approval")
    catalog.update_dream(d.id, lambda x: setattr(x, "flow_run_id", "fr-123"))
    calls = []
    monkeypatch.setattr("dreaming.cli.cmd_review.prefect_resumer", lambda fr, inp: calls.append((fr, inp)) or True)
    code, out, err = run_cli(monkeypatch, capsys, "approve", d.id, "--by", "alice", "--wait", "0")
    assert code == 0, err
    assert calls == [("fr-123", {"approve": True, "note": "", "change_ids": [], "decided_by": "alice"})]
    assert "resumed flow run fr-123" in out
    assert Catalog().get_store(d.store_id)["head_version"] == d.base_version


def test_reject_with_reason(catalog, monkeypatch, capsys, no_prefect):
    d = make_dream(catalog, state="awaiting_approval")
    code, out, err = run_cli(monkeypatch, capsys, "reject", d.id, "--reason", "too aggressive", "--by", "bob")
    assert code == 0, err
    assert "rejected by bob: too aggressive" in out
    p = Catalog().get_dream(d.id).promotion
    assert (p.state, p.reason) == ("rejected", "too aggressive")
    # now approving it is bad usage: exit 2 with a clear message
    code, out, err = run_cli(monkeypatch, capsys, "approve", d.id)
    assert code == 2 and "not awaiting approval" in err and "rejected" in err


def test_approve_after_the_head_moved_ends_conflict_exit_1(catalog, monkeypatch, capsys, no_prefect):
    d = make_dream(catalog, state="awaiting_approval")
    svc = StoreService(catalog)
    v = svc.write_version(d.store_id, base_memories(2), d.base_version, {"type": "user"}, "hand edit")
    with catalog.tx() as conn:
        catalog.cas_head(conn, d.store_id, d.base_version, v)
    code, out, _ = run_cli(monkeypatch, capsys, "approve", d.id)
    assert code == 1 and "conflict" in out
    assert Catalog().get_store(d.store_id)["head_version"] == v


def test_unknown_dream_and_unknown_change_exit_2(catalog, monkeypatch, capsys, no_prefect):
    code, _, err = run_cli(monkeypatch, capsys, "approve", "drm_nope")
    assert code == 2 and "drm_nope" in err
    d = make_dream(catalog, state="awaiting_approval")
    code, _, err = run_cli(monkeypatch, capsys, "approve", d.id, "--change", "chg_nope")
    assert code == 2 and "chg_nope" in err


def test_rollback_and_history(catalog, monkeypatch, capsys, no_prefect):
    d = make_dream(catalog, state="awaiting_approval")
    assert run_cli(monkeypatch, capsys, "approve", d.id)[0] == 0
    store = Catalog().get_store(d.store_id)
    code, out, err = run_cli(monkeypatch, capsys, "rollback", store["name"], "--to", "1", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["head_version"] == body["version"] == d.candidate_version + 1
    code, out, _ = run_cli(monkeypatch, capsys, "store", "history", store["name"], "--json")
    page = json.loads(out)
    assert page["next_page"] is None  # Anthropic's list shape, like every listing
    hist = page["data"]
    assert [h["version"] for h in hist] == [1, d.candidate_version, body["version"]]
    assert hist[-1]["message"] == "rollback to v1" and hist[-1]["is_head"]
    code, out, _ = run_cli(monkeypatch, capsys, "store", "history", store["name"], "--memory", "/notes/m1.md",
                           "--json")
    assert [h["event"] for h in json.loads(out)["data"]] == ["created", "deleted", "created"]
    code, out, _ = run_cli(monkeypatch, capsys, "store", "history", store["name"])
    assert code == 0 and "rollback" in out  # the table (rich wraps narrow terminals)
    code, _, err = run_cli(monkeypatch, capsys, "rollback", store["name"], "--to", "42")
    assert code == 2 and "no version 42" in err


def test_gate_command_reports_and_renders_data_docs(catalog):
    from typer.testing import CliRunner

    from dreaming.cli import app
    from tests.test_promotion import make_dream

    d = make_dream(catalog)
    out = CliRunner().invoke(app, ["gate", d.id, "--data-docs", "--json"])
    assert out.exit_code == 0, out.output
    import json

    res = json.loads(out.output)
    assert res["success"] and res["data_docs"].endswith("index.html")
    from pathlib import Path

    assert Path(res["data_docs"]).is_file()
    assert (catalog.settings.dreams_dir / d.id / "gate.json").is_file()


def test_diff_prints_the_memory_text_verbatim(catalog, monkeypatch, capsys):
    from tests.test_promotion import ev
    from dreaming.models import Change

    text = "When `book` fails with 'total price is <n>, but paid <n>', run it from `__main__` " + "x" * 120
    d = make_dream(catalog, changes=[Change(op="add", path="/mistakes/price.md", kind="mistake", after=text,
                                            reason="seen twice", evidence=[ev("sesn_a", 1), ev("sesn_b", 2)],
                                            support=2)])
    code, out, err = run_cli(monkeypatch, capsys, "diff", d.id)
    assert code == 0, err
    assert text in out  # no markup eaten, no line wrapped
