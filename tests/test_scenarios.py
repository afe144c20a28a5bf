"""The planted-truth scenario generator, memory-file front matter, and the bench lake generator."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dreaming.errors import BadInput
from dreaming.scenarios import generate_bench_lake, generate_scenario, load_scenario
from dreaming.stores import StoreService, read_memory_dir, split_front_matter

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def scen(tmp_path_factory):
    return generate_scenario(tmp_path_factory.mktemp("scen") / "demo", seed=7)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path, scen):
    a = generate_scenario(tmp_path / "a", seed=7)
    assert _files(a.root) == _files(scen.root)
    b = generate_scenario(tmp_path / "b", seed=8)
    assert _files(b.root).keys() != _files(a.root).keys()  # session ids derive from the seed
    assert b.truth["poison"][0]["sessions"] != a.truth["poison"][0]["sessions"]


def test_existing_folder_needs_overwrite(tmp_path):
    generate_scenario(tmp_path / "s", seed=1, name="small")
    with pytest.raises(BadInput, match="not empty"):
        generate_scenario(tmp_path / "s", seed=1, name="small")
    again = generate_scenario(tmp_path / "s", seed=2, name="small", overwrite=True)
    assert again.seed == 2 and load_scenario(tmp_path / "s").truth == again.truth
    with pytest.raises(BadInput, match="unknown scenario"):
        generate_scenario(tmp_path / "x", name="nope")
    with pytest.raises(BadInput, match="unknown size"):
        generate_scenario(tmp_path / "x", sesions=3)


# --- file formats --------------------------------------------------------------------------------


def test_anthropic_files_are_session_events(scen):
    files = scen.transcripts["anthropic"]
    assert files
    for f in files:
        events = _lines(f)
        sid = events[0]["session_id"]
        assert sid.startswith("sesn_") and f.name.endswith(f"{sid}.jsonl")
        seen_tool_uses = set()
        times = []
        for e in events:
            assert e["id"].startswith("sevt_") and e["session_id"] == sid and RFC3339.match(e["processed_at"])
            times.append(_ts(e["processed_at"]))
            if e["type"] in ("user.message", "agent.message"):
                assert e["content"][0]["type"] == "text" and e["content"][0]["text"]
            elif e["type"] == "agent.tool_use":
                assert isinstance(e["name"], str) and isinstance(e["input"], dict)
                seen_tool_uses.add(e["id"])
            elif e["type"] == "agent.tool_result":
                assert e["tool_use_id"] in seen_tool_uses
                assert e["content"][0]["type"] == "text" and isinstance(e["is_error"], bool)
            elif e["type"] == "span.outcome_evaluation_end":
                assert e["result"] in ("satisfied", "failed")
            else:
                assert e["type"] in ("session.status_idle", "session.error")
        assert times == sorted(times)
        assert len({e["id"] for e in events}) == len(events)


def test_claude_code_files_are_session_jsonl(scen):
    files = scen.transcripts["claude-code"]
    assert files
    for f in files:
        lines = _lines(f)
        parent = None
        tool_ids = set()
        for obj in lines:
            assert obj["type"] in ("user", "assistant") and obj["parentUuid"] == parent
            assert obj["sessionId"] == lines[0]["sessionId"] and RFC3339.match(obj["timestamp"])
            assert obj["message"]["role"] == obj["type"]
            for block in obj["message"]["content"]:
                if block["type"] == "tool_use":
                    assert block["id"].startswith("toolu_") and isinstance(block["input"], dict)
                    tool_ids.add(block["id"])
                elif block["type"] == "tool_result":
                    assert block["tool_use_id"] in tool_ids and isinstance(block["is_error"], bool)
                    assert isinstance(block["content"], str)
                else:
                    assert block["type"] == "text" and block["text"]
            parent = obj["uuid"]


# --- truth ---------------------------------------------------------------------------------------


def test_truth_is_consistent_with_the_files(scen):
    t = scen.truth
    rows = {r["session_id"]: r for r in t["sessions"]}
    assert len(rows) == len(t["sessions"]) == len(scen.files)
    assert {t_: sum(1 for r in rows.values() if r["tenant"] == t_) for t_ in t["tenants"]} == t["counts"]["sessions"]
    for r in rows.values():
        assert (scen.root / r["file"]).is_file() and r["file"].startswith(f"{r['tenant']}/{r['format']}/{r['agent']}/")
    # every cited event exists in its session's file, at the cited time
    ids_in_file = {}
    for r in rows.values():
        ids_in_file[r["session_id"]] = {(e.get("id") or e.get("uuid")): (e.get("processed_at") or e.get("timestamp"))
                                        for e in _lines(scen.root / r["file"])}
    cited = [ev for fam in ("mistakes", "preferences", "poison") for p in t[fam] for ev in p["evidence"]]
    cited += [ev for m in t["mistakes"] for ev in m["workaround_evidence"]]
    assert len(cited) > 30
    for ev in cited:
        assert ids_in_file[ev["session_id"]][ev["event_id"]] == ev["ts"]

    primary = t["primary_tenant"]
    for m in [*t["mistakes"], *t["preferences"], *t["workflows"]]:
        assert all(rows[s]["tenant"] == m["tenant"] for s in m["sessions"])
        if m["tenant"] == primary and m["id"].startswith(("mistake", "pref", "workflow")):
            assert m["support"] == len(m["sessions"]) >= 3 and m["promote"]
    for w in t["workflows"]:
        assert len(w["agents"]) >= 2 and all(rows[s]["success"] for s in w["sessions"])
    for m in t["mistakes"]:
        if m["tenant"] == primary and m["id"].startswith("mistake"):
            assert len(m["workaround_evidence"]) == m["support"] and len(m["agents"]) >= 2
    for o in t["one_offs"]:
        assert len(o["sessions"]) == 1 and rows[o["sessions"][0]]["tenant"] == primary
    ledger_other = [m for m in t["mistakes"] if m["id"] == "oneoff:ledger-timeout" and m["tenant"] != primary]
    assert ledger_other and ledger_other[0]["support"] >= 2  # recurs only outside the primary scope

    poison = {p["id"]: p for p in t["poison"]}
    assert {p["channel"] for p in poison.values()} == {"tool_output", "fetched_page", "other_tenant", "user_message",
                                                     "session_error"}
    for p in poison.values():
        assert len(p["sessions"]) >= 3
        for s in p["sessions"]:
            assert rows[s]["tenant"] == p["tenant"]
            assert p["marker"] in (scen.root / rows[s]["file"]).read_text(encoding="utf-8")
    assert poison["poison:other-tenant"]["tenant"] != primary


def test_changed_preference_is_ingested_out_of_time_order(scen):
    rows = {r["session_id"]: r for r in scen.truth["sessions"]}
    order = [str(p.relative_to(scen.root)) for p in scen.files]
    assert order == scen.truth["ingest_order"]
    indent = next(c for c in scen.truth["changed_preferences"] if c["key"] == "pref:indentation")
    old, new = indent["old"], indent["new"]
    assert len(old["sessions"]) >= 2 and len(new["sessions"]) >= 3 and indent["new_ingested_before_old"]
    assert max(_ts(e["ts"]) for e in old["evidence"]) < min(_ts(e["ts"]) for e in new["evidence"])
    assert all(rows[n]["batch"] < rows[o]["batch"] for n in new["sessions"] for o in old["sessions"])
    # some newer-value file is ingested before an older-value file
    pos = {f: i for i, f in enumerate(order)}
    assert any(pos[rows[n]["file"]] < pos[rows[o]["file"]] for n in new["sessions"] for o in old["sessions"])
    # the store holds the older value, dated before every session
    first_session = min(_ts(r["started_at"]) for r in rows.values())
    assert _ts(indent["store_last_seen"]) < first_session


def test_store_folder_matches_truth(scen):
    memories = {m.path: m for m in read_memory_dir(scen.store_dir)}
    truth = scen.truth["store"]
    assert set(memories) == {r["path"] for r in truth["memories"]}
    for r in truth["memories"]:
        m = memories[r["path"]]
        assert m.content == r["content"] and m.key == r["key"] and m.pinned == r["pinned"]
    pinned = [memories[p] for p in truth["pinned"]]
    assert pinned and all(m.pinned for m in pinned)
    asof = _ts(scen.truth["as_of"])
    assert all(memories[p].valid_until < asof for p in truth["expired"])
    for g in truth["duplicate_groups"]:
        kinds = {memories[p].kind for p in g["paths"]}
        assert len(g["paths"]) >= 2 and len(kinds) == 1
    assert not set(truth["keep_worthy"]) & set(truth["may_remove"])


def test_paraphrases_are_near_and_lookalikes_differ_in_numbers_or_negation(scen):
    rapidfuzz = pytest.importorskip("rapidfuzz")
    memories = {m.path: m.content for m in read_memory_dir(scen.store_dir)}
    for g in scen.truth["store"]["duplicate_groups"]:
        a, b = (memories[p].lower() for p in g["paths"][:2])
        assert rapidfuzz.fuzz.token_set_ratio(a, b) >= 90
    for g in scen.truth["store"]["distinct_groups"]:
        a, b = (memories[p] for p in g["paths"][:2])
        nums = re.findall(r"\d+", a) != re.findall(r"\d+", b)
        negation = ("not " in a.lower()) != ("not " in b.lower())
        assert nums or negation


# --- ingest (the adapters are another module) -----------------------------------------------------


def test_ingest_reads_the_whole_scenario(scen, catalog, lake):
    pytest.importorskip("dreaming.ingest")
    from dreaming.lake import Lake

    reports = scen.ingest(catalog)
    failed = [f for r in reports for f in r.files if f.status != "ingested"]
    assert not failed, failed
    with Lake(lake) as lk:
        got = dict(lk.con.execute("SELECT tenant, count(DISTINCT session_id) FROM events GROUP BY 1").fetchall())
        assert got == scen.truth["counts"]["sessions"]
        sessions = {r["session_id"]: r for r in lk.sessions()}
        assert set(sessions) == {r["session_id"] for r in scen.truth["sessions"]}
        for r in scen.truth["sessions"]:
            assert sessions[r["session_id"]]["agent_id"] == r["agent"]
        have = {row[0] for row in lk.con.execute("SELECT event_id FROM events").fetchall()}
    cited = [ev["event_id"] for m in scen.truth["mistakes"] for ev in m["evidence"]]
    assert cited and set(cited) <= have


# --- front matter ---------------------------------------------------------------------------------


def test_front_matter_fields_and_plain_files(tmp_path):
    d = tmp_path / "mem"
    (d / "preferences").mkdir(parents=True)
    (d / "preferences" / "indentation.md").write_text(
        "---\nkey: pref:indentation\npinned: true\nvalid_until: 2026-01-01\nlast_seen: 2025-12-01T10:00:00Z\n"
        "name: ignored by us\n---\nUse 4 spaces.\n")
    (d / "notes.md").write_text("---\nNot front matter, a Markdown rule\n---\nbody\n")
    (d / "facts").mkdir()
    (d / "facts" / "plain.md").write_text("Plain file.\n")
    (d / "facts" / "empty.md").write_text("---\n---\n---\nstarts with a rule\n")
    ms = {m.path: m for m in read_memory_dir(d)}
    m = ms["/preferences/indentation.md"]
    assert (m.content, m.key, m.pinned, m.kind) == ("Use 4 spaces.\n", "pref:indentation", True, "preference")
    assert m.valid_until == datetime(2026, 1, 1, tzinfo=UTC) and m.last_seen == datetime(2025, 12, 1, 10, tzinfo=UTC)
    assert ms["/notes.md"].content.startswith("---\nNot front matter") and ms["/notes.md"].key is None
    assert (ms["/facts/plain.md"].content, ms["/facts/plain.md"].kind, ms["/facts/plain.md"].pinned) == \
        ("Plain file.\n", "fact", False)
    assert ms["/facts/empty.md"].content == "---\nstarts with a rule\n"


@pytest.mark.parametrize(("block", "field", "line"), [
    ("key: k\npinned: maybe\n", "pinned", 3), ("kind: opinion\n", "kind", 2),
    ("valid_until: next week\n", "valid_until", 2), ("confidence: 2\n", "confidence", 2),
])
def test_bad_front_matter_names_file_line_and_field(tmp_path, block, field, line):
    f = tmp_path / "m.md"
    f.write_text(f"---\n{block}---\nbody\n")
    with pytest.raises(BadInput) as e:
        split_front_matter(f.read_text(), str(f))
    assert e.value.field == field and e.value.line == line and e.value.file == str(f)
    with pytest.raises(BadInput, match="not valid YAML"):
        split_front_matter("---\nkey: [unclosed\n---\nbody\n", "x.md")


def test_export_writes_front_matter_that_create_reads_back(tmp_path, catalog, scen):
    svc = StoreService(catalog)
    store = svc.create_from_dir("demo", scen.store_dir, scope=scen.scope)
    out = tmp_path / "export"
    svc.export(store["id"], out)
    plain = (out / "facts" / "repo-layout.md").read_text()
    assert not plain.startswith("---")  # memories without key/pinned/valid_until stay plain
    again = svc.create_from_dir("demo-again", out, scope=scen.scope)
    fields = ("path", "content", "kind", "key", "pinned", "valid_until")
    before = sorted(tuple(getattr(m, f) for f in fields) for m in svc.read_version(store["id"]))
    after = sorted(tuple(getattr(m, f) for f in fields) for m in svc.read_version(again["id"]))
    assert before == after
    assert any(k for _, _, _, k, _, _ in after) and any(p for *_, p, _ in after) and any(v for *_, v in after)


# --- bench lake -----------------------------------------------------------------------------------


def test_bench_lake_writes_sessions_as_parquet(lake):
    from dreaming.lake import Lake

    b = generate_bench_lake(lake, 300, seed=3)
    assert b.sessions == 300 and sum(b.tenants.values()) == 300 and b.paths
    assert b.families.get("mistake:pip-externally-managed", 0) >= 3
    with Lake(lake) as lk:
        n, events, per = lk.con.execute(
            "SELECT count(DISTINCT session_id), count(*), count(*) / count(DISTINCT session_id) FROM events"
        ).fetchall()[0]
        assert (n, events) == (300, b.events) and 20 <= per <= 40
        dangling = lk.con.execute(
            "SELECT count(*) FROM events r WHERE r.type = 'agent.tool_result' AND NOT EXISTS "
            "(SELECT 1 FROM events u WHERE u.event_id = r.tool_use_id AND u.type = 'agent.tool_use')"
        ).fetchall()[0][0]
        assert dangling == 0
        errs = lk.con.execute("SELECT count(DISTINCT session_id) FROM events WHERE is_error AND tenant = 'acme' "
                              "AND text LIKE '%externally-managed-environment%'").fetchall()[0][0]
        assert errs == b.families["mistake:pip-externally-managed"]


def test_bench_lake_is_deterministic(tmp_path):
    from dreaming.settings import Settings

    import pyarrow.parquet as pq

    tables = []
    for name in ("a", "b"):
        s = Settings(home=tmp_path / name)
        b = generate_bench_lake(s, 120, seed=5)
        tables.append([pq.read_table(p) for p in b.paths])
    assert [t.equals(u) for t, u in zip(*tables, strict=True)] == [True] * len(tables[0])
