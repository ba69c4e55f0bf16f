"""Headers rebuilt from the catalog, and SunPy maps equal to the seed notebook's maps."""

from __future__ import annotations

import json
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map

from fetch_helpers import direct_frame
from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.maps import maps as make_maps

PICK_SQL = """
SELECT channel, year, idx FROM frames
WHERE (channel = '171A' AND year = 2010 AND idx IN (3, 121))
   OR (channel = '193A' AND year = 2020 AND idx = 4)
   OR (channel = 'Bz' AND year = 2010 AND idx = 5)
   OR (channel = 'Bx' AND year = 2012 AND idx = 11)
ORDER BY channel DESC, year, idx
"""
#: Five frames of each sample layout; v2a's: across the 2020 T_OBS format change, 2023, scrambled HMI.
PICKS = {"v2": PICK_SQL, "v2a": """
SELECT channel, year, idx FROM frames
WHERE (channel = '171A' AND year IN (2010, 2023) AND idx = 3)
   OR (channel = '193A' AND year = 2020 AND idx IN (2, 12))
   OR (channel = 'Bx' AND year = 2023 AND idx = 11)
ORDER BY channel DESC, year, idx
"""}


def raw_attrs(catalog, instrument: str, year: int, channel: str) -> dict:
    root = catalog.source(instrument).root
    with open(f"{root}/{year}/{channel}/.zattrs") as handle:
        return json.load(handle)


def notebook_map(catalog, instrument, year, channel, idx):
    """The seed notebook's way: ``hdr = {k: v[i] for k, v in attrs.items()}`` → Map.
    (HMI headers lack WAVEUNIT, which the notebook has to add by hand.)"""
    attrs = raw_attrs(catalog, instrument, year, channel)
    frames = len(attrs["T_OBS"])
    header = {k: v[idx] for k, v in attrs.items() if isinstance(v, list) and len(v) == frames}
    if instrument == "hmi":
        header["WAVEUNIT"] = "Angstrom"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sunpy.map.Map((direct_frame(catalog, instrument, year, channel, idx), header))


def test_header_equals_the_raw_attrs_entry_for_aia_and_hmi(layout_catalog):
    catalog = layout_catalog
    selection = catalog.query("SELECT channel, year, idx FROM frames WHERE idx = 7 AND year IN (2010, 2020) "
                              "AND channel IN ('171A', 'Bz') ORDER BY channel")
    assert selection.columns == ["channel", "year", "idx"]  # only locators selected
    for i, row in selection.locators().iterrows():
        attrs = raw_attrs(catalog, row.instrument, row.year, row.channel)
        frames = len(attrs["T_OBS"])
        expected = {k: v[7] for k, v in attrs.items() if len(v) == frames}
        rebuilt = selection.header(i)
        assert rebuilt == expected
        assert {k: type(v) for k, v in rebuilt.items()} == {k: type(v) for k, v in expected.items()}
    aia = selection.header(0)
    assert aia["GCIEC_X"] == "nan" and isinstance(aia["NAXIS1"], float) and isinstance(aia["NAXIS"], int)
    assert aia["T_OBS"].endswith("Z") and aia["WAVE_STR"].startswith("171")
    assert selection.header(-1)["T_OBS"].endswith("_TAI")


def test_header_of_a_missing_row_raises(catalog):
    selection = catalog.query("SELECT * FROM nearest('aia', '171A', '2010-08-27', '2010-08-28', "
                              "'12 minutes', '3 minutes')")
    missing = int(np.flatnonzero(selection.locators()["idx"].isna())[0])
    with pytest.raises(FetchError, match=f"row {missing} .*has no frame"):
        selection.header(missing)


def test_maps_equal_the_notebook_maps_in_wcs_and_observer(layout_catalog, layout):
    catalog = layout_catalog
    selection = catalog.query(PICKS[layout])
    sequence = selection.maps()
    table = selection.locators()
    assert len(sequence) == len(table) == 5
    for solar_map, row in zip(sequence, table.itertuples(index=False)):
        reference = notebook_map(catalog, row.instrument, int(row.year), row.channel, int(row.idx))
        np.testing.assert_array_equal(solar_map.data, reference.data)
        pixels = np.array([[0, 0], [255.5, 255.5], [511, 100]])
        mine = solar_map.wcs.pixel_to_world(pixels[:, 0], pixels[:, 1])
        theirs = reference.wcs.pixel_to_world(pixels[:, 0], pixels[:, 1])
        assert np.allclose(mine.Tx.to_value(u.arcsec), theirs.Tx.to_value(u.arcsec), atol=1e-9)
        assert np.allclose(mine.Ty.to_value(u.arcsec), theirs.Ty.to_value(u.arcsec), atol=1e-9)
        observer, expected = solar_map.observer_coordinate, reference.observer_coordinate
        assert observer.separation_3d(expected.transform_to(observer)).to_value(u.m) < 1
        assert abs((observer.obstime - expected.obstime).to_value(u.s)) < 1e-3
        assert abs((solar_map.reference_date - reference.reference_date).to_value(u.s)) < 1e-3
        assert solar_map.rsun_obs == reference.rsun_obs


