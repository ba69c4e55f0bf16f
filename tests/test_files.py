"""The one safe-write rule (sdoml_sql/files.py): a file is there whole or not at all."""

from __future__ import annotations

import duckdb
import pytest

from sdoml_sql.files import PARTIAL_MARK, move_into_place, partial_name, write_atomically, written_atomically


def test_write_atomically_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "manifest.json"
    assert write_atomically(target, b"old") == target
    write_atomically(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert sorted(p.name for p in target.parent.iterdir()) == ["manifest.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "movie.mp4"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with written_atomically(target) as partial:
            assert partial.suffix == ".mp4" and partial.name.startswith(".movie" + PARTIAL_MARK)
            partial.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["movie.mp4"]


def test_a_directory_output_is_replaced_whole(tmp_path):
    target = tmp_path / "out.zarr"
    (target / "old").mkdir(parents=True)
    with written_atomically(target) as partial:
        (partial / "new").mkdir(parents=True)
    assert [p.name for p in target.iterdir()] == ["new"]
    staged = tmp_path / "staged.parquet"
    staged.write_bytes(b"x")
    move_into_place(staged, tmp_path / "deep" / "data.parquet")
    assert (tmp_path / "deep" / "data.parquet").read_bytes() == b"x" and not staged.exists()


def test_a_temporary_is_never_read_by_a_catalog_glob(tmp_path):
    # DuckDB's glob matches hidden files: a temporary named *.parquet would join the eve view.
    group = tmp_path / "eve" / "group=MEGS-A"
    group.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 1 AS a) TO '{(group / 'data.parquet').as_posix()}' (FORMAT parquet)")
    temporary = partial_name(group / "data.parquet")
    duckdb.sql(f"COPY (SELECT 2 AS a) TO '{temporary.as_posix()}' (FORMAT parquet)")
    rows = duckdb.sql(f"SELECT a FROM read_parquet('{tmp_path.as_posix()}/eve/*/*.parquet')").fetchall()
    assert rows == [(1,)]
