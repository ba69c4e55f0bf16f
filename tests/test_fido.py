"""The SunPy Fido client: searches equal the catalog's SQL, fetched FITS equal Selection.maps(),
Fido's other clients keep their queries, and nothing needs the network."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import sunpy.map
from sunpy.net import Fido
from sunpy.net import attrs as a
from sunpy.net.jsoc import JSOCClient
from sunpy.net.vso import VSOClient

import sdoml_sql.fido  # noqa: F401 - registers the client
from fetch_helpers import count_chunk_reads
from sdoml_sql.exceptions import SdomlError, SearchErrorWarning
from sdoml_sql.fetch.stack import FlatSelection, chunk_keys
from sdoml_sql.fido.client import SDOMLClient, fits_names, row_locators
from sdoml_sql.fido.search import search_sql, walker, wanted_channels
from sdoml_sql.query.catalog import open_catalog

DAY = a.Time("2010-08-27", "2010-08-28")


def search(catalog_dir, *attrs):
    """``Fido.search`` on the test catalog; the SDOML block of the result."""
    results = Fido.search(*attrs, a.sdoml.Catalog(catalog_dir))
    assert [type(block.client) for block in results] == [SDOMLClient] * len(results)
    return results[0]


def fido_error(*attrs) -> str:
    """The one-line error of a failing SDOML search: SunPy 7's Fido.search raises it; SunPy 8's
    keeps a client's exception in ``results.errors``, and the client warns it as well."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SearchErrorWarning)
        try:
            results = Fido.search(*attrs)
        except SdomlError as error:
            assert not [w for w in caught if issubclass(w.category, SearchErrorWarning)]
            return f"{type(error).__name__}: {error}"
    warned = [str(w.message) for w in caught if issubclass(w.category, SearchErrorWarning)]
    assert len(warned) == 1 and warned[0].startswith("SDOML search failed: "), warned
    (error,) = [e for e in results.errors if isinstance(e, SdomlError)]  # kept where SunPy 8 keeps them
    assert warned[0] == f"SDOML search failed: {error}"
    return f"{type(error).__name__}: {error}"


def locators(table) -> list[tuple]:
    return [(str(i).lower(), int(y), str(c), int(n))
            for i, y, c, n in zip(table["Instrument"], table["year"], table["Channel"], table["idx"])]


def sql_locators(selection) -> list[tuple]:
    frame = selection.locators()
    rows = frame[["instrument", "year", "channel", "idx"]].itertuples(index=False)
    return [(i, int(y), c, int(n)) for i, y, c, n in rows]


def sql_locators_with_misses(selection) -> list[tuple]:
    frame = selection.locators()
    return [(i, int(y) if y is not pd.NA else None, c, int(n) if n is not pd.NA else None)
            for i, y, c, n in frame[["instrument", "year", "channel", "idx"]].itertuples(index=False)]


def start_times(table) -> list[np.datetime64]:
    return list(table["Start Time"].datetime64.astype("datetime64[us]"))


# --- search = SQL, row for row ------------------------------------------------------------------

#: The last sample year, which holds frames of the year before (SDOMLv2#2), per layout.
NEW_YEAR = {"v2": 2020, "v2a": 2023}


def test_time_instrument_wavelength_equal_the_sql_query(layout_catalog, layout_catalog_dir, layout):
    catalog, catalog_dir, year = layout_catalog, layout_catalog_dir, NEW_YEAR[layout]
    # The last year's group holds frames of the year before: the time, not the year, decides.
    start, stop = f"{year - 1}-12-31 12:00", f"{year}-01-01 12:00"
    found = search(catalog_dir, a.Time(start, stop), a.Instrument.aia, a.Wavelength(171 * u.AA))
    sql = catalog.query("SELECT year, channel, idx, T_OBS FROM aia WHERE channel = '171A' "
                        f"AND T_OBS BETWEEN '{start}' AND '{stop}' ORDER BY T_OBS")
    assert len(found) == len(sql) > 0
    assert locators(found) == sql_locators(sql)
    assert start_times(found) == list(sql.to_pandas()["T_OBS"].to_numpy().astype("datetime64[us]"))
    assert set(found["year"]) == {year} and min(start_times(found)) < np.datetime64(f"{year}-01-01")
    assert found["Exposure Time"].unit == u.s and found["Wavelength"].unit == u.AA


