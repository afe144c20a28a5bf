"""Promotion: compare-and-swap of the head, create_new forks, partial acceptance, rejection, races,
crash safety, rollback and history. Dreams are built directly (store + candidate version +
changeset + a completed Dream row), without the dream pipeline.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pyarrow as pa
import pytest

from dreaming import ids
from dreaming.atomic import write_parquet_atomic
from dreaming.changeset import apply_changes, finalize, write_changeset
from dreaming.errors import BadInput, InvalidState, NotFound
from dreaming.models import Change, Dream, Memory, PromotionState, Source
from dreaming.schema import CHANGE_SCHEMA, MEMORY_SCHEMA
from dreaming.stores import StoreService, version_relpath
from tests.factories import T0
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

lake = lake_both  # every test here runs on SQLite and on PostgreSQL (tests/pg.py)

pytestmark = pytest.mark.gx

INPUTS = ["sesn_a", "sesn_b"]


def ev(sid: str = "sesn_a", n: int = 0) -> Source:
    return Source(session_id=sid, event_id=f"sevt_{sid}_{n}", ts=T0 + timedelta(minutes=n))


def base_memories(n: int = 8) -> list[Memory]:
    return [
        Memory(memory_id=f"mem_{i}", path=f"/notes/m{i}.md", content=f"fact number {i}", kind="fact",
               sources=[ev("sesn_0", i)], taint="user")
        for i in range(n)
    ]


def default_changes() -> list[Change]:
    return [
        Change(op="update", memory_id="mem_0", before="fact number 0", after="fact number 0, confirmed",
               reason="seen again", evidence=[ev("sesn_a", 1)]),
        Change(op="add", path="/workflows/uv.md", kind="workflow", after="use uv, never pip",
               reason="user said so twice", evidence=[ev("sesn_a", 2), ev("sesn_b", 3)], support=2, taint="user"),
        Change(op="prune", memory_id="mem_1", before="fact number 1", reason="contradicted",
               evidence=[ev("sesn_b", 4)]),
        Change(op="keep", memory_id="mem_2", reason="still true"),
    ]


def write_raw_version(catalog, store_id: str, rows: list[dict], parent: int | None, dream_id: str) -> int:
    """A version file written straight from rows (bypasses the models: lets tests store bad data)."""
    v = catalog.reserve_version(store_id, parent, {"type": "dream", "id": dream_id}, "raw candidate")
    rel = version_relpath(store_id, v)
    path = catalog.settings.home / rel
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=MEMORY_SCHEMA), path, catalog.settings.staging_dir)
    with catalog.tx() as conn:
        catalog.finish_version(conn, store_id, v, rel, ids.sha256_file(path), len(rows))
    return v


def make_dream(
    catalog,
    *,
    store: dict | None = None,
    base: list[Memory] | None = None,
    changes: list[Change] | None = None,
    candidate_rows=None,  # callable(rows) -> rows, applied to the candidate before it is stored
    change_rows=None,  # callable(rows) -> rows, applied to the changeset before it is stored
    behavior: str = "update_existing",
    require_approval: bool = False,
    state: str = "not_requested",
    session_ids: list[str] | None = None,
) -> Dream:
    svc = StoreService(catalog)
    if store is None:
        store = svc.create(f"store-{ids.new_id('t')[-8:].lower()}", scope="acme",
                           memories=base_memories() if base is None else base)
    store = catalog.get_store(store["id"])
    base_mems = svc.read_version(store["id"], store["head_version"])
    dream_id = ids.new_id(ids.DREAM)
    changes = finalize(default_changes() if changes is None else changes, dream_id)
    candidate = apply_changes(base_mems, changes)
    if candidate_rows is None:
        version = svc.write_version(store["id"], candidate, store["head_version"], {"type": "dream", "id": dream_id},
                                    f"dream {dream_id} candidate")
    else:
        rows = candidate_rows([m.model_dump() for m in candidate])
        version = write_raw_version(catalog, store["id"], rows, store["head_version"], dream_id)
    cs = catalog.settings.dreams_dir / dream_id / "changeset.parquet"
    if change_rows is None:
        write_changeset(changes, cs, catalog.settings.staging_dir)
    else:
        rows = change_rows([c.model_dump() for c in changes])
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=CHANGE_SCHEMA), cs, catalog.settings.staging_dir)
    d = Dream(
        id=dream_id, status="completed", store_id=store["id"], session_ids=session_ids or INPUTS,
        base_version=store["head_version"], candidate_version=version,
        output_behavior={"type": behavior}, require_approval=require_approval,
        promotion=PromotionState(state=state),
    )
    catalog.insert_dream(d)
    return d


def hashes(memories: list[Memory]) -> set[tuple]:
    return {(m.memory_id, m.path, m.content_sha256) for m in memories}


# --- update_existing ------------------------------------------------------------------------------


def test_clean_update_existing_moves_head_and_records_decision(catalog):
    d = make_dream(catalog)
    out = promote_and_check(catalog, d)
    store = catalog.get_store(d.store_id)
    assert store["head_version"] == d.candidate_version == out.promotion.promoted_version
    assert out.promotion.decided_by == "auto" and out.promotion.decided_at is not None
    assert out.promotion.gate["success"] is True and out.promotion.gate["mode"] == "auto"
    assert out.outputs == [{"type": "memory_store", "memory_store_id": d.store_id}]
    assert (catalog.settings.dreams_dir / d.id / "gate.json").exists()
    # never promote twice: the second call is a no-op that returns the promoted dream
    again = __import__("dreaming.promotion", fromlist=["promote"]).promote(catalog, d.id, "someone-else")
    assert again.promotion.decided_by == "auto"
    assert catalog.get_store(d.store_id)["head_version"] == d.candidate_version


def promote_and_check(catalog, d: Dream) -> Dream:
    from dreaming.promotion import promote

    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "promoted", out.promotion.reason
    return out


def test_head_moved_since_base_ends_conflict_and_changes_nothing(catalog):
    from dreaming.promotion import promote

    d = make_dream(catalog)
    svc = StoreService(catalog)
    other = svc.write_version(d.store_id, base_memories(3), d.base_version, {"type": "user"}, "manual edit")
    with catalog.tx() as conn:
        catalog.cas_head(conn, d.store_id, d.base_version, other)
    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "conflict"
    assert "somebody promoted first" in out.promotion.reason
    assert catalog.get_store(d.store_id)["head_version"] == other
    with pytest.raises(InvalidState, match="conflict"):
        promote(catalog, d.id, "auto")


def test_two_dreams_racing_on_one_store_exactly_one_wins(catalog):
    from dreaming.gate import gate_dream
    from dreaming.promotion import promote

    a = make_dream(catalog)
    store = catalog.get_store(a.store_id)
    b = make_dream(catalog, store=store, changes=[Change(op="add", path="/b.md", after="b", evidence=[ev()])])
    assert a.base_version == b.base_version
    for d in (a, b):  # gate first (sequentially), then race on the compare-and-swap only
        assert gate_dream(catalog, d.id).success
    barrier = threading.Barrier(2)
    results: dict[str, Dream] = {}

    def go(d: Dream) -> None:
        barrier.wait()
        results[d.id] = promote(catalog, d.id, f"racer-{d.id[-4:]}")

    threads = [threading.Thread(target=go, args=(d,)) for d in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = sorted(r.promotion.state for r in results.values())
    assert states == ["conflict", "promoted"]
    winner = next(r for r in results.values() if r.promotion.state == "promoted")
    assert catalog.get_store(a.store_id)["head_version"] == winner.candidate_version


def test_crash_inside_the_promotion_transaction_leaves_head_and_dream_unchanged(catalog, monkeypatch):
    from dreaming.promotion import promote

    d = make_dream(catalog)
    real = catalog.save_dream

    def crash(conn, dream):
        raise RuntimeError("power cut")

    monkeypatch.setattr(catalog, "save_dream", crash)
    with pytest.raises(RuntimeError):
        promote(catalog, d.id, "auto")
    assert catalog.get_store(d.store_id)["head_version"] == d.base_version  # CAS rolled back with the tx
    assert catalog.get_dream(d.id).promotion.state != "promoted"
    monkeypatch.setattr(catalog, "save_dream", real)
    assert promote(catalog, d.id, "auto").promotion.state == "promoted"  # a retry completes it


# --- create_new -----------------------------------------------------------------------------------


def test_create_new_forks_a_store_and_leaves_the_input_untouched(catalog):
    from dreaming.promotion import promote

    d = make_dream(catalog, behavior="create_new")
    svc = StoreService(catalog)
    before = catalog.get_store(d.store_id)
    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "promoted"
    new_id = out.promotion.target_store_id
    assert new_id != d.store_id and out.outputs == [{"type": "memory_store", "memory_store_id": new_id}]
    new = catalog.get_store(new_id)
    assert new["head_version"] == 1
    assert new["name"] == f"{before['name']}-{d.id[-8:].lower()}"
    assert new["forked_from"] == {"store_id": d.store_id, "version": d.base_version, "dream_id": d.id}
    assert hashes(svc.read_version(new_id, 1)) == hashes(svc.read_version(d.store_id, d.candidate_version))
    assert catalog.get_store(d.store_id)["head_version"] == before["head_version"]


def test_create_new_crash_before_commit_creates_no_store(catalog, monkeypatch):
    from dreaming.promotion import promote

    d = make_dream(catalog, behavior="create_new")
    n_stores = len(catalog.list_stores())
    real = catalog.save_dream
    monkeypatch.setattr(catalog, "save_dream", lambda conn, dream: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        promote(catalog, d.id, "auto")
    assert len(catalog.list_stores()) == n_stores  # store row, version row and head all rolled back
    monkeypatch.setattr(catalog, "save_dream", real)
    out = promote(catalog, d.id, "auto")
    assert out.promotion.state == "promoted" and len(catalog.list_stores()) == n_stores + 1


# --- review: approval, partial acceptance, rejection ----------------------------------------------


def test_partial_acceptance_builds_gates_and_promotes_only_the_accepted_changes(catalog):
    from dreaming.changeset import read_changeset
    from dreaming.promotion import promote

    d = make_dream(catalog, require_approval=True, state="awaiting_approval")
    changes = read_changeset(catalog.settings.dreams_dir / d.id / "changeset.parquet")
    add = next(c for c in changes if c.op == "add")
    out = promote(catalog, d.id, "alice", accepted_change_ids=[add.change_id], reason="only the new workflow")
    assert out.promotion.state == "promoted"
    assert out.promotion.accepted_change_ids == [add.change_id]
    assert out.promotion.decided_by == "alice" and out.promotion.reason == "only the new workflow"
    v = out.promotion.promoted_version
    assert v not in (d.base_version, d.candidate_version)
    assert catalog.get_store(d.store_id)["head_version"] == v
    svc = StoreService(catalog)
    promoted = {m.path: m.content for m in svc.read_version(d.store_id, v)}
    base = {m.path: m.content for m in svc.read_version(d.store_id, d.base_version)}
    assert promoted == {**base, "/workflows/uv.md": "use uv, never pip"}  # no update, no prune
    reviewed = read_changeset(catalog.settings.dreams_dir / d.id / "changeset.reviewed.parquet")
    assert {c.change_id: c.decision for c in reviewed} == {
        c.change_id: ("accepted" if c.change_id == add.change_id else "rejected") for c in changes}
    original = read_changeset(catalog.settings.dreams_dir / d.id / "changeset.parquet")
    assert all(c.decision == "proposed" for c in original)  # never edited
    assert (catalog.settings.dreams_dir / d.id / "gate.reviewed.json").exists()


def test_unknown_change_id_is_bad_input(catalog):
    from dreaming.promotion import promote

    d = make_dream(catalog, state="awaiting_approval")
    with pytest.raises(BadInput, match="chg_nope"):
        promote(catalog, d.id, "alice", accepted_change_ids=["chg_nope"])
    assert catalog.get_store(d.store_id)["head_version"] == d.base_version


def test_reject_records_reason_and_leaves_head(catalog):
    from dreaming.changeset import read_changeset
    from dreaming.promotion import promote, reject

    d = make_dream(catalog, require_approval=True, state="awaiting_approval")
    out = reject(catalog, d.id, "bob", "merges look wrong")
    assert (out.promotion.state, out.promotion.decided_by, out.promotion.reason) == ("rejected", "bob",
                                                                                     "merges look wrong")
    assert catalog.get_store(d.store_id)["head_version"] == d.base_version
    reviewed = read_changeset(catalog.settings.dreams_dir / d.id / "changeset.reviewed.parquet")
    assert {c.decision for c in reviewed} == {"rejected"}
    assert reject(catalog, d.id, "bob", "again").promotion.reason == "merges look wrong"  # no-op
    with pytest.raises(InvalidState, match="rejected"):
        promote(catalog, d.id, "alice")


def test_review_resumes_a_paused_flow_instead_of_promoting(catalog):
    from dreaming.promotion import review

    d = make_dream(catalog, state="awaiting_approval")
    catalog.update_dream(d.id, lambda x: setattr(x, "flow_run_id", "0000-flow"))
    calls = []
    out = review(catalog, d.id, approve=True, decided_by="alice", note="lgtm",
                 resume=lambda fr, inp: calls.append((fr, inp)) or True)
    assert out.action == "resumed" and calls == [
        ("0000-flow", {"approve": True, "note": "lgtm", "change_ids": [], "decided_by": "alice"})]
    assert catalog.get_store(d.store_id)["head_version"] == d.base_version  # the flow promotes, not us
    # the run is not paused (resume says False): promote directly through the catalog
    out = review(catalog, d.id, approve=True, decided_by="alice", resume=lambda fr, inp: False)
    assert out.action == "promoted" and catalog.get_store(d.store_id)["head_version"] == d.candidate_version


@pytest.mark.parametrize("state", ["rejected", "gate_failed", "conflict"])
def test_approving_a_dream_not_awaiting_approval_is_invalid_state(catalog, state):
    from dreaming.promotion import review

    d = make_dream(catalog, state=state)
    with pytest.raises(InvalidState, match=f"promotion is {state}"):
        review(catalog, d.id, approve=True, decided_by="alice")
    assert catalog.get_store(d.store_id)["head_version"] == d.base_version


def test_approving_a_running_dream_is_invalid_state(catalog):
    from dreaming.promotion import promote

    store = StoreService(catalog).create("s-running", scope="acme")
    d = Dream(status="running", store_id=store["id"], base_version=1)
    catalog.insert_dream(d)
    with pytest.raises(InvalidState, match="it is running"):
        promote(catalog, d.id, "alice")


# --- rollback and history -------------------------------------------------------------------------


def test_rollback_restores_exact_content_and_deletes_nothing(catalog):
    from dreaming.history import memory_history, rollback, store_history
    from dreaming.promotion import promote

    d = make_dream(catalog)
    svc = StoreService(catalog)
    v1 = hashes(svc.read_version(d.store_id, d.base_version))
    promote(catalog, d.id, "auto")
    assert hashes(svc.head(d.store_id)[1]) != v1
    n_before = len(catalog.list_versions(d.store_id))
    new = rollback(catalog, d.store_id, d.base_version, "carol")
    store = catalog.get_store(d.store_id)
    assert store["head_version"] == new and new > d.candidate_version
    assert hashes(svc.read_version(d.store_id, new)) == v1
    assert len(catalog.list_versions(d.store_id)) == n_before + 1  # nothing deleted
    hist = store_history(catalog, d.store_id)
    last = hist[-1]
    assert (last["version"], last["message"], last["created_by"], last["is_head"]) == (
        new, f"rollback to v{d.base_version}", {"type": "user", "id": "carol"}, True)
    assert [h["on_head_line"] for h in hist] == [True] * len(hist)
    # per-memory history along the head line: created in v1, modified by the dream, restored by rollback
    events = [(h["version"], h["event"]) for h in memory_history(catalog, d.store_id, "mem_0")]
    assert events == [(1, "created"), (d.candidate_version, "modified"), (new, "modified")]
    pruned = [(h["version"], h["event"]) for h in memory_history(catalog, d.store_id, "/notes/m1.md")]
    assert pruned == [(1, "created"), (d.candidate_version, "deleted"), (new, "created")]
    with pytest.raises(NotFound):
        rollback(catalog, d.store_id, 99, "carol")
    with pytest.raises(NotFound):
        memory_history(catalog, d.store_id, "mem_nope")


def test_store_history_marks_unpromoted_candidates_off_the_head_line(catalog):
    from dreaming.history import store_history

    d = make_dream(catalog)
    hist = {h["version"]: h for h in store_history(catalog, d.store_id)}
    assert hist[d.base_version]["is_head"] and hist[d.base_version]["on_head_line"]
    assert not hist[d.candidate_version]["on_head_line"]
    assert hist[d.candidate_version]["created_by"] == {"type": "dream", "id": d.id}


def test_rollback_targets_only_versions_that_were_heads_and_records_the_actor_once(catalog):
    from dreaming.history import rollback, store_history

    d = make_dream(catalog)  # its candidate was never promoted
    head = catalog.get_store(d.store_id)["head_version"]
    with pytest.raises(InvalidState, match="never its head"):
        rollback(catalog, d.store_id, d.candidate_version, "user:carol")
    assert catalog.get_store(d.store_id)["head_version"] == head  # nothing written, nothing moved
    new = rollback(catalog, d.store_id, d.base_version, "user:carol")
    assert store_history(catalog, d.store_id)[-1]["created_by"] == {"type": "user", "id": "carol"}
    assert catalog.get_store(d.store_id)["head_version"] == new
