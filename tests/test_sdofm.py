"""SDO-FM's aligned index from SQL (sql/examples/sdofm_aligndata.sql) on the SDOMLv2a sample:
the CSV the documented command writes, read the way SDO-FM's loader reads it, gives the frames
the catalog says; and where it differs from SDO-FM's own rounding, it is nearer."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zarr

from sdoml_sql.catalog_builder.times import parse_times

AIA = ["131A", "1600A", "1700A", "171A", "193A", "211A", "304A", "335A", "94A"]  # SDO-FM's ALL_WAVELENGTHS
HMI = ["Bx", "By", "Bz"]
CADENCE, TOLERANCE = pd.Timedelta("12min"), pd.Timedelta("6min")


@pytest.fixture(scope="module")
def aligndata(v2a_catalog_dir, tmp_path_factory):
    """The documented command's CSV, read back as SDO-FM reads its aligndata cache."""
    path = tmp_path_factory.mktemp("sdofm") / "aligndata.csv"
    result = subprocess.run([sys.executable, "-m", "sdoml_sql.cli", "query", "@sql/examples/sdofm_aligndata.sql",
                             "--catalog", str(v2a_catalog_dir), "--format", "csv", "--output", str(path)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(path)  # SDOMLDataModule.__aligntime, cached branch
    table["Time"] = pd.to_datetime(table["Time"])
    return table.set_index("Time")


def utc_times(strings) -> np.ndarray:
    """The catalog's reading of T_OBS strings (TAI converted), as datetime64[us]."""
    import pyarrow as pa

    return np.asarray(parse_times(pa.array(list(strings)))[0].to_numpy(zero_copy_only=False), "datetime64[us]")


def test_the_loaders_reads_are_the_catalogs_frames(aligndata, v2a_catalog, v2a_sample_paths):
    assert len(aligndata) > 0
    assert list(aligndata.columns) == [f"idx_{c}" for c in AIA + HMI] + ["idx_eve"]
    aia = zarr.open_group(str(v2a_sample_paths["aia"]), mode="r", zarr_format=2)
    hmi = zarr.open_group(str(v2a_sample_paths["hmi"]), mode="r", zarr_format=2)
    eve = zarr.open_group(str(v2a_sample_paths["eve"]), mode="r", zarr_format=2)  # flat: lines at the root
    times = ", ".join(f"TIMESTAMP '{t}'" for t in aligndata.index)
    first, last = aligndata.index.min(), aligndata.index.max() + CADENCE
    selection = v2a_catalog.query(f"""
        SELECT * FROM aligned({AIA + HMI}, '{first}', '{last}', INTERVAL 12 minutes, INTERVAL 6 minutes)
        WHERE time IN ({times}) ORDER BY time""")
    cube = selection.fetch().compute()  # (time, channel, y, x), as the catalog reads the frames
    assert cube.shape[:2] == (len(aligndata), len(AIA + HMI))
    eve_times = pd.to_datetime(pd.Series(eve["Time"][:].astype(str)))
    for row, (time, entry) in enumerate(aligndata.iterrows()):
        year = str(time.year)  # SDOMLDataset.get_aia_image: self.aia_data[year][wavelength][idx, :, :]
        for column, channel in enumerate(AIA + HMI):
            # get_hmi_image reads every component at idx_{components[0]}: the same frame in v2a
            index = int(entry[f"idx_{channel}"] if channel not in HMI else entry["idx_Bx"])
            array = (aia if channel in AIA else hmi)[year][channel]
            np.testing.assert_array_equal(array[index, :, :], cube[row, column], err_msg=f"{time} {channel}")
            t_obs = utc_times([array.attrs["T_OBS"][index]])[0]
            assert abs(pd.Timestamp(t_obs) - time) <= TOLERANCE, (time, channel, index)
        index = int(entry["idx_eve"])  # get_eve: self.eve_data[ion][idx_eve]
        assert abs(eve_times[index] - time) <= TOLERANCE
        assert all(eve[line][index] > 0 for line in eve.array_keys() if line not in ("Time", "Fe XVI_2"))


def sdofm_rounding(aia, hmi, eve) -> pd.DataFrame:
    """SDO-FM's own __aligntime (sdofm/datasets/SDOML.py) on the v2a sample's 2010 (its EVE years):
    T_OBS cut to whole seconds and rounded to the cadence, duplicates dropped keeping the first in
    array order, HMI's TAI strings read as UTC, channels inner-joined, EVE likewise, then the
    negative EVE samples dropped."""
    joined = None
    for channel, group in [(c, aia) for c in AIA] + [(c, hmi) for c in HMI]:
        strings = list(group["2010"][channel].attrs["T_OBS"])
        if group is hmi:
            strings = [s[:19].replace(".", "-").replace("_", "T") for s in strings]
        times = pd.to_datetime(pd.to_datetime(strings, format="mixed").strftime("%Y-%m-%d %H:%M:%S"))
        frame = pd.DataFrame({"Time": times.tz_localize(None).round(CADENCE),
                              f"idx_{channel}": np.arange(len(strings))})
        frame = frame.drop_duplicates(subset="Time", keep="first").set_index("Time")
        joined = frame if joined is None else joined.join(frame, how="inner")
    samples = pd.DataFrame({"Time": pd.to_datetime(eve["Time"][:].astype(str)).round(CADENCE),
                            "idx_eve": np.arange(eve["Time"].shape[0])})
    joined = joined.join(samples.drop_duplicates(subset="Time", keep="first").set_index("Time"), how="inner")
    for line in eve.array_keys():
        if line not in ("Time", "Fe XVI_2"):
            joined = joined.loc[eve[line][:][joined["idx_eve"].to_numpy()] > 0]
    return joined.sort_index()


def test_where_it_differs_from_sdofms_rounding_our_frame_is_nearer(aligndata, v2a_sample_paths):
    groups = {name: zarr.open_group(str(path), mode="r", zarr_format=2) for name, path in v2a_sample_paths.items()}
    theirs = sdofm_rounding(groups["aia"], groups["hmi"], groups["eve"])
    ours = aligndata[aligndata.index.year == 2010]
    common = ours.index.intersection(theirs.index)
    assert len(common) > 0
    differing = 0
    for channel in AIA + HMI:
        group = groups["aia" if channel in AIA else "hmi"]["2010"][channel]
        t_obs = pd.to_datetime(utc_times(group.attrs["T_OBS"]))
        for time in common:
            mine, sdofm = int(ours.at[time, f"idx_{channel}"]), int(theirs.at[time, f"idx_{channel}"])
            if mine != sdofm:
                differing += 1
                assert abs(t_obs[mine] - time) <= abs(t_obs[sdofm] - time), (time, channel)
    # AIA's 6-minute slots sit a few seconds after the grid time: the frame 6 min + a few s before a
    # grid time also rounds to it and comes first in array order, so SDO-FM keeps that one
    assert differing > 0
