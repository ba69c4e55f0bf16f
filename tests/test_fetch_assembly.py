"""``fetch().compute()`` and maps read straight into one preallocated output
(:mod:`sdoml_sql.fetch.assemble`): zarr's own pixels on 15- and 120-frame chunks, for one
frame, an hourly cadence of three channels (flat and aligned, with missing cells) and
downsampling; the dask graph still serves slices, ``dask.compute``, callbacks and clusters;
a selection's locators are worked out once."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.callbacks import Callback

from sdoml_sql import Catalog
from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.graph import FrameStack
from sdoml_sql.query.selection import Selection

CHANNELS = ("171A", "193A", "304A")
FRAMES = 150  # 15 hours at the sample's 6-minute cadence: 10 chunks of 15, 2 of 120
HOURLY = ("SELECT year, channel, idx FROM aia WHERE year = 2010 AND minute(T_OBS) < 6 "
          "ORDER BY channel, T_OBS")


@pytest.fixture(scope="module", params=[15, 120], ids=["chunks15", "chunks120"])
def chunked(request, tmp_path_factory):
    """A catalog of 3 AIA channels × 150 frames in ``request.param``-frame chunks, and the AIA store."""
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    directory = tmp_path_factory.mktemp(f"assembly{request.param}")
    paths = write_sample(directory / "stores", aia_frames=FRAMES, years=(2010,), hmi_years=(2010,), hmi_frames=1,
                         eve=False, channels=CHANNELS, chunk_frames=request.param)
    build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), catalog=directory / "catalog", progress=False)
    return Catalog(directory / "catalog"), paths["aia"]


def zarr_frames(store, locators) -> np.ndarray:
    """The frames as zarr reads them, each from a full read of its array."""
    arrays = {}
    out = []
    for row in locators.itertuples(index=False):
        key = f"{int(row.year)}/{row.channel}"
        if key not in arrays:
            arrays[key] = np.asarray(zarr.open_array(str(store / key), mode="r")[:])
        out.append(arrays[key][int(row.idx)])
    return np.stack(out)


def graph_compute(array) -> np.ndarray:
    """The dask graph's own result (what compute() gave before)."""
    return da.Array.compute(array)


