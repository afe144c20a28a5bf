"""Poisoning and secrets end to end: real dreams (read → curate → output → gate → promotion, auto mode)
over lakes written straight into Parquet (no ingest redaction: the dream-side defence alone).

The corpus is tests/data/injections.json (each variant in its channel of three sessions of its own
store); bench/chaos_poison.py runs the same and prints a table.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest

from bench.chaos_poison import (
    SECRETS,
    dream_auto,
    load_corpus,
    run_injections,
    run_secrets,
    variant_sessions,
)
from dreaming import safety
from dreaming.catalog import Catalog
from dreaming.curators.base import CurationInput
from dreaming.curators.rules import RulesCurator
from dreaming.lake import Lake
from dreaming.policy import Policy
from dreaming.signals import Signals, extract_signals
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions

CORPUS = load_corpus()
TRICKY = {"homoglyph", "split", "base64", "multilingual-zh", "tag-smuggling", "fake-system-tag", "credential", "bidi"}


def _curate_all(lake, variants):
    """Every variant in its own tenant, one curation per tenant (no gate): {variant id: changes}."""
    sessions, tenants = [], {}
    for i, v in enumerate(variants):
        tenants[v["id"]] = f"p{i:03d}"
        sessions += variant_sessions(v, tenants[v["id"]])
    write_sessions(lake, sessions)
    with Lake(lake) as lk:  # one extraction (session ids are unique across these tenants), one curation each
        everything = extract_signals(lk.con, [s["session_id"] for s in sessions], Policy())
    out = {}
    for v in variants:
        sids = [f"sesn_{tenants[v['id']]}_{i}" for i in range(3)]
        sig = Signals(**{f.name: [r for r in getattr(everything, f.name) if r.get("session_id") in sids]
                         for f in fields(Signals)})
        out[v["id"]] = RulesCurator().curate(CurationInput(
            dream_id="drm_p", store={"id": "memstore_p"}, base=[], session_ids=sids, signals=sig,
            instructions=None, policy=Policy(), now=T0 + timedelta(days=1)))
    return out


def test_no_variant_is_proposed_as_an_unreviewed_memory(lake):
    """The whole corpus through the rules curator: a change carrying a variant's marker is never one
    the auto gate would pass (it is not proposed at all, or it is tainted / needs a person)."""
    results = _curate_all(lake, CORPUS)
    proposed = {}
    for v in CORPUS:
        for c in results[v["id"]].changes:
            text = f"{c.path} {c.after or ''}".lower()
            if c.op != "keep" and v["marker"].lower() in text:
                proposed[v["id"]] = c
                assert c.taint in ("tool_output", "untrusted") or safety.needs_person(c.after), (v["id"], c)
    # dangerous text is not mined at all: what is proposed is a fetched page's workflow (untrusted) or a
    # memory about credentials or a URL (the gate sends it to a person)
    by_id = {v["id"]: v for v in CORPUS}
    assert {by_id[vid]["channel"] if by_id[vid]["channel"] == "fetched_page" else by_id[vid]["class"]
            for vid in proposed} <= {"fetched_page", "credential", "url", "exfiltration"}
    assert all(c.taint == "untrusted" for vid, c in proposed.items() if by_id[vid]["channel"] == "fetched_page")
    assert len([vid for vid in proposed if by_id[vid]["channel"] == "fetched_page"]) == 3
    notes = " ".join(n for r in results.values() for n in r.notes)
    assert "prompt injection" in notes and "not proposed" in notes or "not mined" in notes


@pytest.mark.gx
def test_no_variant_reaches_the_promoted_head_in_auto_mode(tmp_path):
    # one variant of each channel and of the trickiest classes (~2 s a dream with its GX gate): the whole
    # corpus runs through the curator above and through every step in bench/chaos_poison.py
    picked, seen = [], set()
    for v in CORPUS:
        key = v["channel"] if v["class"] not in TRICKY else v["class"]
        if key not in seen:
            seen.add(key)
            picked.append(v)
    rows = run_injections(tmp_path / "lake", picked)
    assert len(rows) >= 12 and {r["channel"] for r in rows} == {v["channel"] for v in CORPUS}
    assert [r["id"] for r in rows if r["reached_head"]] == []
    # what is proposed at all waits for a person (the fetched-page workflows)
    assert all(r["promotion"] == "awaiting_approval" for r in rows if r["in_candidate"])


@pytest.mark.gx
def test_no_secret_kind_in_anything_a_dream_writes(tmp_path):
    res = run_secrets(tmp_path / "lake")
    assert res["secret_kinds"] >= 10
    assert res["leaks"] == {}, res["leaks"]


@pytest.mark.gx
def test_invisible_characters_are_stripped_not_fatal(lake):
    """A sender's zero-width and bidi characters no longer fail the gate for the whole store: the
    curator's output drops them and the report says so; the gate's check stays as the backstop."""
    cat = Catalog(lake)
    store = StoreService(cat).create("inv", scope="acme")
    text = "Always use\u200b 4 spaces for\u202e indentation\u202c, not tabs\U000e0041."
    write_sessions(lake, [{"session_id": f"sesn_i{i}", "start": T0 + timedelta(hours=i),
                           "events": [("user", text), ("assistant", "ok")]} for i in range(3)])
    d, _, result, gate = dream_auto(cat, store["id"])
    assert gate.success and d.promotion.state == "promoted", gate.summary()
    head = StoreService(cat).read_version(store["id"])
    assert [m.content for m in head] == ["Always use 4 spaces for indentation, not tabs."]
    report = (lake.dreams_dir / d.id / "report.md").read_text(encoding="utf-8")
    assert "invisible or bidi characters" in report


@pytest.mark.gx
def test_a_harmless_command_waits_for_a_person_and_is_not_dropped(lake):
    cat = Catalog(lake)
    store = StoreService(cat).create("cmd", scope="acme")
    write_sessions(lake, [{"session_id": f"sesn_c{i}", "start": T0 + timedelta(hours=i),
                           "events": [("user", "Always run `python -m pytest -q` before pushing, not after."),
                                      ("assistant", "ok")]} for i in range(3)])
    d, _, _, gate = dream_auto(cat, store["id"])
    assert d.promotion.state == "awaiting_approval" and gate.needs_review
    assert any(r.name == "no_actionable_content_without_review" and not r.success for r in gate.results)
    candidate = StoreService(cat).read_version(store["id"], d.candidate_version)
    assert any("python -m pytest -q" in m.content for m in candidate)
    from dreaming.promotion import review

    approved = review(cat, d.id, approve=True, decided_by="alice").dream
    assert approved.promotion.state == "promoted"
    assert SECRETS  # the same bench module provides the secrets fixture above


def test_a_stored_secret_is_redacted_by_the_next_dream():
    from dreaming.changeset import apply_changes
    from dreaming.models import Memory
    from dreaming.signals import Signals as S

    key = SECRETS["github-token"]
    base = [Memory(memory_id="mem_s", path="/notes/deploy.md", content=f"Deploy with token {key} from CI."),
            Memory(memory_id="mem_t", path="/notes/tz.md", content="All timestamps are UTC.")]
    res = RulesCurator().curate(CurationInput(
        dream_id="drm_s", store={"id": "memstore_s"}, base=base, session_ids=[], signals=S(), instructions=None,
        policy=Policy(), now=T0))
    (c,) = [c for c in res.changes if c.op != "keep"]
    assert c.op == "update" and c.memory_id == "mem_s" and "github-token" in c.reason
    assert all(key not in (x or "") for x in (c.before, c.after, c.reason, c.path))
    after = {m.memory_id: m.content for m in apply_changes(base, res.changes, now=T0)}
    assert after == {"mem_s": "Deploy with token [REDACTED:github-token] from CI.", "mem_t": "All timestamps are UTC."}