def test_wavelengths_match_as_sunpy_does(catalog, catalog_dir):
    single = search(catalog_dir, DAY, a.Wavelength(17.1 * u.nm))
    assert set(single["Channel"]) == {"171A"}
    ranged = search(catalog_dir, DAY, a.Wavelength(150 * u.AA, 200 * u.AA))
    sql = catalog.query("SELECT year, channel, idx FROM frames WHERE channel IN ('171A', '193A') "
                        "AND T_OBS BETWEEN '2010-08-27' AND '2010-08-28' "
                        "ORDER BY T_OBS, instrument, channel, year, idx")
    assert locators(ranged) == sql_locators(sql)
    assert set(ranged["Channel"]) == {"171A", "193A"}
    hmi = search(catalog_dir, DAY, a.Wavelength(6173 * u.AA))
    assert set(hmi["Channel"]) == {"Bx", "By", "Bz"} and set(hmi["Instrument"]) == {"HMI"}


def test_sample_equals_the_nearest_macro(catalog, catalog_dir):
    found = search(catalog_dir, DAY, a.Instrument.aia, a.Wavelength(171 * u.AA), a.Sample(12 * u.min))
    sql = catalog.query("SELECT year, channel, idx, time FROM nearest('aia', '171A', '2010-08-27', '2010-08-28', "
                        "INTERVAL 12 minutes, INTERVAL 6 minutes) WHERE idx IS NOT NULL ORDER BY row")
    assert locators(found) == sql_locators(sql)
    assert list(found["Sample Time"].datetime64) == list(sql.to_pandas()["time"].to_numpy())
    assert np.all(np.abs(found["Sample Offset"]) <= 6 * u.min)


def test_tolerance_attr_and_hmi_channel_equal_the_hmi_example(catalog, catalog_dir):
    found = search(catalog_dir, DAY, a.Instrument.hmi, a.sdoml.Channel("Bz"), a.Sample(12 * u.min),
                   a.sdoml.Tolerance(3 * u.min))
    sql = catalog.example("hmi_3min")  # NULL idx: no frame within 3 minutes
    assert len(found) > 0 and locators(found) == [row for row in sql_locators_with_misses(sql) if row[3] is not None]
    assert "Exposure Time" not in found.colnames  # HMI frames have none


def test_keyword_filter_equals_the_short_exposures_example(catalog, catalog_dir):
    found = search(catalog_dir, a.Time("2010-08-27", "2010-08-29"), a.sdoml.Channel("171A"),
                   a.sdoml.Keyword("EXPTIME") < 2)
    sql = catalog.example("short_exposures")
    assert len(found) == len(sql) > 0
    assert locators(found) == sql_locators(sql)
    assert np.all(found["Exposure Time"] < 2 * u.s)
    either = Fido.search(a.Time("2010-08-27", "2010-08-29"), a.sdoml.Keyword("EXPTIME") < 2,
                         a.sdoml.Channel("171A") | a.sdoml.Channel("Bz"), a.sdoml.Catalog(catalog_dir))
    assert locators(either[0]) == sql_locators(sql) and len(either[1]) == 0  # HMI has no EXPTIME


def test_keyword_values_are_bound_not_pasted(catalog, catalog_dir):
    attack = a.sdoml.Keyword("WAVE_STR") == "171_THIN' OR 1=1 --"
    terms = walker.create(DAY & a.sdoml.Channel("171A") & attack)[0]
    channels = wanted_channels(terms, catalog.channels())
    sql, params = search_sql(terms, channels, {i: catalog.columns(i) for i in ("aia", "hmi")})
    assert '"WAVE_STR" = $k0' in sql and "OR 1=1" not in sql and params["k0"] == "171_THIN' OR 1=1 --"
    assert len(search(catalog_dir, DAY, a.sdoml.Channel("171A"), attack)) == 0
    assert fido_error(DAY, a.sdoml.Keyword("EXPTME") < 2, a.sdoml.Catalog(catalog_dir)).startswith(
        "QueryError: no keyword 'EXPTME' in the catalog's aia, hmi headers (did you mean EXPTIME")


def test_physobs_and_channel_pick_hmi_components(catalog_dir):
    vector = search(catalog_dir, DAY, a.Physobs("vector_magnetic_field"))
    assert set(vector["Channel"]) == {"Bx", "By", "Bz"}
    assert set(vector["Physobs"]) == {"vector_magnetic_field"}
    bz = search(catalog_dir, DAY, a.sdoml.Channel("Bz"))
    assert set(bz["Channel"]) == {"Bz"} and len(bz) == len(vector) // 3


