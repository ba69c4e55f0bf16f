"""Mission scale: partition files in T_OBS order with row-group statistics, views declared
from the manifest, the time index (manifest ``time_range``) that keeps a time-filtered query
from opening other years' files — with the same answers as the full scan."""

from __future__ import annotations

import shutil

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from sdoml_sql import Catalog
from sdoml_sql.query.timewindow import time_window

WINDOW_QUERIES = [
    "SELECT year, channel, idx, T_OBS, EXPTIME FROM aia WHERE T_OBS BETWEEN '2010-08-27 01:00' AND '2010-08-27 03:00'",
    "SELECT channel, count(*) AS n FROM aia WHERE T_OBS >= '2019-12-31 23:00' AND T_OBS < '2020-01-01 01:00' "
    "GROUP BY channel",  # year=2020 partitions start in 2019
    "SELECT instrument, year, channel, idx FROM frames WHERE T_OBS <= TIMESTAMP '2010-08-27 00:30'",
    "SELECT year, channel, idx FROM hmi WHERE '2012-07-01' > T_OBS AND T_OBS > '2012-06-30 23:00' AND channel = 'Bz'",
    "SELECT count(*) AS n FROM aia WHERE T_OBS BETWEEN '2015-01-01' AND '2015-02-01'",  # no data
    "SELECT instrument, idx FROM frame_times WHERE T_OBS = (TIMESTAMP '2010-08-27 00:00:09.37')",
    "SELECT * FROM aia WHERE T_OBS BETWEEN '2019-12-31 23:00' AND '2020-01-01 01:00'",  # every column, typed alike
]


def rows(selection) -> list:
    table = selection.to_arrow()
    return sorted(map(repr, table.to_pylist()))


@pytest.mark.parametrize("sql", WINDOW_QUERIES)
def test_time_window_gives_the_same_rows_as_the_full_scan(catalog, sql):
    assert time_window(duckdb.connect(), sql) is not None
    full = catalog.query(f"SELECT * FROM ({sql})")  # a subquery: no window, every file
    windowed = catalog.query(sql)
    assert windowed.to_arrow().schema == full.to_arrow().schema
    assert rows(windowed) == rows(full)


def test_a_narrowed_view_has_the_full_views_columns_and_types_for_any_year(catalog):
    """A view narrowed to some years leads with the typed empty row only when those years'
    files lack columns or type them otherwise; either way it is typed like the full view."""
    connection = catalog.connect()
    for instrument in ("aia", "hmi"):
        full = list(catalog.columns(instrument).items())
        partitions = catalog.manifest["partitions"].values()
        years = sorted({e["year"] for e in partitions if e.get("instrument") == instrument})
        for chosen in [{year} for year in years] + [set(years)]:
            scan = catalog._years_scan(instrument, chosen)
            described = connection.execute(f"DESCRIBE {scan}").fetchall()
            assert [(row[0], row[1]) for row in described] == full, (instrument, chosen)
        assert "WHERE false" not in catalog._years_scan(instrument, set(years))  # all years: the full view's columns


@pytest.mark.parametrize("sql", [
    "SELECT * FROM aia WHERE T_OBS BETWEEN '2010-08-27' AND '2010-08-28' OR EXPTIME < 1",
    "SELECT * FROM aia WHERE T_OBS > (SELECT max(T_OBS) FROM hmi)",
    "WITH a AS (SELECT * FROM aia) SELECT * FROM a WHERE T_OBS > '2010-08-27'",
    "SELECT * FROM aia JOIN hmi USING (T_OBS) WHERE T_OBS > '2010-08-27'",
    "SELECT * FROM aia WHERE T_OBS > 'not a time'",
    "SELECT * FROM eve WHERE time > '2010-08-27'",
    "SELECT count(*) FROM aia",
])
def test_other_query_shapes_get_no_window(sql):
    assert time_window(duckdb.connect(), sql) is None


