from datetime import timedelta

from dreaming.lake import Lake
from tests.factories import T0, write_sessions


def test_sessions_view_counts_and_dedupes_overlapping_snapshots(lake):
    s1 = {"session_id": "sesn_a", "events": [("user", "hi"), ("tool_use", "bash", {"cmd": "ls"}),
                                              ("tool_result", "Error: no", True), ("assistant", "ok")],
          "outcome": "satisfied"}
    s2 = {"session_id": "sesn_b", "start": T0 + timedelta(days=1), "events": [("user", "yo")]}
    write_sessions(lake, [s1, s2], snapshot_id="snap_1")
    write_sessions(lake, [s1], snapshot_id="snap_2")  # an overlapping export: same event ids
    with Lake(lake) as lk:
        rows = {r["session_id"]: r for r in lk.sessions()}
        assert rows["sesn_a"]["events"] == 4
        assert rows["sesn_a"]["tool_calls"] == 1
        assert rows["sesn_a"]["errors"] == 1
        assert rows["sesn_a"]["outcome"] == "satisfied"
        assert rows["sesn_b"]["events"] == 1
        assert [r["session_id"] for r in lk.sessions(since=T0 + timedelta(hours=1))] == ["sesn_b"]


def test_empty_lake_has_empty_views(lake):
    with Lake(lake) as lk:
        assert lk.sessions() == []
