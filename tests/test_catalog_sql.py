"""Views and macros of the catalog against brute force over the sample stores' source attrs."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import sql_brute as brute
from sdoml_sql import Catalog, Selection, query
from sdoml_sql.exceptions import CatalogError, QueryError
from sdoml_sql.query.sqlfiles import read_sql, sql_dir


def nearest_sql(instrument, channel, start, stop, cadence, tolerance):
    return (f"SELECT * FROM nearest('{instrument}', '{channel}', '{start}', '{stop}', "
            f"INTERVAL '{cadence}', INTERVAL '{tolerance}')")


def test_views_have_one_row_per_source_frame_with_utc_times(layout_catalog, layout_source):
    catalog, source = layout_catalog, layout_source
    got = catalog.query("SELECT instrument, year, channel, idx, T_OBS FROM frames").to_pandas()
    key = ["instrument", "year", "channel", "idx"]
    merged = source.merge(got, on=key, how="outer", suffixes=("_src", "_sql"), indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged.T_OBS_src == merged.T_OBS_sql).all()


def test_aia_and_hmi_time_filters_agree_on_utc(catalog, source):
    start, stop = "2010-08-27 00:00", "2010-08-27 06:00"
    got = catalog.query(f"SELECT instrument, count(*) AS n FROM frames WHERE T_OBS BETWEEN "
                        f"'{start}' AND '{stop}' GROUP BY instrument ORDER BY instrument").to_pandas()
    inside = source[(source.T_OBS >= start) & (source.T_OBS <= stop)]
    expected = inside.groupby("instrument").size()
    assert dict(zip(got.instrument, got.n)) == expected.to_dict()
    assert expected["hmi"] > 0 and expected["aia"] > 0


def test_frames_view_lists_common_columns_and_instrument(catalog):
    columns = catalog.columns("frames")
    assert list(columns)[:4] == ["instrument", "year", "channel", "idx"]
    assert "T_OBS" in columns and "EXPTIME" not in columns
    assert set(columns) - {"instrument"} <= set(catalog.columns("aia")) & set(catalog.columns("hmi"))


def test_tables_and_macros_are_listed(catalog):
    assert {"aia", "hmi", "frames", "eve", "eve_lines", "array_attrs", "partitions"} <= set(catalog.tables())
    assert {"nearest", "nearest_frames", "nearest_eve", "aligned", "coverage"} <= set(catalog.macros())


@pytest.mark.parametrize("layout, instrument, channel, start, stop, cadence, tolerance", [
    ("v2", "aia", "171A", "2010-08-27", "2010-08-28", "12 minutes", "6 minutes"),
    ("v2", "aia", "193A", "2010-08-26 22:00", "2010-08-28 08:00", "12 minutes", "3 minutes"),
    ("v2", "aia", "171A", "2019-12-31 22:00", "2020-01-01 03:00", "12 minutes", "6 minutes"),  # crosses years
    ("v2", "hmi", "Bz", "2010-08-27", "2010-08-28", "12 minutes", "3 minutes"),
    ("v2", "hmi", "Bx", "2012-06-30 21:00", "2012-07-01 02:00", "6 minutes", "1 minute"),  # leap second
    ("v2", "aia", "94A", "2010-08-27", "2010-08-28", "1 hour", "20 minutes"),
    ("v2a", "aia", "171A", "2020-08-27", "2020-08-29", "12 minutes", "6 minutes"),  # T_OBS format change
    ("v2a", "aia", "171A", "2022-12-31 22:00", "2023-01-01 03:00", "12 minutes", "6 minutes"),  # crosses years
    ("v2a", "hmi", "Bz", "2010-08-27", "2010-08-28", "12 minutes", "3 minutes"),  # scrambled HMI
    ("v2a", "hmi", "By", "2023-01-01", "2023-01-02", "12 minutes", "3 minutes"),
])
def test_nearest_matches_brute_force(layout_catalog, layout_source, instrument, channel, start, stop, cadence,
                                     tolerance):
    catalog, source = layout_catalog, layout_source
    got = catalog.query(nearest_sql(instrument, channel, start, stop, cadence, tolerance)).to_pandas()
    expected = brute.nearest(source, channel, start, stop, cadence, tolerance)
    assert list(got.row) == list(expected.row)
    assert (got.time.values == expected.time.values).all()
    pd.testing.assert_series_equal(got.idx, expected.idx, check_names=False)
    pd.testing.assert_series_equal(got.year.astype("Int64"), expected.year, check_names=False)
    assert got.idx.notna().any()
    assert set(got.instrument) == {instrument} and set(got.channel) == {channel}


def test_nearest_marks_misses(catalog, source):
    got = catalog.query(nearest_sql("hmi", "Bz", "2010-08-28", "2010-08-29", "12 minutes", "3 minutes")).to_pandas()
    expected = brute.nearest(source, "Bz", "2010-08-28", "2010-08-29", "12 minutes", "3 minutes")
    assert got.idx.isna().sum() == expected.idx.isna().sum() > 0
    assert got[got.idx.isna()].T_OBS.isna().all() and got[got.idx.isna()].offset_s.isna().all()


def test_nearest_keeps_frame_zero(catalog, source):
    first = source[(source.channel == "171A") & (source.year == 2010) & (source.idx == 0)].T_OBS.iloc[0]
    start = first.floor("min")
    got = catalog.query(nearest_sql("aia", "171A", start, start + pd.Timedelta("1h"), "12 minutes", "6 minutes"))
    assert 0 in set(got.to_pandas().idx.dropna())


def test_nearest_tie_goes_to_the_earlier_frame(catalog, source):
    pool = source[(source.channel == "171A") & (source.year == 2010)].sort_values("T_OBS")
    t1, t2 = pool.T_OBS.iloc[10], pool.T_OBS.iloc[11]
    earlier = pool.idx.iloc[10]
    middle = t1 + (t2 - t1) / 2
    got = catalog.query(nearest_sql("aia", "171A", middle, middle + pd.Timedelta("1s"), "1 hour", "1 hour"))
    frame = got.to_pandas().iloc[0]
    assert frame.idx == earlier and frame.offset_s == -((t2 - t1) / 2).total_seconds()


def test_nearest_errors_name_the_channel(catalog):
    with pytest.raises(QueryError, match="no channel 171 in the catalog"):
        catalog.query(nearest_sql("aia", "171", "2010-08-27", "2010-08-28", "1 hour", "1 hour"))
    with pytest.raises(QueryError, match="171A belongs to aia, not hmi"):
        catalog.query(nearest_sql("hmi", "171A", "2010-08-27", "2010-08-28", "1 hour", "1 hour"))


ALIGNED = ("SELECT * FROM aligned(['171A', '193A', 'Bz'], '2010-08-27', '2010-08-28', "
           "INTERVAL 12 minutes, INTERVAL 6 minutes)")


def test_aligned_matches_nearest_per_channel_and_eve(layout_catalog, layout_source, layout_eve_source):
    catalog, source, eve_source = layout_catalog, layout_source, layout_eve_source
    selection = catalog.query(ALIGNED)
    assert selection.kind == "aligned"
    wide = selection.to_pandas()
    assert len(wide) == 120 and list(wide.row) == list(range(120))
    for channel in ("171A", "193A", "Bz"):
        expected = brute.nearest(source, channel, "2010-08-27", "2010-08-28", "12 minutes", "6 minutes")
        pd.testing.assert_series_equal(wide[f"{channel}.idx"], expected.idx, check_names=False)
    eve = brute.nearest_eve(eve_source, "2010-08-27", "2010-08-28", "12 minutes", "6 minutes")
    pd.testing.assert_series_equal(wide.eve_idx.astype("Int64"), eve, check_names=False)


def test_aligned_locators_are_long_in_channel_order(catalog):
    selection = catalog.query(ALIGNED)
    locators = selection.locators()
    assert list(locators.columns) == ["row", "time", "instrument", "year", "channel", "idx"]
    assert len(locators) == 3 * 120
    assert list(locators.channel[:3]) == ["171A", "193A", "Bz"]
    assert list(locators.instrument[:3]) == ["aia", "aia", "hmi"]
    assert str(locators.idx.dtype) == "Int64"
    nested = selection.to_arrow().column("frames")
    assert pa.types.is_map(nested.type)


def test_coverage_matches_brute_force(catalog, source):
    got = catalog.query("SELECT * FROM coverage('2010-08-27', '2010-08-29', INTERVAL 1 hour, "
                        "INTERVAL 20 minutes)").to_pandas()
    expected = brute.coverage(source, "2010-08-27", "2010-08-29", "1h", "20min")
    assert len(got) == len(expected)
    for column in ("instrument", "channel", "frames", "gaps"):
        assert list(got[column]) == list(expected[column]), column
    assert (got.bucket.values == expected.bucket.values).all()
    np.testing.assert_allclose(got.longest_step_s.astype(float), expected.longest_step_s, rtol=0, atol=1e-6)
    assert (got.frames == 0).any() and got.frames.sum() > 0


def test_selection_api(catalog):
    selection = catalog.query("SELECT year, channel, idx, EXPTIME FROM aia WHERE channel = ? ORDER BY year, idx",
                              params=["171A"])
    assert isinstance(selection, Selection) and selection.kind == "frames"
    assert len(selection) == selection.to_arrow().num_rows == len(selection.to_pandas())
    rows = list(selection)
    assert rows[0]["channel"] == "171A" and rows[0]["idx"] == 0
    locators = selection.locators()
    assert list(locators.columns) == ["instrument", "year", "channel", "idx"]
    assert set(locators.instrument) == {"aia"} and locators.idx.iloc[0] == 0
    assert selection.catalog is catalog and "FROM aia" in selection.sql


def test_selection_kinds(catalog):
    assert catalog.query("SELECT idx, time FROM eve LIMIT 3").kind == "eve"
    assert catalog.query("SELECT count(*) AS n FROM aia").kind == "table"
    with pytest.raises(QueryError, match="no frame locators"):
        catalog.query("SELECT count(*) AS n FROM aia").locators()


def test_module_query_uses_environment_catalog(catalog_dir, source, monkeypatch):
    monkeypatch.setenv("SDOML_CATALOG", str(catalog_dir))
    assert len(query("SELECT * FROM hmi WHERE channel = 'Bz'")) == (source.channel == "Bz").sum() > 0
    assert len(query("SELECT 1 AS one", catalog=catalog_dir)) == 1


def test_raw_sql_relation(catalog):
    relation = catalog.sql("SELECT count(*) FROM aia")
    assert relation.fetchall()[0][0] > 0


def test_catalog_without_hmi_and_eve_has_empty_views(catalog_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy, ignore=shutil.ignore_patterns("hmi", "eve", "eve_lines"))
    partial = Catalog(copy)
    assert len(partial.query("SELECT * FROM hmi")) == 0
    assert len(partial.query("SELECT * FROM eve")) == 0
    assert set(partial.query("SELECT DISTINCT instrument FROM frames").to_pandas().instrument) == {"aia"}
    aligned = partial.query("SELECT * FROM aligned(['171A'], '2010-08-27', '2010-08-28', "
                            "INTERVAL 1 hour, INTERVAL 10 minutes)").to_pandas()
    assert aligned["171A.idx"].notna().any() and aligned.eve_idx.isna().all()
    with pytest.raises(QueryError, match="no channel Bz"):
        partial.query(nearest_sql("hmi", "Bz", "2010-08-27", "2010-08-28", "1 hour", "1 hour"))


def test_missing_catalog_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog(tmp_path / "nowhere")
    with pytest.raises(CatalogError, match="no manifest.json"):
        Catalog(tmp_path)


def test_sql_files_come_from_the_package_when_installed(tmp_path, monkeypatch):
    assert (sql_dir() / "macros.sql").is_file()
    packaged = tmp_path / "sdoml_sql"
    shutil.copytree(sql_dir(), packaged / "sql")
    (packaged / "sql" / "macros.sql").write_text("-- packaged\n")
    monkeypatch.setattr("sdoml_sql.query.sqlfiles.resources.files", lambda name: packaged)
    assert read_sql("macros.sql") == "-- packaged\n"


def test_open_catalog_and_query_take_a_file_url(catalog_dir, monkeypatch, tmp_path):
    from sdoml_sql.query.catalog import open_catalog

    monkeypatch.chdir(tmp_path)  # the wrong path was <cwd>/file:/…
    url = "file://" + catalog_dir.as_posix()
    assert open_catalog(url).directory == catalog_dir.resolve()
    assert query("SELECT count(*) AS n FROM aia", catalog=url).to_arrow() == \
        Catalog(catalog_dir).query("SELECT count(*) AS n FROM aia").to_arrow()