def test_maps_have_channel_colormaps_units_and_utc_dates(catalog):
    selection = catalog.query(PICK_SQL)
    sequence = selection.maps()
    by_channel = {(m.meta["telescop"], int(m.meta.get("wavelnth", 0))): m for m in sequence}
    aia171 = by_channel[("SDO/AIA", 171)]
    assert aia171.cmap.name == "sdoaia171" and aia171.unit == u.DN / u.s
    hmi = [m for m in sequence if m.meta["telescop"] == "SDO/HMI"]
    for solar_map in hmi:
        assert solar_map.cmap.name == "hmimag" and solar_map.unit == u.G
        norm = solar_map.plot_settings["norm"]
        assert norm.vmin == -norm.vmax > -np.inf
        # T_OBS is TAI in the store; the map's meta gives UTC (34 s earlier in 2010, 35 s after 2012-07-01)
        assert "TAI" not in solar_map.meta["t_obs"]
    assert all(not (isinstance(v, str) and v == "nan") for m in sequence for v in m.meta.values())


def test_maps_sorted_by_date_and_downsampled(catalog):
    selection = catalog.query(PICK_SQL)
    in_order = selection.maps()
    dates = [m.date for m in in_order]
    assert dates != sorted(dates)
    by_date = selection.maps(sortby="date")
    assert [m.date for m in by_date] == sorted(dates)
    small = selection.maps(downsample=2, method="mean")
    for big, half in zip(in_order, small):
        assert half.data.shape == (256, 256)
        centre = big.wcs.pixel_to_world(255.5, 255.5)
        again = half.wcs.pixel_to_world(127.5, 127.5)
        assert abs((centre.Tx - again.Tx).to_value(u.arcsec)) < 1e-6
        assert abs((centre.Ty - again.Ty).to_value(u.arcsec)) < 1e-6
    stride = selection.maps(downsample=2)[0]
    corner = in_order[0].wcs.pixel_to_world(4, 6)
    assert abs((stride.wcs.pixel_to_world(2, 3).Tx - corner.Tx).to_value(u.arcsec)) < 1e-6


def test_plot_map_png(catalog, tmp_path):
    from sdoml_sql.fetch.maps import plot_map

    selection = catalog.query(PICK_SQL)
    path = tmp_path / "map.png"
    plot_map(selection, 0, path)
    from PIL import Image

    with Image.open(path) as image:
        assert image.size[0] > 300 and len(np.unique(np.asarray(image.convert("L")))) > 50


def test_header_records_from_the_row_cache_are_fresh_dicts(catalog):
    from sdoml_sql.fetch import headers as headers_module

    locators = catalog.query("SELECT channel, year, idx FROM frames WHERE idx = 5 AND year = 2010 "
                             "AND channel = '171A'").locators()
    raw, rows, _ = headers_module.header_records(catalog, locators)
    exposure = rows[0]["EXPTIME"]
    raw[0]["EXPTIME"] = rows[0]["EXPTIME"] = -1.0  # a caller changing what it got
    again_raw, again_rows, _ = headers_module.header_records(catalog, locators)
    assert again_rows[0]["EXPTIME"] == exposure == again_raw[0]["EXPTIME"] != -1.0


def test_maps_reject_nan_mode(catalog):
    selection = catalog.query(PICK_SQL)
    with pytest.raises(FetchError, match="maps need a frame per row"):
        make_maps(selection, missing="nan")


def test_header_records_are_the_same_from_the_row_group_cache_and_under_a_tight_bound(catalog, monkeypatch):
    from sdoml_sql.fetch import headers as headers_module

    locators = catalog.query("SELECT channel, year, idx FROM frames WHERE idx IN (3, 7, 11) "
                             "AND year = 2010 AND channel IN ('171A', 'Bz') ORDER BY channel, idx").locators()
    headers_module.clear_row_group_cache()
    cold = headers_module.header_records(catalog, locators)
    warm = headers_module.header_records(catalog, locators)
    monkeypatch.setattr(headers_module, "ROW_GROUP_CACHE_BYTES", 1)  # keeps one entry at a time
    headers_module.clear_row_group_cache()
    tight = headers_module.header_records(catalog, locators)
    assert cold == warm == tight
    assert [raw["T_OBS"] for raw in cold[0]] == [catalog.query(
        f"SELECT channel, year, idx FROM frames WHERE idx = {idx} AND year = 2010 AND channel = '{channel}'"
    ).header(0)["T_OBS"] for channel, idx in zip(locators["channel"], locators["idx"])]
    assert len(headers_module._row_groups) == 1