def test_a_windowed_query_opens_only_the_years_it_needs(catalog_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    opened = Catalog(copy)
    first, *others = sorted((copy / "aia").glob("year=2010/*/*.parquet"))  # the first binds the view
    for path in others:
        path.write_bytes(b"not parquet")  # any read of these files now fails
    recent = opened.query("SELECT count(*) AS n FROM aia WHERE T_OBS BETWEEN '2020-01-01' AND '2020-01-02'")
    assert recent.to_pandas().n[0] > 0
    with pytest.raises(Exception, match="data.parquet"):
        opened.query("SELECT count(*) AS n FROM aia WHERE EXPTIME > 0")


def test_catalog_without_time_index_gives_the_same_answers(catalog, catalog_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    manifest = orjson.loads((copy / "manifest.json").read_bytes())
    for entry in manifest["partitions"].values():
        entry.pop("time_range", None)
        entry.pop("untimed_rows", None)
    (copy / "manifest.json").write_bytes(orjson.dumps(manifest))
    old = Catalog(copy)
    for sql in WINDOW_QUERIES[:2]:
        assert rows(old.query(sql)) == rows(catalog.query(sql))
    nearest = ("SELECT * FROM nearest('aia', '171A', '2019-12-31 22:00', '2020-01-01 03:00', INTERVAL 12 minutes, "
               "INTERVAL 6 minutes)")
    assert rows(old.query(nearest)) == rows(catalog.query(nearest))


def test_partition_rows_are_in_time_order_with_idx_and_a_time_index(catalog_dir):
    manifest = orjson.loads((catalog_dir / "manifest.json").read_bytes())
    for key, entry in manifest["partitions"].items():
        if entry["instrument"] not in ("aia", "hmi"):
            continue
        table = pq.read_table(catalog_dir / key / "data.parquet", columns=["idx", "T_OBS"])
        times = table.column("T_OBS").to_pylist()
        assert times == sorted(times) and sorted(table.column("idx").to_pylist()) == list(range(entry["rows"]))
        assert entry["time_range"] == [times[0].isoformat(sep=" "), times[-1].isoformat(sep=" ")]
        assert entry["untimed_rows"] == 0
        metadata = pq.ParquetFile(catalog_dir / key / "data.parquet").metadata
        column = metadata.schema.to_arrow_schema().get_field_index("T_OBS")
        assert all(metadata.row_group(g).column(column).statistics.has_min_max for g in range(metadata.num_row_groups))


def test_views_bind_from_the_manifest_without_listing_the_directory(catalog):
    frame_views = catalog.script().split("CREATE OR REPLACE VIEW eve")[0]
    assert "union_by_name" not in frame_views and "glob(" not in catalog.script()
    merged = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{catalog.directory}/aia/*/*/*.parquet', "
                        "hive_partitioning = true, union_by_name = true, "
                        "hive_types = {'year': INTEGER, 'channel': VARCHAR})").fetchall()
    assert list(catalog.columns("aia").items()) == [(r[0], r[1]) for r in merged]


def test_a_replaced_file_is_never_read_with_the_cached_footer_of_the_one_before(tmp_path):
    """Catalog connections cache Parquet footers, and a local rebuild replaces data.parquet in
    place: DuckDB must see the new file even when its modification time is the old one's."""
    import os
    import time

    import pyarrow as pa

    final, staged = tmp_path / "data.parquet", tmp_path / "staged.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), final)
    pq.write_table(pa.table({"x": [10, 20, 30]}), staged)  # same size and layout, other values
    hour_ago = time.time() - 3600  # both in one second, long enough ago for DuckDB to trust the time
    for path in (final, staged):
        os.utime(path, (hour_ago, hour_ago))
    connection = duckdb.connect()
    connection.execute("SET parquet_metadata_cache = true")
    read = f"SELECT count(*), max(x) FROM read_parquet('{final}') WHERE x > 5"  # row-group statistics decide
    assert connection.execute(read).fetchone() == (0, None)
    os.replace(staged, final)
    assert connection.execute(read).fetchone() == (3, 30)


def test_cli_query_imports_neither_pandas_pyarrow_nor_sqlglot(catalog_dir, tmp_path):
    """``sdoml-sql query`` prints through DuckDB's own rows, also on a catalog whose
    ``frame_quality`` is materialized (the big-catalog path)."""
    import subprocess
    import sys

    from sdoml_sql.query import copies

    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    assert set(copies.prepare(Catalog(copy), min_frames=0)) == {"frame_quality", "frame_times"}
    script = ("import sys; from sdoml_sql.cli import main\n"
              "try:\n    main(['query', 'SELECT count(*) AS n FROM frame_quality WHERE NOT good', "
              f"'--catalog', {str(copy)!r}, '--format', 'json'])\n"
              "except SystemExit:\n    pass\n"
              "print(sorted(m for m in ('pandas', 'pyarrow', 'sqlglot') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('{"n": ') and lines[-1] == "[]"


def test_manifest_stores_each_schema_once_and_reads_inline_keys_too(catalog_dir, tmp_path):
    from sdoml_sql.catalog_builder.location import read_manifest

    raw = orjson.loads((catalog_dir / "manifest.json").read_bytes())
    frame_entries = [e for e in raw["partitions"].values() if e["instrument"] in ("aia", "hmi")]
    assert all("keys" not in e and e["schema"] in raw["schemas"] for e in frame_entries)
    assert len(raw["schemas"]) < len(frame_entries)
    manifest = read_manifest(catalog_dir)
    inline = tmp_path / "catalog"
    shutil.copytree(catalog_dir, inline)
    (inline / "manifest.json").write_bytes(orjson.dumps(manifest))  # the format before schemas
    assert read_manifest(inline) == manifest
    assert Catalog(inline).query("SELECT count(*) AS n FROM aia").to_arrow() == \
        Catalog(catalog_dir).query("SELECT count(*) AS n FROM aia").to_arrow()


#: Bounds written as expressions DuckDB folds (issue 22): each narrows like a literal.
EXPRESSION_QUERIES = [
    "SELECT year, channel, idx, T_OBS FROM aia WHERE T_OBS BETWEEN TIMESTAMP '2010-08-27 01:00' "
    "AND TIMESTAMP '2010-08-27 01:00' + INTERVAL 2 HOUR",
    "SELECT year, channel, idx FROM aia WHERE T_OBS BETWEEN '2010-08-27 01:00'::TIMESTAMP AND "
    "CAST('2010-08-27 03:00' AS TIMESTAMP) AND EXPTIME > 0",
    "SELECT year, channel, idx FROM hmi WHERE T_OBS >= date_trunc('day', TIMESTAMP '2010-08-27 17:45') "
    "AND T_OBS < date_trunc('day', TIMESTAMP '2010-08-27 17:45') + INTERVAL 3 HOUR",
    "SELECT instrument, year, channel, idx FROM frames WHERE T_OBS >= '2019-12-31 23:00' AND "
    "T_OBS < TIMESTAMP '2020-01-01' + to_hours(1)",
    "SELECT count(*) AS n FROM aia WHERE T_OBS >= now() - INTERVAL 30 DAY",
    "SELECT count(*) AS n FROM frame_times WHERE T_OBS > now() - INTERVAL 40 YEAR AND T_OBS < DATE '2010-08-28'",
]


def _mission_copy(catalog_dir, target, years):
    """``catalog_dir`` copied with the 2010 partitions' manifest entries repeated under ``years``
    (time ranges shifted by whole years), their files garbage: a query that binds or reads
    one of them fails."""
    from sdoml_sql.catalog_builder.location import manifest_bytes, read_manifest

    shutil.copytree(catalog_dir, target)
    manifest = read_manifest(target)
    for key, entry in list(manifest["partitions"].items()):
        if entry.get("year") != 2010:
            continue
        for year in years:
            shifted = key.replace("year=2010", f"year={year}")
            (target / shifted).mkdir(parents=True, exist_ok=True)
            (target / shifted / "data.parquet").write_bytes(b"not parquet")
            span = [f"{int(t[:4]) + year - 2010}{t[4:]}" for t in entry["time_range"]]
            manifest["partitions"][shifted] = {**entry, "year": year, "time_range": span}
    (target / "manifest.json").write_bytes(manifest_bytes(manifest))
    return Catalog(target)


@pytest.mark.parametrize("sql", EXPRESSION_QUERIES)
def test_expression_bounds_narrow_like_literals_at_any_scale(catalog, catalog_dir, tmp_path, sql):
    assert time_window(duckdb.connect(), sql) is not None
    full = rows(catalog.query(f"SELECT * FROM ({sql})"))  # a subquery: no window, every file
    assert rows(catalog.query(sql)) == full
    # the same answer with 11 more years whose files cannot be read: the window opens the same
    # files at 14 years as at 3, whatever form its bounds take
    mission = _mission_copy(catalog_dir, tmp_path / "mission", [y for y in range(2011, 2024) if y not in (2019, 2020)])
    assert rows(mission.query(sql)) == full
    with pytest.raises(Exception, match="data.parquet"):
        mission.query(f"SELECT * FROM ({sql})")  # proof that the extra years' files are unreadable


@pytest.mark.parametrize("sql", [
    "SELECT * FROM aia WHERE T_OBS > TIMESTAMP '2010-01-01' + to_days(CAST(random() * 0 AS INTEGER))",
    "SELECT * FROM aia WHERE T_OBS > ?",
    "SELECT * FROM aia WHERE T_OBS > T_REC - INTERVAL 1 DAY",
])
def test_bounds_not_constant_for_the_query_give_no_window(sql):
    assert time_window(duckdb.connect(), sql) is None


def test_a_volatile_bound_leaves_the_constant_one_in_force():
    sql = ("SELECT * FROM aia WHERE T_OBS > TIMESTAMP '2010-01-01' + to_days(CAST(random() * 0 AS INTEGER)) "
           "AND T_OBS < TIMESTAMP '2010-08-28' + INTERVAL 1 DAY")
    assert time_window(duckdb.connect(), sql) == (("aia",), None, __import__("datetime").datetime(2010, 8, 29))


def test_the_first_open_after_a_build_or_a_stats_pass_writes_no_copy(catalog, sample_paths, tmp_path, monkeypatch):
    """``build`` and ``stats`` write the copies as part of their commit: the first open after
    them only reads (issue 22; it used to write them, 6.4 s at 1.5 M frames)."""
    import sdoml_sql
    from sdoml_sql.query import copies

    monkeypatch.setattr(copies, "MIN_FRAMES", 0)  # as if the catalog were big
    directory = tmp_path / "catalog"
    sdoml_sql.build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]), catalog=directory,
                            progress=False)
    written = copies.write
    monkeypatch.setattr(copies, "write", lambda *a, **k: pytest.fail("a copy written when the catalog was opened"))
    opened = Catalog(directory)
    assert set(opened._copies) == {"frame_times", "frame_quality"}
    sql = "SELECT * FROM frame_quality ORDER BY instrument, year, channel, idx"
    assert opened.query(sql).to_arrow().to_pylist() == catalog.query(sql).to_arrow().to_pylist()
    monkeypatch.setattr(copies, "write", written)
    sdoml_sql.compute_frame_stats(directory, channels=["171A"], progress=False, workers=1)
    monkeypatch.setattr(copies, "write", lambda *a, **k: pytest.fail("a copy written when the catalog was opened"))
    after = Catalog(directory)
    assert set(after._copies) == {"frame_times", "frame_quality"}
    checked = after.query("SELECT channel, bool_and(has_stats) AS all_checked FROM frame_quality "
                          "WHERE year = 2010 AND channel IN ('171A', '193A') GROUP BY ALL ORDER BY ALL").to_arrow()
    assert checked.to_pylist() == [{"channel": "171A", "all_checked": True}, {"channel": "193A", "all_checked": False}]


def test_a_bound_that_fails_to_evaluate_leaves_the_query_its_own_error(catalog):
    from sdoml_sql.exceptions import QueryError

    with pytest.raises(QueryError, match="yesterday noon"):
        catalog.query("SELECT count(*) FROM aia WHERE T_OBS > CAST('yesterday noon' AS TIMESTAMP)")
    assert len(catalog.query("SELECT idx FROM aia WHERE T_OBS < TIMESTAMP '2010-08-27 00:30'")) > 0
