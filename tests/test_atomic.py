"""Staged writes: nothing reaches its final path half-written, and a batch is placed all or nothing."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dreaming.atomic import place_staged, write_parquet_staged


def test_staged_parquet_is_placed_complete_and_staging_is_emptied(tmp_path):
    staging, lake = tmp_path / "staging", tmp_path / "lake"
    table = pa.table({"x": [1, 2, 3]})
    pairs = [(write_parquet_staged(table, lake / f"day={d}" / "s.parquet", staging), lake / f"day={d}" / "s.parquet")
             for d in ("2026-11-01", "2026-11-02")]
    assert not list(lake.rglob("*.parquet"))  # staged only
    placed = place_staged(pairs)
    assert [p for _, p in pairs] == placed
    assert all(pq.read_table(p).column("x").to_pylist() == [1, 2, 3] for p in placed)
    assert not list(staging.iterdir())


def test_a_failed_rename_takes_back_the_files_already_placed(tmp_path):
    staging, lake = tmp_path / "staging", tmp_path / "lake"
    lake.mkdir()
    (lake / "day=2026-11-02").write_text("a file where a folder should be")
    table = pa.table({"x": [1]})
    good = lake / "day=2026-11-01" / "s.parquet"
    bad = lake / "day=2026-11-02" / "s.parquet"
    pairs = [(write_parquet_staged(table, good, staging), good), (write_parquet_staged(table, bad, staging), bad)]
    with pytest.raises(OSError):
        place_staged(pairs)
    assert not good.exists()  # the first file was placed, then withdrawn
    assert pairs[1][0].exists()  # the unplaced one is still in staging for its owner to discard


def test_a_failed_write_leaves_no_staging_file(tmp_path):
    staging = tmp_path / "staging"
    with pytest.raises(Exception):  # noqa: B017 - pyarrow raises its own error types
        write_parquet_staged("not a table", tmp_path / "x.parquet", staging)  # type: ignore[arg-type]
    assert not list(staging.iterdir())