def test_one_frame_is_read_without_running_the_graph_and_is_zarrs(chunked):
    catalog, store = chunked
    t = int(catalog.source("aia").array("2010/171A").chunks[0])
    frame = (t + t // 2) % (FRAMES - 10)  # inside a chunk, in the second where there is one
    selection = catalog.query(f"SELECT year, channel, idx FROM aia WHERE channel = '171A' AND idx = {frame}")
    array = selection.fetch()
    assert isinstance(array, FrameStack) and isinstance(array, da.Array)
    direct = array.compute()
    assert direct.shape == (1, 512, 512) and direct.dtype == np.float32 and direct.flags.owndata
    np.testing.assert_array_equal(direct, zarr_frames(store, selection.locators()))
    np.testing.assert_array_equal(direct, graph_compute(array))


def test_compute_skips_the_dask_graph(chunked, monkeypatch):
    catalog, _ = chunked
    selection = catalog.query(HOURLY)
    array = selection.fetch()
    def refuse(*args, **kwargs):
        raise AssertionError("graph ran")

    monkeypatch.setattr("dask.threaded.get_async", refuse)
    assert array.compute().shape == array.shape
    with pytest.raises(AssertionError, match="graph ran"):
        array[:2].compute()  # a slice is dask's


def test_hourly_cadence_of_three_channels_is_zarrs(chunked):
    catalog, store = chunked
    selection = catalog.query(HOURLY)
    locators = selection.locators()
    assert locators["channel"].nunique() == 3 and (locators.groupby("channel").size() >= 12).all()
    array = selection.fetch()
    direct = array.compute()
    np.testing.assert_array_equal(direct, zarr_frames(store, locators))
    np.testing.assert_array_equal(direct, graph_compute(array))
    assert selection.plan().partial_frames > 0


def test_aligned_hourly_grid_with_missing_cells_matches_the_graph(chunked):
    catalog, store = chunked
    channels = ", ".join(f"'{c}'" for c in CHANNELS)
    start = catalog.query("SELECT min(T_OBS) FROM aia").to_pandas().iloc[0, 0].floor("h")
    stop = start + np.timedelta64(20, "h")  # the last 5 grid times have no frames
    selection = catalog.query(f"SELECT * FROM aligned([{channels}], '{start}', '{stop}', "
                              "INTERVAL 1 hour, INTERVAL 3 minutes)")
    array = selection.fetch(missing="nan")
    direct = array.compute()
    assert direct.shape == array.shape and direct.shape[1] == 3
    np.testing.assert_array_equal(direct, graph_compute(array))
    present = selection.locators().dropna(subset=["idx"])
    missing_cells = np.isnan(direct).all(axis=(2, 3))
    assert missing_cells.any() and (~missing_cells).sum() == len(present)
    np.testing.assert_array_equal(direct[~missing_cells], zarr_frames(store, present))


@pytest.mark.parametrize("method", ["stride", "mean"])
def test_downsampled_compute_matches_the_graph(chunked, method):
    catalog, _ = chunked
    selection = catalog.query("SELECT year, channel, idx FROM aia WHERE idx % 7 = 3 ORDER BY idx DESC, channel")
    array = selection.fetch(downsample=4, method=method)
    np.testing.assert_array_equal(array.compute(), graph_compute(array))


def test_the_graph_still_runs_where_dask_is_asked(chunked):
    catalog, _ = chunked
    selection = catalog.query(HOURLY)
    array = selection.fetch()
    expected = array.compute()
    calls = []

    class Watch(Callback):
        def _start(self, dsk):
            calls.append("callback")

    def recording_get(dsk, keys, **kwargs):
        calls.append("get")
        return dask.get(dsk, keys, **kwargs)

    with Watch():  # a progress bar or profiler sees the graph run
        np.testing.assert_array_equal(array.compute(), expected)
    with dask.config.set(scheduler=recording_get):  # a scheduler of one's own (a cluster's client)
        np.testing.assert_array_equal(array.compute(), expected)
    np.testing.assert_array_equal(array.compute(scheduler="sync"), expected)
    (again,) = dask.compute(array)
    np.testing.assert_array_equal(again, expected)
    assert calls == ["callback", "get"]


def test_compute_after_a_setitem_is_dasks(chunked):
    catalog, _ = chunked
    array = catalog.query(HOURLY).fetch()
    array[0] = 7.0
    assert (array.compute()[0] == 7.0).all()


def test_a_damaged_chunk_read_on_a_thread_fails_in_one_named_line(chunked, tmp_path):
    import shutil

    catalog, store = chunked
    copy = tmp_path / "aia.zarr"
    shutil.copytree(store, copy)
    array = zarr.open_array(store=str(copy), path="2010/193A", mode="r")
    key = copy / "2010/193A" / "1.0.0"
    key.write_bytes(key.read_bytes()[:40])
    from sdoml_sql.fetch.assemble import read_frames
    from sdoml_sql.fetch.stack import ArrayRef, FrameGrid, plan_layout

    t = int(array.chunks[0])
    ids = np.zeros((3, 1), np.int64)
    idx = np.array([[1], [2], [t + 1]], np.int64)
    grid = FrameGrid([ArrayRef("aia", 2010, "193A")], ids, idx, False, None)
    layout = plan_layout(grid, [array])
    assert len(layout.reads) == 2
    with dask.config.set(num_workers=2):
        with pytest.raises(FetchError, match=r"aia 2010/193A frames .*chunk 2010/193A/1\.0\.0.*damaged"):
            read_frames(grid, layout, 1, "stride", (3, 512, 512))


def test_locators_are_worked_out_once_per_selection(chunked, monkeypatch):
    catalog, _ = chunked
    selection = catalog.query(HOURLY)
    made = []
    original = Selection._make_locators
    monkeypatch.setattr(Selection, "_make_locators", lambda self: made.append(1) or original(self))
    first = selection.locators()
    first.loc[0, "idx"] = -5  # the caller's copy
    selection.fetch().compute()
    selection.plan()
    one = catalog.query(HOURLY + " LIMIT 1")
    one.maps()
    assert len(made) == 2
    assert selection.locators()["idx"].iloc[0] != -5


def test_locators_need_no_query_to_name_instruments(chunked, monkeypatch):
    catalog, _ = chunked
    selection = catalog.query(HOURLY)  # no instrument column: channels name it
    expected = dict(catalog._cursor().execute("SELECT DISTINCT channel, instrument FROM partitions").fetchall())
    assert catalog.channels() == expected

    def no_query(*args, **kwargs):
        raise AssertionError("a DuckDB query")

    monkeypatch.setattr(type(catalog), "_cursor", no_query)
    assert set(selection.locators()["instrument"]) == {"aia"}


def test_a_big_output_gets_its_pages_at_once_and_the_same_pixels(chunked, monkeypatch):
    import mmap

    from sdoml_sql.fetch import assemble

    catalog, store = chunked
    selection = catalog.query(HOURLY)
    monkeypatch.setattr(assemble, "POPULATE_BYTES", 1)  # the sample's hourly fetch is 47 MB, under the real limit
    direct = selection.fetch().compute()
    owner = direct
    while isinstance(owner, np.ndarray):
        owner = owner.base
    owner = owner.obj if isinstance(owner, memoryview) else owner
    if hasattr(mmap, "MAP_POPULATE"):
        assert isinstance(owner, mmap.mmap)
    assert direct.flags.writeable and direct.flags.c_contiguous
    np.testing.assert_array_equal(direct, zarr_frames(store, selection.locators()))
    direct[0] = 0  # the caller's own memory
