"""The fetch layer against the sample stores and catalog: pixel identity with direct Zarr
reads, chunk reads counted, missing rows, aligned grids, xarray, a dask cluster, the CLI."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from fetch_helpers import LocatorSelection, count_chunk_reads, direct_frame, locators
from sdoml_sql import fetch as fetch_module
from sdoml_sql.cli import main
from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.frames import PARTIAL_MAX_SHARE
from sdoml_sql.query.catalog import Catalog

MIXED_SQL = """
SELECT instrument, year, channel, idx FROM frames
WHERE channel IN ('171A', '193A', 'Bz') AND idx % 4 = 1
ORDER BY hash(channel, year, idx)
"""
DAY_171 = "SELECT * FROM nearest('aia', '171A', '2010-08-27', '2010-08-28', '12 minutes', '3 minutes')"


@pytest.fixture()
def catalog(catalog_dir):
    """A fresh Catalog per test (its sources can be wrapped to count reads)."""
    return Catalog(catalog_dir)


@pytest.fixture()
def any_catalog(layout_catalog_dir):
    """A fresh Catalog of the v2 or the v2a sample (tests taking it run on both layouts)."""
    return Catalog(layout_catalog_dir)


def expected_frames(catalog, table: pd.DataFrame) -> np.ndarray:
    return np.stack([direct_frame(catalog, r.instrument, int(r.year), r.channel, int(r.idx))
                     for r in table.itertuples(index=False)])


def test_mixed_order_channels_years_instruments_are_pixel_identical(any_catalog):
    catalog = any_catalog
    selection = catalog.query(MIXED_SQL)
    table = selection.locators()
    assert table["instrument"].nunique() == 2 and table["year"].nunique() == 3 and table["channel"].nunique() == 3
    assert not table.equals(table.sort_values(["instrument", "year", "channel", "idx"]).reset_index(drop=True))
    array = selection.fetch()
    assert array.dtype == np.float32 and array.shape == (len(table), 512, 512)
    np.testing.assert_array_equal(array.compute(), expected_frames(catalog, table))


def test_each_chunk_is_read_once_and_the_graph_has_one_task_per_run(catalog):
    selection = catalog.query(MIXED_SQL)
    counters = count_chunk_reads(catalog)
    array = selection.fetch()
    assert all(not c.reads for c in counters.values())  # lazy: nothing read yet
    array.compute()
    reads = counters["aia"].reads + counters["hmi"].reads
    expected = fetch_module.chunk_keys(selection)
    assert sorted(reads) == sorted(expected)
    assert len(reads) == len(set(reads)) == selection.plan().chunks
    chunk = catalog.source("aia").array("2010/171A").chunks[0]
    assert chunk == catalog.source("hmi").array("2010/Bz").chunks[0]
    runs = (selection.locators()[["instrument", "year", "channel"]].astype(str).agg("/".join, axis=1)
            + "#" + (selection.locators()["idx"] // chunk).astype(str))
    n_runs = int((runs != runs.shift()).sum())
    assert len(array.__dask_graph__()) <= n_runs + len(expected)


def test_a_day_of_one_channel_reads_its_chunks_in_one_task_each(catalog):
    selection = catalog.query("SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 "
                              "ORDER BY idx")
    counters = count_chunk_reads(catalog)
    array = selection.fetch()
    t = catalog.source("aia").array("2010/171A").chunks[0]
    n_chunks = -(-len(selection) // t)
    assert len(array.__dask_graph__()) == n_chunks
    assert array.chunks[0] == (t,) * (n_chunks - 1) + (len(selection) - t * (n_chunks - 1),)
    result = array.compute()
    assert sorted(counters["aia"].reads) == sorted(f"2010/171A/{n}.0.0" for n in range(n_chunks))
    last = f"2010/171A/{n_chunks - 1}.0.0"  # holds the few frames past the last full chunk: read partially
    assert counters["aia"].headers == ([last] if 0 < len(selection) % t <= PARTIAL_MAX_SHARE * t else [])
    assert {key for key, _, _ in counters["aia"].ranges} <= {last}
    rows = [0, t - 1, t, -1]
    np.testing.assert_array_equal(result[rows], expected_frames(catalog, selection.locators().iloc[rows]))


def test_rows_sharing_a_chunk_share_the_read(catalog):
    rows = [("aia", 2010, "171A", 5), ("aia", 2010, "193A", 2), ("aia", 2010, "171A", 3),
            ("aia", 2010, "193A", 4), ("aia", 2010, "171A", 5)]
    selection = LocatorSelection(catalog, locators(rows))
    counters = count_chunk_reads(catalog)
    result = selection_fetch(selection).compute()
    assert sorted(counters["aia"].reads) == ["2010/171A/0.0.0", "2010/193A/0.0.0"]
    np.testing.assert_array_equal(result, expected_frames(catalog, selection.table))


def selection_fetch(selection, **options):
    return fetch_module.fetch(selection, **options)


@pytest.mark.parametrize("method", ["stride", "mean"])
def test_downsample_matches_numpy_on_direct_reads(catalog, method):
    selection = catalog.query(MIXED_SQL)
    reference = expected_frames(catalog, selection.locators())
    result = selection.fetch(downsample=2, method=method).compute()
    assert result.shape == (len(reference), 256, 256)
    if method == "stride":
        expected = reference[:, ::2, ::2]
    else:
        expected = reference.reshape(len(reference), 256, 2, 256, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(result, reference[:, ::2, ::2]) or method == "stride"


def test_bad_downsample_arguments_raise(catalog):
    selection = catalog.query(MIXED_SQL)
    with pytest.raises(FetchError, match="method='median'"):
        selection.fetch(method="median")
    with pytest.raises(FetchError, match="positive integer"):
        selection.fetch(downsample=0)
    with pytest.raises(FetchError, match="divides"):
        selection.fetch(downsample=3, method="mean")
    assert selection.fetch(downsample=3).shape[1:] == (171, 171)


def test_missing_rows_raise_by_default_naming_grid_times(catalog):
    selection = catalog.query(DAY_171)
    table = selection.locators()
    assert table["idx"].isna().any() and table["idx"].notna().any()
    with pytest.raises(FetchError) as error:
        selection.fetch()
    message = str(error.value)
    first_miss = int(np.flatnonzero(table["idx"].isna())[0])
    assert "\n" not in message and f"row {first_miss} (aia 171A at 2010-08-27" in message
    assert "missing='nan'" in message


def test_missing_nan_fills_and_drop_removes(catalog):
    selection = catalog.query(DAY_171)
    table = selection.locators()
    present = table["idx"].notna().to_numpy()
    filled = selection.fetch(missing="nan").compute()
    assert filled.shape[0] == len(table) == 120
    assert np.isnan(filled[~present]).all()
    np.testing.assert_array_equal(filled[present], expected_frames(catalog, table[present]))
    dropped = selection.fetch(missing="drop").compute()
    np.testing.assert_array_equal(dropped, filled[present])
    with pytest.raises(FetchError, match="missing='skip'"):
        selection.fetch(missing="skip")


def test_plan_counts_chunks_and_bytes_before_reading(catalog):
    selection = catalog.query(DAY_171)
    counters = count_chunk_reads(catalog)
    quick = fetch_module.plan(selection, missing="nan")  # fetch's default, "raise", would refuse
    assert counters["aia"].reads == []
    plan = fetch_module.plan(selection, stored_sizes=True, missing="nan")
    assert counters["aia"].reads == counters["aia"].headers and counters["aia"].ranges == []  # headers only
    assert len(counters["aia"].headers) == plan.chunks - plan.whole_chunks
    present = int(selection.locators()["idx"].notna().sum())
    assert plan.rows == 120 and plan.missing_rows == 120 - present
    assert plan.chunks == len(fetch_module.chunk_keys(selection)) == quick.chunks
    t, frame = 15, 512 * 512 * 4
    assert 0 < plan.partial_frames <= present and plan.partial_bytes == plan.partial_frames * frame
    assert plan.whole_bytes == plan.whole_chunks * t * frame
    assert plan.read_bytes == plan.whole_bytes + plan.partial_bytes == quick.read_bytes
    assert 0 < plan.stored_bytes < plan.read_bytes
    assert plan.output_bytes == 120 * frame
    assert f"{plan.chunks} chunks: {plan.whole_chunks} whole" in str(plan)
    assert f"{plan.partial_frames} frames from {plan.chunks - plan.whole_chunks} chunks, partially" in str(plan)


def test_aligned_grid_fetches_time_by_channel(any_catalog):
    catalog = any_catalog
    selection = catalog.query("SELECT * FROM aligned(['171A', '193A', 'Bz'], '2010-08-27 00:00', "
                              "'2010-08-27 06:00', '12 minutes', '6 minutes')")
    assert selection.kind == "aligned"
    table = selection.locators()
    with pytest.raises(FetchError, match="grid times"):
        selection.fetch()
    array = selection.fetch(missing="nan")
    n_times = table["row"].nunique()
    assert array.shape == (n_times, 3, 512, 512)
    values = array.compute()
    rows = pd.Index(pd.unique(table["row"]))
    channels = ["171A", "193A", "Bz"]
    for r in table.itertuples(index=False):
        frame = values[rows.get_loc(r.row), channels.index(r.channel)]
        if pd.isna(r.idx):
            assert np.isnan(frame).all()
        else:
            direct = direct_frame(catalog, r.instrument, int(r.year), r.channel, int(r.idx))
            np.testing.assert_array_equal(frame, direct)
    kept = selection.fetch(missing="drop")
    complete = table.groupby("row")["idx"].apply(lambda s: s.notna().all())
    assert kept.shape[0] == int(complete.sum()) > 0


def test_to_xarray_carries_coordinates_and_headers(catalog):
    selection = catalog.query("SELECT year, channel, idx FROM aia WHERE channel IN ('171A', '193A') "
                              "AND year = 2010 AND idx < 3 ORDER BY channel DESC, idx")
    data = selection.to_xarray(downsample=4)
    assert data.dims == ("frame", "y", "x") and data.shape == (6, 128, 128)
    assert list(data["channel"].values) == ["193A"] * 3 + ["171A"] * 3
    assert list(data["idx"].values) == [0, 1, 2, 0, 1, 2]
    assert data["WAVELNTH"].values.tolist() == [193] * 3 + [171] * 3
    assert data["T_OBS"].dtype.kind == "M"
    np.testing.assert_array_equal(data[3].values, direct_frame(catalog, "aia", 2010, "171A", 0)[::4, ::4])

    grid = catalog.query("SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27 00:00', '2010-08-27 03:00', "
                         "'12 minutes', '6 minutes')").to_xarray(missing="nan", downsample=8)
    assert grid.dims == ("time", "channel", "y", "x") and list(grid["channel"].values) == ["171A", "Bz"]
    assert grid["time"].dtype.kind == "M" and grid["T_OBS"].dims == ("time", "channel")
    hit = np.argwhere(~np.isnan(grid["idx"].values))[0]
    assert grid["T_OBS"].values[tuple(hit)] == grid["T_OBS"].values[tuple(hit)]  # not NaT where a frame is


def test_graph_pickles_and_runs_on_a_local_cluster(catalog):
    distributed = pytest.importorskip("distributed")
    selection = catalog.query(MIXED_SQL)
    array = selection.fetch(downsample=2, method="mean")
    pickle.loads(pickle.dumps(dict(array.__dask_graph__())))
    expected = expected_frames(catalog, selection.locators()).reshape(-1, 256, 2, 256, 2).mean(axis=(2, 4))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = client.compute(array).result()
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_bad_locators_name_the_problem(catalog):
    too_far = LocatorSelection(catalog, locators([("aia", 2010, "171A", 10_000)]))
    frames = catalog.manifest["partitions"]["aia/year=2010/channel=171A"]["rows"]
    with pytest.raises(FetchError, match=rf"aia 2010/171A has {frames} frames; selection asks for idx 10000"):
        fetch_module.fetch(too_far)
    with pytest.raises(FetchError, match="no frame locators"):
        fetch_module.fetch(LocatorSelection(catalog, pd.DataFrame({"idx": [1]})))


# --- CLI ---------------------------------------------------------------------------------

def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


FETCH_SQL = "SELECT year, channel, idx FROM aia WHERE channel = '193A' AND year = 2010 AND idx < 4 ORDER BY idx DESC"


def test_cli_fetch_npy(catalog_dir, tmp_path):
    catalog = Catalog(catalog_dir)
    result = run_cli("fetch", FETCH_SQL, "--catalog", catalog_dir, "--output", tmp_path / "f.npy", "--downsample", 2)
    assert result.exit_code == 0, result.output
    values = np.load(tmp_path / "f.npy")
    assert values.shape == (4, 256, 256)
    np.testing.assert_array_equal(values[0], direct_frame(catalog, "aia", 2010, "193A", 3)[::2, ::2])
    sidecar = pd.read_parquet(tmp_path / "f.headers.parquet")
    assert sidecar["idx"].tolist() == [3, 2, 1, 0] and "EXPTIME" in sidecar.columns


def test_cli_fetch_zarr_with_parquet_headers(catalog_dir, tmp_path):
    catalog = Catalog(catalog_dir)
    out = tmp_path / "f.zarr"
    result = run_cli("fetch", FETCH_SQL, "--catalog", catalog_dir, "--output", out)
    assert result.exit_code == 0, result.output
    stored = zarr.open_group(str(out), mode="r")["frames"]  # an xarray dataset: the stack is its frames variable
    assert stored.shape == (4, 512, 512)
    np.testing.assert_array_equal(stored[1], direct_frame(catalog, "aia", 2010, "193A", 2))
    headers = pd.read_parquet(tmp_path / "f.headers.parquet")
    assert headers["WAVELNTH"].tolist() == [193] * 4


def test_cli_fetch_fits_directory(catalog_dir, tmp_path):
    from astropy.io import fits

    catalog = Catalog(catalog_dir)
    out = tmp_path / "fits"
    result = run_cli("fetch", FETCH_SQL, "--catalog", catalog_dir, "--output", out, "--format", "fits")
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.fits"))
    assert len(files) == 4
    with fits.open(files[0]) as hdul:
        data, header = hdul[0].data, hdul[0].header
        assert header["WAVELNTH"] == 193 and header["T_OBS"].startswith("2010-08-2")
        assert "BZERO" not in header and "GCIEC_X" not in header  # 'nan' strings dropped
        assert data.shape == (512, 512) and "_aia_193A_" in files[0].name
    frames = {int(f.name.split("_")[0]): f for f in files}
    with fits.open(frames[0]) as hdul:
        np.testing.assert_array_equal(hdul[0].data, direct_frame(catalog, "aia", 2010, "193A", 3))


def test_cli_fetch_reports_missing_rows_in_one_line(catalog_dir, tmp_path):
    result = CliRunner().invoke(main, ["fetch", DAY_171, "--catalog", str(catalog_dir), "--output",
                                       str(tmp_path / "x.npy")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "no frame" in result.output