def test_an_empty_answer_logs_what_the_catalog_covers(catalog_dir):
    from sunpy import log

    with log.log_to_list() as messages:
        found = search(catalog_dir, a.Time("2015-01-01", "2015-01-02"), a.Instrument.hmi)
    assert len(found) == 0 and "Start Time" in found.colnames
    assert len(messages) == 1 and "\n" not in messages[0].msg
    assert "HMI Bx, By, Bz from 2010" in messages[0].msg and str(catalog_dir) in messages[0].msg


def test_results_table_shows_as_usual(catalog_dir):
    found = search(catalog_dir, DAY, a.sdoml.Channel("171A"))
    assert "Catalog" not in str(found)  # hidden
    assert found.show("Start Time", "Channel", "idx").colnames == ["Start Time", "Channel", "idx"]
    assert {"Start Time", "Instrument", "Wavelength", "Channel", "Exposure Time", "year", "idx",
            "Catalog"} <= set(found.show().colnames)


def test_a_missing_catalog_or_time_is_a_one_line_error(catalog_dir, tmp_path):
    assert fido_error(DAY, a.sdoml.Catalog(tmp_path / "none")) == \
        f"CatalogError: no catalog at {tmp_path / 'none'}: build one with `sdoml-sql build`"
    with pytest.raises(SdomlError, match=r"needs a time range: add a.Time"):
        # Fido itself never routes a query without a.Time here
        SDOMLClient().search(a.sdoml.Channel("171A"), a.sdoml.Catalog(catalog_dir))


# --- routing -----------------------------------------------------------------------------------

def test_routing_beside_vso_alone_with_sdoml_attrs_and_not_jsoc(catalog_dir, monkeypatch, tmp_path):
    standard = (DAY, a.Instrument.aia, a.Wavelength(171 * u.AA))
    monkeypatch.setenv("SDOML_CATALOG", str(catalog_dir))
    assert {VSOClient, SDOMLClient} <= set(Fido._check_registered_widgets(*standard))
    assert Fido._check_registered_widgets(*standard, a.sdoml.Catalog(catalog_dir)) == [SDOMLClient]
    assert Fido._check_registered_widgets(DAY, a.sdoml.Keyword("EXPTIME") < 2) == [SDOMLClient]
    jsoc = Fido._check_registered_widgets(DAY, a.jsoc.Series("aia.lev1_euv_12s"))
    assert JSOCClient in jsoc and SDOMLClient not in jsoc
    assert SDOMLClient not in Fido._check_registered_widgets(DAY, a.Instrument.eit)
    monkeypatch.setenv("SDOML_CATALOG", str(tmp_path / "none"))  # no default catalog: VSO alone
    assert SDOMLClient not in Fido._check_registered_widgets(*standard)


def test_offline_search_with_a_local_catalog_returns_at_once(catalog_dir):
    started = time.perf_counter()
    found = Fido.search(DAY, a.Instrument.aia, a.sdoml.Catalog(catalog_dir))
    # No client may touch the network: a remote look-up offline hangs 30 s or more.
    assert time.perf_counter() - started < 20
    assert len(found) == 1 and len(found[0]) > 0


def test_register_values_list_the_catalog(catalog_dir, monkeypatch):
    monkeypatch.setenv("SDOML_CATALOG", str(catalog_dir))
    values = SDOMLClient.register_values()
    assert [name for name, _ in values[a.Instrument]] == ["AIA", "HMI"]
    assert {name for name, _ in values[a.sdoml.Channel]} == {
        "AIA_94A", "AIA_131A", "AIA_171A", "AIA_193A", "AIA_211A", "AIA_304A", "AIA_335A", "AIA_1600A", "AIA_1700A",
        "HMI_Bx", "HMI_By", "HMI_Bz"}
    assert ("171 Angstrom", "SDOML 171A") in values[a.Wavelength]
    assert a.sdoml.Channel.hmi_bz.value == "Bz" and a.Instrument.aia.value == "AIA"
    assert a.sdoml.Channel.aia_171a.value == "171A" and "one_71a" not in dir(a.sdoml.Channel)


# --- fetch -------------------------------------------------------------------------------------

FETCH_ATTRS = (a.Time("2010-08-27 00:00", "2010-08-27 02:00"), a.Wavelength(171 * u.AA) | a.sdoml.Channel("Bz"))


FIRST_FILE = {"v2": "aia_171a_2010_08_27t00_00_09_37.fits", "v2a": "aia_171a_2010_08_27t00_00_09_29.fits"}


