"""Anthropic's 409 for a second ``update_existing`` dream of a store, checked by DreamService.create in its insert
transaction — so `dreams run`, the flows and the API all get it — on SQLite and PostgreSQL, also under a race."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.errors import Conflict
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions
from tests.pg import backend_lake  # noqa: F401 - the fixture


def _setup(settings, n_sessions: int = 4):
    cat = Catalog(settings)
    store = StoreService(cat).create("writer", scope="acme")
    sids = [f"sesn_w_{i}" for i in range(n_sessions)]
    write_sessions(settings, [{"session_id": s, "tenant": "acme", "start": T0 + timedelta(hours=i),
                               "events": [("user", "use uv"), ("assistant", "ok")]} for i, s in enumerate(sids)])
    return cat, store, sids


def test_a_second_open_update_existing_dream_is_a_conflict(backend_lake):
    cat, store, sids = _setup(backend_lake)
    svc = DreamService(cat)
    first = svc.create(store["id"], Selection(session_ids=sids[:1]), output_behavior="update_existing")
    with pytest.raises(Conflict, match=first.id) as e:
        svc.create(store["id"], Selection(session_ids=sids[1:2]), output_behavior="update_existing")
    assert e.value.http_status == 409 and e.value.exit_code == 2
    other = svc.create(store["id"], Selection(session_ids=sids[1:2]), output_behavior="create_new")  # not a writer
    assert other.status == "pending"
    assert svc.create(store["id"], dream_id=first.id).id == first.id  # a retry of the same dream is not a second one
    svc.cancel(first.id)
    again = svc.create(store["id"], Selection(session_ids=sids[2:3]), output_behavior="update_existing")
    assert again.status == "pending"


def test_of_two_racing_creates_exactly_one_wins(backend_lake):
    cat, store, sids = _setup(backend_lake)
    for i in range(5):
        barrier, results = threading.Barrier(2), []

        def go(sid, barrier=barrier, results=results):
            svc = DreamService(Catalog(backend_lake))
            barrier.wait()
            try:
                results.append(svc.create(store["id"], Selection(session_ids=[sid]), output_behavior="update_existing"))
            except Conflict as e:
                results.append(e)

        threads = [threading.Thread(target=go, args=(s,)) for s in sids[:2]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [r for r in results if not isinstance(r, Exception)]
        assert len(won) == 1 and sum(isinstance(r, Conflict) for r in results) == 1, (i, results)
        DreamService(cat).cancel(won[0].id)
