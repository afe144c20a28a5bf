"""The dream/session lifecycle: sessions count as dreamt over only when a dream that read them is
promoted; rejected changes are not proposed again on the same evidence; the dream's clock comes from
plausible event times; a store at the size limit is refused; leases let the reaper fail dead dreams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dreaming import leases
from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.errors import BadInput, InvalidState, NothingToDream
from dreaming.models import Memory, Source
from dreaming.ops import reap_stale_dreams
from dreaming.history import rollback
from dreaming.promotion import promote, reject
from dreaming.schema import MAX_MEMORIES
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions
from tests.pg import backend_lake, lake_both  # noqa: F401 - fixtures

lake = lake_both  # every test here runs on SQLite and on PostgreSQL (tests/pg.py)

UV = ("user", "always use uv, never pip")


def _sessions(lake, n: int, first: int = 0):
    write_sessions(lake, [{"session_id": f"sesn_{i}", "start": T0 + timedelta(hours=i), "events": [UV]}
                          for i in range(first, first + n)])


def _dream(svc: DreamService, store="s", behavior="update_existing", **kw):
    """create → read → curate → output (what the flow does before the gate)."""
    d = svc.create(store, Selection(all_new=True), output_behavior=behavior, **kw)
    inputs = svc.read(d.id)
    result = svc.curate(inputs)
    return svc.output(inputs, result), result


@pytest.fixture
def svc(lake):
    cat = Catalog(lake)
    StoreService(cat).create("s", scope="acme")
    return DreamService(cat)


def test_an_unpromoted_dream_consumes_no_sessions_and_promotion_marks_them(svc, lake):
    _sessions(lake, 2)
    first, _ = _dream(svc)  # killed (or failed) after its output: never promoted
    assert first.status == "completed" and svc.catalog.dreamt_session_ids(first.store_id) == set()
    second, _ = _dream(svc)
    assert second.session_ids == ["sesn_0", "sesn_1"]  # the next --all dream gets them again
    assert promote(svc.catalog, second.id, "auto").promotion.state == "promoted"
    with svc.catalog.engine.connect() as conn:
        assert sorted(svc.catalog.dreamt_rows(conn, second.store_id)) == [("sesn_0", second.id), ("sesn_1", second.id)]
    _nothing_left(svc, "s")


def _nothing_left(svc, store: str) -> None:
    """A dream of a store whose sessions are all dreamt over (or in review) is refused; nothing is recorded."""
    before = len(svc.catalog.list_dreams())
    with pytest.raises(NothingToDream, match="nothing to dream: no new session of store"):
        svc.create(store, Selection(all_new=True))
    assert len(svc.catalog.list_dreams()) == before


def test_a_failed_promotion_transaction_marks_nothing(svc, lake, monkeypatch):
    _sessions(lake, 2)
    d, _ = _dream(svc)
    head = svc.catalog.get_store("s")["head_version"]
    real = svc.catalog.save_dream

    def boom(conn, dream):
        if dream.promotion.state == "promoted":
            raise RuntimeError("disk full")  # after cas_head and mark_dreamt ran in the same transaction
        return real(conn, dream)

    monkeypatch.setattr(Catalog, "save_dream", lambda self, conn, dream: boom(conn, dream))
    with pytest.raises(RuntimeError):
        promote(svc.catalog, d.id, "auto")
    monkeypatch.undo()
    assert svc.catalog.get_store("s")["head_version"] == head
    assert svc.catalog.dreamt_session_ids(d.store_id) == set()
    assert promote(svc.catalog, d.id, "auto").promotion.state == "promoted"  # a retry completes it
    assert svc.catalog.dreamt_session_ids(d.store_id) == {"sesn_0", "sesn_1"}


def test_a_dream_that_lost_to_a_rollback_leaves_its_sessions_available(svc, lake):
    _sessions(lake, 2)
    d, _ = _dream(svc)
    rollback(svc.catalog, "s", 1, "ops")  # the head moves while the dream waits
    assert promote(svc.catalog, d.id, "auto").promotion.state == "conflict"
    assert svc.create("s", Selection(all_new=True)).session_ids == ["sesn_0", "sesn_1"]


def test_rejected_changes_are_not_proposed_again_until_new_evidence_arrives(svc, lake):
    _sessions(lake, 3)
    d, result = _dream(svc, require_approval=True)
    assert [c.op for c in result.changes] == ["add"]
    reject(svc.catalog, d.id, "alice", "we use poetry here")
    again, result = _dream(svc)
    assert again.session_ids == ["sesn_0", "sesn_1", "sesn_2"]  # rejection consumed nothing
    assert result.changes == [] and again.counts.get("add") == 0
    assert any("rejected in review before" in n for n in result.notes)
    _sessions(lake, 1, first=3)  # a session the reviewer never saw says it again
    third, result = _dream(svc)
    assert [c.op for c in result.changes] == ["add"]
    assert "sesn_3" in {e.session_id for e in result.changes[0].evidence}


def test_partial_acceptance_marks_sessions_and_fingerprints_the_left_out_changes(svc, lake):
    from dreaming import rejections

    old = Memory(memory_id="mem_old", path="/notes/old.md", content="the build uses make", kind="fact",
                 sources=[Source(session_id="sesn_x", event_id="e", ts=T0 - timedelta(days=200))])
    StoreService(svc.catalog).create("p", scope="acme", memories=[old])
    _sessions(lake, 3)
    d, result = _dream(svc, store="p", require_approval=True)
    ops = {c.op: c for c in result.changes}
    assert set(ops) == {"add", "prune"}, result.changes
    from dreaming.promotion import request_approval

    request_approval(svc.catalog, d.id)
    out = promote(svc.catalog, d.id, "alice", accepted_change_ids=[ops["add"].change_id])
    assert out.promotion.state == "promoted"
    assert svc.catalog.dreamt_session_ids(d.store_id) == set(d.session_ids)
    seen = rejections.rejected(svc.catalog, d.store_id)
    assert set(seen) == {rejections.change_key(ops["prune"])}


def test_a_fork_marks_its_own_watermark_and_inherits_the_inputs(svc, lake):
    _sessions(lake, 2)
    d, _ = _dream(svc)
    promote(svc.catalog, d.id, "auto")
    _sessions(lake, 1, first=2)
    f, _ = _dream(svc, behavior="create_new")
    assert f.session_ids == ["sesn_2"]
    fork = promote(svc.catalog, f.id, "auto").promotion.target_store_id
    assert svc.catalog.dreamt_session_ids(fork) == {"sesn_0", "sesn_1", "sesn_2"}
    assert svc.catalog.dreamt_session_ids(d.store_id) == {"sesn_0", "sesn_1"}  # the input store did not learn


def _aged_store(svc, name: str, days_old: list[int]) -> None:
    mems = [Memory(memory_id=f"mem_{n}", path=f"/notes/{n}.md", content=f"note from {n} days before", kind="fact",
                   sources=[Source(session_id="sesn_x", event_id=f"e{n}", ts=T0 - timedelta(days=n))])
            for n in days_old]
    mems.append(Memory(memory_id="mem_exp", path="/notes/expiring.md", content="valid for a while", kind="fact",
                       valid_until=T0 + timedelta(days=5)))
    StoreService(svc.catalog).create(name, scope="acme", memories=mems)


def test_a_dream_without_sessions_is_refused_and_ages_nothing_out(svc, lake):
    """No session, no clock: a dream would only age memories out by the wall clock (and "promote" a copy of the
    head). It is refused before anything is recorded; the store keeps its head and every memory."""
    _aged_store(svc, "old", [30, 200])  # 200 days stale and an expiry, by the wall clock
    head = svc.catalog.get_store("old")["head_version"]
    with pytest.raises(NothingToDream, match="nothing to dream"):
        svc.create("old", Selection(all_new=True))
    assert svc.catalog.list_dreams() == [] and svc.catalog.get_store("old")["head_version"] == head


def test_an_event_far_in_the_future_does_not_move_the_clock(svc, lake):
    _aged_store(svc, "clock", [30, 200])
    write_sessions(lake, [
        {"session_id": "sesn_now", "start": T0, "events": [("user", "hello")]},
        {"session_id": "sesn_bad", "start": datetime(9999, 12, 31, tzinfo=UTC) - timedelta(hours=1),
         "events": [("user", "from the future")]},
    ])
    d = svc.create("clock", Selection(all_new=True))
    inputs = svc.read(d.id)
    assert inputs.now == T0 and inputs.age_out
    result = svc.curate(inputs)
    assert sorted(c.memory_id for c in result.changes if c.op == "prune") == ["mem_200"]  # not 30, not expiring


def test_a_store_at_the_size_limit_is_refused_at_create(svc, lake, monkeypatch, capsys):
    import sys

    from dreaming.cli import main

    mems = [Memory(memory_id=f"mem_{i}", path=f"/m/{i}.md", content=f"note {i}", kind="note")
            for i in range(MAX_MEMORIES)]
    StoreService(svc.catalog).create("full", scope="acme", memories=mems)
    _sessions(lake, 1)
    with pytest.raises(BadInput, match="input_memory_store_too_large"):
        svc.create("full")
    assert svc.catalog.list_dreams() == []
    monkeypatch.setattr(sys, "argv", ["dreams", "run", "--store", "full"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "input_memory_store_too_large" in capsys.readouterr().err
    assert svc.catalog.list_dreams() == []


def test_an_expired_lease_is_reaped_though_prefect_says_running(svc, lake, monkeypatch):
    _sessions(lake, 1)
    d = svc.create("s", Selection(all_new=True), flow_run_id="run-1", lease=True)
    svc.catalog.transition(d.id, "running")
    running = {"run-1": "RUNNING"}.get
    assert reap_stale_dreams(svc.catalog, d.store_id, running) == []  # lease alive
    later = datetime.now(UTC) + timedelta(seconds=svc.settings.dream_lease_s + 1)
    reaped = reap_stale_dreams(svc.catalog, d.store_id, running, now=later)
    assert [r.id for r in reaped] == [d.id]
    d = svc.catalog.get_dream(d.id)
    assert d.status == "failed" and d.error.type == "crashed" and "lease" in d.error.message
    assert leases.get_lease(svc.catalog, d.id) is None

    def gone(_):
        raise ConnectionError("the temporary server is gone")

    e = svc.create("s", Selection(all_new=True), flow_run_id="run-2", lease=True)
    assert [r.id for r in reap_stale_dreams(svc.catalog, e.store_id, gone, now=later)] == [e.id]


def test_a_held_lease_is_renewed_refused_to_others_and_dropped_once_completed(svc, lake, monkeypatch):
    monkeypatch.setenv("DREAMS_DREAM_LEASE_S", "0.4")
    from dreaming.settings import get_settings

    cat = Catalog(get_settings())
    s = DreamService(cat)
    _sessions(lake, 1)
    d = s.create("s", Selection(all_new=True), lease=True)
    with leases.hold(cat, d.id):
        first = leases.get_lease(cat, d.id)["expires_at"]
        import time

        time.sleep(0.5)  # past the first expiry: the thread renewed it
        assert leases.get_lease(cat, d.id)["expires_at"] > first
        assert reap_stale_dreams(cat, d.store_id, lambda _: None) == []
        with monkeypatch.context() as m:  # another live process
            m.setattr(leases, "_owner", lambda: "elsewhere:1:ffff")
            with pytest.raises(InvalidState, match="being run by"):
                leases.take(cat, d.id)
        inputs = s.read(d.id)
        s.output(inputs, s.curate(inputs))
        assert leases.get_lease(cat, d.id) is None  # completed: not running, no lease
    assert leases.get_lease(cat, d.id) is None


def test_sessions_waiting_for_a_person_are_left_to_that_decision(svc, lake):
    from dreaming.promotion import request_approval

    _sessions(lake, 2)
    d, _ = _dream(svc)
    request_approval(svc.catalog, d.id)
    # a nightly --all dream does not propose the same changes again while a person decides
    _nothing_left(svc, "s")
    reject(svc.catalog, d.id, "reviewer", "not now")
    # rejected: the sessions are free again (their rejected changes are filtered, see above)
    assert svc.create("s", Selection(all_new=True)).session_ids == ["sesn_0", "sesn_1"]