def test_fetched_fits_equal_selection_maps(layout_catalog, layout_catalog_dir, layout, tmp_path):
    catalog, catalog_dir = layout_catalog, layout_catalog_dir
    results = Fido.search(*FETCH_ATTRS, a.sdoml.Catalog(catalog_dir))
    files = Fido.fetch(results, path=tmp_path / "{instrument}" / "{file}", progress=False)
    assert not files.errors and len(files) == len(results[0]) + len(results[1]) > 2
    assert os.path.basename(files[0]) == FIRST_FILE[layout]
    assert all(path.startswith(str(tmp_path / "AIA")) for path in files[:len(results[0])])
    blocks = ((results[0], files[:len(results[0])], "171A"), (results[1], files[len(results[0]):], "Bz"))
    for block, paths, channel in blocks:
        sql = catalog.query("SELECT year, channel, idx FROM frames WHERE channel = ? "
                            "AND T_OBS BETWEEN '2010-08-27 00:00' AND '2010-08-27 02:00' ORDER BY T_OBS", [channel])
        assert sql_locators(sql) == locators(block)
        for fetched, expected in zip(sunpy.map.Map(paths, sequence=True), sql.maps()):
            assert_same_map(fetched, expected)


def assert_same_map(fetched, expected):
    np.testing.assert_array_equal(fetched.data, expected.data)
    assert fetched.date == expected.date and fetched.date.scale == "utc"
    pixels = np.array([[0, 0], [255.5, 255.5], [511, 100]])
    a_world = fetched.wcs.pixel_to_world(pixels[:, 0], pixels[:, 1])
    b_world = expected.wcs.pixel_to_world(pixels[:, 0], pixels[:, 1])
    np.testing.assert_allclose(a_world.Tx.arcsec, b_world.Tx.arcsec, rtol=1e-12)
    np.testing.assert_allclose(a_world.Ty.arcsec, b_world.Ty.arcsec, rtol=1e-12)
    assert fetched.observer_coordinate.separation_3d(expected.observer_coordinate) < 1 * u.m
    assert fetched.wavelength == expected.wavelength and fetched.unit == expected.unit


def test_fetch_reads_each_chunk_once_and_keeps_existing_files(catalog_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    results = Fido.search(a.Time("2010-08-27", "2010-08-29"), a.Instrument.aia, a.Wavelength(171 * u.AA),
                          a.sdoml.Catalog(copy))
    catalog = open_catalog(copy)  # the catalog object the client reads through
    counters = count_chunk_reads(catalog)
    files = Fido.fetch(results, path=tmp_path / "out", progress=False)
    assert len(files) == len(results[0]) > 120  # frames span 9 chunks of 15
    expected = chunk_keys(FlatSelection(catalog, row_locators(results[0])))
    assert sorted(counters["aia"].reads) == sorted(expected) and len(set(expected)) == len(expected) == 9
    counters["aia"].reads.clear()
    again = Fido.fetch(results, path=tmp_path / "out", progress=False)  # Fido's default: overwrite=False
    assert sorted(again) == sorted(files) and counters["aia"].reads == []
    rewritten = Fido.fetch(results, path=tmp_path / "out", progress=False, overwrite=True)
    assert sorted(rewritten) == sorted(files) and sorted(counters["aia"].reads) == sorted(expected)


def test_fetch_failures_go_to_the_errors(catalog_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["sources"]["hmi"]["url"] = str(tmp_path / "missing.zarr")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    results = Fido.search(*FETCH_ATTRS, a.sdoml.Catalog(copy))
    files = Fido.fetch(results, path=tmp_path / "out", progress=False)
    assert len(files) == len(results[0]) and len(files.errors) == len(results[1]) > 0
    assert all("missing.zarr" in str(error.url) for error in files.errors)
    assert not list((tmp_path / "out").glob("hmi_*"))  # nothing half-written
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    files = Fido.fetch(results[0], path=blocked / "{file}", progress=False)
    assert len(files) == 0 and len(files.errors) == len(results[0])


def test_file_names_shared_by_two_rows_get_the_locator(catalog_dir):
    found = search(catalog_dir, DAY, a.sdoml.Channel("171A"))
    doubled = found[[0, 0]]
    doubled["year"][1] = 2020
    assert fits_names(doubled) == [f"aia_171a_2010_08_27t00_00_09_37_{year}_{found['idx'][0]}.fits"
                                   for year in (2010, 2020)]
