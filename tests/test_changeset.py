from datetime import UTC, datetime

import pytest

from dreaming.changeset import apply_changes, finalize, removed_share
from dreaming.errors import InvalidState
from dreaming.models import Change, Memory, Source

T = datetime(2026, 11, 1, tzinfo=UTC)


def mem(mid, path, content, **kw):
    return Memory(memory_id=mid, path=path, content=content, **kw)


def test_apply_every_op():
    base = [
        mem("m1", "/a", "use uv", sources=[Source(session_id="s1", event_id="e1", ts=T)]),
        mem("m2", "/b", "use uv for installs", sources=[Source(session_id="s2", event_id="e2", ts=T)]),
        mem("m3", "/c", "indent 2"),
        mem("m4", "/d", "old"),
        mem("m5", "/e", "loser"),
        mem("m6", "/f", "stays"),
    ]
    ev = [Source(session_id="s9", event_id="e9", ts=T)]
    changes = finalize([
        Change(op="merge", memory_id="m1", merged_ids=["m2"], after="use uv", reason="dup", evidence=ev),
        Change(op="supersede", memory_id="m3", before="indent 2", after="indent 4", reason="newer", evidence=ev),
        Change(op="prune", memory_id="m4", reason="expired", evidence=ev),
        Change(op="supersede", memory_id="m5", superseded_by="m6", reason="contradicted", evidence=ev),
        Change(op="add", path="/g", after="new insight", kind="insight", reason="recurs", evidence=ev),
        Change(op="keep", memory_id="m6", reason="fine"),
    ], "drm_x")
    out = {m.path: m for m in apply_changes(base, changes)}
    assert set(out) == {"/a", "/c", "/f", "/g"}
    assert {s.session_id for s in out["/a"].sources} == {"s1", "s2", "s9"}
    assert out["/a"].support == 3
    assert out["/c"].content == "indent 4"
    assert out["/g"].kind == "insight"
    # base is untouched
    assert [m.content for m in base][2] == "indent 2"
    assert removed_share(base, changes) == pytest.approx(4 / 6)  # m2 merged, m3 superseded, m4, m5


def test_rejected_changes_are_not_applied_and_unknown_ids_fail():
    base = [mem("m1", "/a", "x")]
    c = finalize([Change(op="prune", memory_id="m1", reason="r")], "drm_y")
    c[0].decision = "rejected"
    assert [m.memory_id for m in apply_changes(base, c)] == ["m1"]
    with pytest.raises(InvalidState, match="unknown memory"):
        apply_changes(base, [Change(op="prune", memory_id="nope", reason="r")])


def test_finalize_is_deterministic():
    cs = [Change(op="add", path="/z", after="z", reason="r"), Change(op="prune", memory_id="m", reason="r")]
    a, b = finalize(cs, "drm_1"), finalize(list(reversed(cs)), "drm_1")
    assert [c.model_dump() for c in a] == [c.model_dump() for c in b]
    assert [c.op for c in a] == ["prune", "add"]
