import pytest

from dreaming.catalog import Catalog
from dreaming.dreams import DreamService, Selection
from dreaming.errors import BadInput, InvalidState
from dreaming.stores import StoreService
from tests.factories import write_sessions


def setup(lake):
    cat = Catalog(lake)
    StoreService(cat).create("s", scope="acme")
    write_sessions(lake, [
        {"session_id": "sesn_1", "events": [("user", "hi")]},
        {"session_id": "sesn_2", "events": [("user", "yo")]},
        {"session_id": "sesn_other", "tenant": "globex", "events": [("user", "psst")]},
    ])
    return DreamService(cat)


def test_create_selects_scope_sessions_sorted_and_pending(lake):
    svc = setup(lake)
    d = svc.create("s", Selection(all_new=True))
    assert d.status == "pending"
    assert d.session_ids == ["sesn_1", "sesn_2"]  # not the other tenant's
    api = d.to_api()
    assert api["inputs"][1] == {"type": "sessions", "session_ids": ["sesn_1", "sesn_2"]}
    assert api["output_behavior"] == {"type": "create_new"}


def test_instructions_limit_and_bad_options(lake):
    svc = setup(lake)
    with pytest.raises(BadInput, match="4096"):
        svc.create("s", instructions="x" * 4097)
    with pytest.raises(BadInput, match="curator"):
        svc.create("s", curator="gpt")
    with pytest.raises(BadInput, match="not allowed"):
        svc.create("s", curator="claude", model="claude-nonexistent")
    assert svc.catalog.list_dreams() == []  # nothing recorded for bad requests


def test_session_cap(lake, monkeypatch):
    monkeypatch.setenv("DREAMS_MAX_SESSIONS_PER_DREAM", "1")
    from dreaming.settings import get_settings

    svc = DreamService(Catalog(get_settings()))
    svc.stores.create("s", scope="acme")
    write_sessions(svc.settings, [{"session_id": "a", "events": [("user", "1")]},
                                  {"session_id": "b", "events": [("user", "2")]}])
    assert svc.create("s").session_ids == ["a"]  # oldest first; the rest wait
    assert svc.left_over == 1  # and the CLI says so: never a silent cap
    with pytest.raises(BadInput, match="at most 1"):
        svc.create("s", Selection(session_ids=["a", "b"]))


def test_cancel_and_archive_rules(lake):
    svc = setup(lake)
    d = svc.create("s")
    with pytest.raises(InvalidState, match="cancel it first"):
        svc.archive(d.id)
    assert svc.cancel(d.id).status == "canceled"
    assert svc.cancel(d.id).status == "canceled"  # idempotent
    with pytest.raises(InvalidState):
        svc.catalog.transition(d.id, "running")  # terminal never changes
    a = svc.archive(d.id)
    assert a.archived_at is not None and a.status == "canceled"
    assert svc.archive(d.id).archived_at == a.archived_at
    assert svc.catalog.list_dreams() == []
    assert [x.id for x in svc.catalog.list_dreams(include_archived=True)] == [d.id]
    f = svc.create("s")
    svc.fail(f.id, "internal_error", "boom")
    with pytest.raises(InvalidState, match="only pending or running"):
        svc.cancel(f.id)
