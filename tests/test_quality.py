"""Frame quality: the statistics pass over the sample stores, the frame_stats and frame_quality
views, the seeded defects flagged exactly, good_only in the macros, the plot, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr

import sql_brute as brute
from sdoml_sql import Catalog
from sdoml_sql.exceptions import CatalogError, StoreError
from sdoml_sql.files import PARTIAL_MARK
from sdoml_sql.quality.stats import compute_frame_stats
from sdoml_sql.stores.sample import SEEDED_DEFECTS
from test_bad_input import assert_one_line_error

PY = sys.executable
QUIRKY_YEAR = 2020
FLAG_OF_DEFECT = {"long_exposure": "exposure_outlier", "zero_exposure": "exposure_outlier"}
STAT_COLUMNS = ["nan_count", "zero_count", "min", "max", "mean", "std", "p01", "p50", "p99",
                "disk_mean", "offdisk_mean"]


def copy_catalog(catalog_dir: Path, target: Path) -> Path:
    shutil.copytree(catalog_dir, target, ignore=shutil.ignore_patterns("frame_stats", ".lock", "init.sql"))
    return target


@pytest.fixture(scope="module")
def stats_dir(catalog_dir, tmp_path_factory):
    """A copy of the session catalog with frame statistics computed (threads)."""
    directory = copy_catalog(catalog_dir, tmp_path_factory.mktemp("stats") / "catalog")
    report = compute_frame_stats(directory, progress=False)
    assert report.written and not report.skipped
    return directory


@pytest.fixture(scope="module")
def stats_catalog(stats_dir):
    return Catalog(stats_dir)


@pytest.fixture(scope="module")
def v2a_stats_catalog(v2a_catalog_dir, tmp_path_factory):
    """A copy of the v2a catalog with statistics of its last year's 171A and Bz (HMI out of time order)."""
    directory = copy_catalog(v2a_catalog_dir, tmp_path_factory.mktemp("stats-v2a") / "catalog")
    report = compute_frame_stats(directory, years=[2023], channels=["171A", "Bz"], progress=False)
    assert sorted(report.written) == ["frame_stats/instrument=aia/year=2023/channel=171A",
                                      "frame_stats/instrument=hmi/year=2023/channel=Bz"]
    return Catalog(directory)


def expected_flags(sample_paths, with_pixels: bool) -> dict[tuple[str, int, str, int], list[str]]:
    """Every frame that must be flagged, with its flags, from the stores themselves: previous-year
    T_OBS strings (SDOMLv2#2), all-NaN frames (SDOMLv2#1) and :data:`SEEDED_DEFECTS`."""
    aia = Path(sample_paths["aia"])
    flags: dict[tuple, list[str]] = {}
    for attrs_path in sorted(aia.glob(f"{QUIRKY_YEAR}/*/.zattrs")):
        channel = attrs_path.parent.name
        for idx, t_obs in enumerate(json.loads(attrs_path.read_text())["T_OBS"]):
            if not t_obs.startswith(str(QUIRKY_YEAR)):
                flags.setdefault(("aia", QUIRKY_YEAR, channel, idx), []).append("time_outside_year")
    pixel_kinds = {"partial_nan", "dark"}
    for kind, (channel, idx) in SEEDED_DEFECTS.items():
        if with_pixels or kind not in pixel_kinds:
            flags.setdefault(("aia", QUIRKY_YEAR, channel, idx), []).append(FLAG_OF_DEFECT.get(kind, kind))
    if with_pixels:
        frames = zarr.open_group(str(aia), mode="r", zarr_format=2)
        for year in ("2010", "2020"):
            for channel in frames[year].array_keys():
                data = frames[f"{year}/{channel}"][:]
                for idx in np.flatnonzero(np.isnan(data).all(axis=(1, 2))):
                    flags.setdefault(("aia", int(year), channel, int(idx)), []).append("nan")
    return flags


def flagged(catalog: Catalog) -> dict[tuple, list[str]]:
    rows = catalog.query("SELECT instrument, year, channel, idx, flags FROM frame_quality WHERE NOT good").to_pandas()
    return {(r.instrument, r.year, r.channel, r.idx): list(r.flags) for r in rows.itertuples()}


def canonical(flags: dict[tuple, list[str]]) -> dict[tuple, list[str]]:
    order = ["duplicate_time", "time_outside_year", "channel_mismatch", "quality_nonzero", "exposure_outlier",
             "off_centre", "nan", "partial_nan", "dark"]
    return {key: sorted(value, key=order.index) for key, value in flags.items()}


# --- flags ---------------------------------------------------------------------------------

def test_header_flags_right_after_build(catalog, sample_paths):
    assert flagged(catalog) == canonical(expected_flags(sample_paths, with_pixels=False))
    summary = catalog.query("SELECT count(*) AS n, count_if(has_stats) AS checked FROM frame_quality").to_pandas()
    assert summary.n[0] == catalog.query("SELECT count(*) AS n FROM frames").to_pandas().n[0]
    assert summary.checked[0] == 0  # pixel flags unknown, and said so
    assert len(catalog.query("SELECT * FROM frame_stats")) == 0


def test_seeded_defects_are_flagged_exactly(stats_catalog, sample_paths):
    expected = canonical(expected_flags(sample_paths, with_pixels=True))
    assert {flag for flags in expected.values() for flag in flags} == {
        "duplicate_time", "time_outside_year", "channel_mismatch", "quality_nonzero", "exposure_outlier",
        "off_centre", "nan", "partial_nan", "dark"}
    assert flagged(stats_catalog) == expected
    good = stats_catalog.query("SELECT count(*) AS n FROM frame_quality WHERE good AND len(flags) = 0 "
                               "AND has_stats").to_pandas().n[0]
    total = stats_catalog.query("SELECT count(*) AS n FROM frames").to_pandas().n[0]
    assert good == total - len(expected)


def test_quality_bits_and_flare_frames(stats_catalog, sample_paths):
    channel, idx = SEEDED_DEFECTS["quality_nonzero"]
    bits = stats_catalog.query(f"SELECT quality_bits FROM frame_quality WHERE channel = '{channel}' "
                               f"AND year = {QUIRKY_YEAR} AND idx = {idx}").to_pandas().quality_bits[0]
    assert list(bits) == [13]
    # short automatic-exposure frames around the flare are not exposure outliers
    short = stats_catalog.query("SELECT q.good, q.flags FROM aia JOIN frame_quality q USING (year, channel, idx) "
                                "WHERE aia.EXPTIME BETWEEN 0.01 AND 2.0 AND q.instrument = 'aia'").to_pandas()
    assert len(short) >= 18
    assert not any("exposure_outlier" in flags or "dark" in flags for flags in short["flags"])


# --- statistics ----------------------------------------------------------------------------

def numpy_stats(frame: np.ndarray, cx: float, cy: float, radius: float) -> list[float]:
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
    disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    if np.isnan(frame).all():
        return [frame.size, 0] + [np.nan] * 9
    return [np.isnan(frame).sum(), (frame == 0).sum(), np.nanmin(frame), np.nanmax(frame),
            np.nanmean(frame, dtype=np.float64), np.nanstd(frame, dtype=np.float64),
            *np.nanpercentile(frame, [1, 50, 99]),
            np.nanmean(frame[disk], dtype=np.float64), np.nanmean(frame[~disk], dtype=np.float64)]


@pytest.mark.parametrize("layout, instrument, array_path", [
    ("v2", "aia", "2010/171A"),  # two chunks
    ("v2", "aia", "2020/171A"),  # an all-NaN frame
    ("v2", "aia", "2020/193A"),  # a partly NaN frame
    ("v2", "aia", "2020/304A"),  # a frame whose header puts the disk 40 px off
    ("v2", "hmi", "2012/Bz"),
    ("v2a", "aia", "2023/171A"),  # an all-NaN frame, frames of 2022 filed in 2023
    ("v2a", "hmi", "2023/Bz"),  # frames out of time order
])
def test_statistics_equal_numpy_on_direct_reads(request, layout, layout_paths, instrument, array_path):
    stats_catalog = request.getfixturevalue("stats_catalog" if layout == "v2" else "v2a_stats_catalog")
    sample_paths = layout_paths
    year, channel = array_path.split("/")
    data = zarr.open_group(str(sample_paths[instrument]), mode="r", zarr_format=2)[array_path][:]
    attrs = json.loads((Path(sample_paths[instrument]) / array_path / ".zattrs").read_text())
    got = stats_catalog.query(f"SELECT * FROM frame_stats WHERE instrument = '{instrument}' AND year = {year} "
                              f"AND channel = '{channel}' ORDER BY idx").to_pandas()
    assert list(got.idx) == list(range(len(data)))
    for i, frame in enumerate(data):
        radius = attrs["RSUN_OBS"][i] / attrs["CDELT1"][i]
        expected = numpy_stats(frame, attrs["CRPIX1"][i] - 1, attrs["CRPIX2"][i] - 1, radius)
        actual = got.loc[i, STAT_COLUMNS].to_numpy(dtype=float)
        np.testing.assert_allclose(actual, np.array(expected, dtype=float), rtol=1e-6, atol=1e-9,
                                   err_msg=f"{array_path} frame {i}")


def test_a_rerun_with_unchanged_sources_rewrites_nothing(stats_dir):
    before = brute.tree_state(stats_dir / "frame_stats")
    report = compute_frame_stats(stats_dir, progress=False)
    files = [key for key in before if key.endswith(".parquet")]
    assert report.written == [] and len(report.skipped) == len(files) == 24 and report.chunks == 0
    assert brute.tree_state(stats_dir / "frame_stats") == before


def test_a_changed_source_array_is_recomputed(sample_paths, tmp_path):
    from sdoml_sql.catalog_builder.build import build_catalog

    store = tmp_path / "aia.zarr"
    shutil.copytree(sample_paths["aia"], store)
    directory = tmp_path / "catalog"
    build_catalog(aia=str(store), catalog=directory, years=[2010], channels=["94A", "131A"], progress=False)
    compute_frame_stats(directory, progress=False)
    chunk = store / "2010" / "94A" / "0.0.0"
    data = zarr.open_array(str(store / "2010" / "94A"), mode="r+", zarr_format=2)
    data[0] = 7.0  # one frame's pixels change; headers do not
    assert chunk.exists()
    report = compute_frame_stats(directory, progress=False)
    assert report.written == ["frame_stats/instrument=aia/year=2010/channel=94A"]
    assert report.skipped == ["frame_stats/instrument=aia/year=2010/channel=131A"]
    table = pq.read_table(directory / report.written[0] / "data.parquet").to_pandas()
    assert table.loc[0, "mean"] == 7.0 and table.loc[0, "std"] == 0.0


KILLABLE_PASS = """
import sys, time
import sdoml_sql.quality.stats as stats
real = stats._write_partition
def slow(partition, *args):
    real(partition, *args)
    print("wrote", partition.key, flush=True)
    time.sleep(60)
stats._write_partition = slow
stats.compute_frame_stats(sys.argv[1], progress=False, workers=1)
"""


def test_a_killed_pass_keeps_the_partitions_it_finished(catalog_dir, tmp_path):
    directory = copy_catalog(catalog_dir, tmp_path / "catalog")
    process = subprocess.Popen([PY, "-c", KILLABLE_PASS, str(directory)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("wrote frame_stats/")
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = line.split()[1]
    files = sorted(str(p.relative_to(directory).parent) for p in (directory / "frame_stats").rglob("*.parquet"))
    assert files == [finished]
    assert len(pq.read_table(directory / finished / "data.parquet")) > 0
    assert Catalog(directory).query("SELECT count(*) AS n FROM frame_quality WHERE has_stats").to_pandas().n[0] > 0
    report = compute_frame_stats(directory, progress=False)  # lock released, the rest computed
    assert report.skipped == [finished] and finished not in report.written
    staging = directory / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_a_local_cluster_gives_the_same_statistics(cluster_client, catalog_dir, stats_dir, tmp_path):
    directory = copy_catalog(catalog_dir, tmp_path / "catalog")
    report = compute_frame_stats(directory, progress=False, client=cluster_client, years=[2020])
    assert report.written and all("year=2020" in key for key in report.written)
    for key in report.written:
        got = pq.read_table(directory / key / "data.parquet")
        assert got.equals(pq.read_table(stats_dir / key / "data.parquet")), key


# --- good_only -----------------------------------------------------------------------------

def good_frames(catalog: Catalog, source: pd.DataFrame) -> pd.DataFrame:
    good = catalog.query("SELECT instrument, year, channel, idx FROM frame_quality WHERE good").to_pandas()
    return source.merge(good.astype({"year": "int64", "idx": "int64"}), on=["instrument", "year", "channel", "idx"])


@pytest.mark.parametrize("channel", ["131A", "171A", "193A", "211A", "1600A", "304A"])
def test_good_only_picks_the_nearest_good_frame(stats_catalog, source, channel):
    args = f"'aia', '{channel}', '2019-12-31 23:30', '2020-01-01 02:00', INTERVAL 6 minutes, INTERVAL 13 minutes"
    picked = stats_catalog.query(f"SELECT * FROM nearest({args}, good_only := true)").to_pandas()
    expected = brute.nearest(good_frames(stats_catalog, source), channel, "2019-12-31 23:30", "2020-01-01 02:00",
                             "6 minutes", "13 minutes")
    pd.testing.assert_series_equal(picked.idx, expected.idx, check_names=False)
    bad = stats_catalog.query(f"SELECT idx FROM frame_quality WHERE NOT good AND channel = '{channel}'").to_pandas()
    assert not set(picked.idx.dropna()) & set(bad.idx)
    everything = stats_catalog.query(f"SELECT * FROM nearest({args})").to_pandas()
    assert set(everything.idx.dropna()) & set(bad.idx)  # without good_only, flagged frames are picked
    default = brute.nearest(source, channel, "2019-12-31 23:30", "2020-01-01 02:00", "6 minutes", "13 minutes")
    pd.testing.assert_series_equal(everything.idx, default.idx, check_names=False)


def test_good_only_in_aligned_and_nearest_frames(stats_catalog, source):
    channels = ["131A", "211A", "304A"]
    window = "'2019-12-31 23:30', '2020-01-01 02:00', INTERVAL 6 minutes, INTERVAL 13 minutes"
    aligned = stats_catalog.query(f"SELECT * FROM aligned({channels}, {window}, good_only := true)").to_pandas()
    frames = stats_catalog.query(f"SELECT * FROM nearest_frames({channels}, {window}, good_only := true)").to_pandas()
    pool = good_frames(stats_catalog, source)
    for channel in channels:
        expected = brute.nearest(pool, channel, "2019-12-31 23:30", "2020-01-01 02:00", "6 minutes", "13 minutes")
        pd.testing.assert_series_equal(aligned[f"{channel}.idx"].astype("Int64"), expected.idx, check_names=False)
        mine = frames[frames.channel == channel].idx.reset_index(drop=True)
        pd.testing.assert_series_equal(mine, expected.idx, check_names=False)


# --- plot, CLI, bad input ------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
    return subprocess.run([PY, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_stats_and_plot_quality(catalog_dir, tmp_path):
    import matplotlib.image

    directory = copy_catalog(catalog_dir, tmp_path / "catalog")
    result = run_cli("stats", "--catalog", str(directory), "--channels", "131A,Bz", "--years", "2010,2020", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "3 partitions written, 0 unchanged" in result.stdout
    output = tmp_path / "quality.png"
    result = run_cli("plot-quality", "--catalog", str(directory), str(output), "--start", "2019-12-31 22:00",
                     "--stop", "2020-01-01 04:00", "--bucket", "12 minutes")
    assert result.returncode == 0, result.stderr
    image = matplotlib.image.imread(output)
    assert image.shape[0] > 600 and image.shape[1] > 1000
    dark = np.array([0xbc, 0xbd, 0x22]) / 255  # the dark frame's colour is drawn
    assert (np.abs(image[..., :3] - dark).max(axis=-1) < 0.02).sum() > 50
    assert [p.name for p in tmp_path.iterdir() if PARTIAL_MARK in p.name] == []


def edited_catalog(catalog_dir: Path, target: Path, change) -> Path:
    directory = copy_catalog(catalog_dir, target)
    manifest = json.loads((directory / "manifest.json").read_text())
    change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_a_catalog_without_sources(catalog_dir, tmp_path):
    directory = edited_catalog(catalog_dir, tmp_path / "c", lambda m: m["sources"].clear())
    with pytest.raises(CatalogError, match="has no aia or hmi source"):
        compute_frame_stats(directory, progress=False)
    assert_one_line_error(run_cli("stats", "--catalog", str(directory)), "has no aia or hmi source")
    assert_one_line_error(run_cli("stats", "--catalog", str(tmp_path / "nowhere")), "no catalog at")


def test_an_unknown_channel_or_year(catalog_dir, tmp_path):
    directory = copy_catalog(catalog_dir, tmp_path / "c")
    assert_one_line_error(run_cli("stats", "--catalog", str(directory), "--channels", "171A,4500A"),
                          "unknown channel 4500A", "171A")
    assert_one_line_error(run_cli("stats", "--catalog", str(directory), "--years", "2011"), "unknown year 2011")
    assert not (directory / "frame_stats").exists()


def test_an_unreachable_store(catalog_dir, tmp_path):
    def gone(manifest):
        manifest["sources"]["aia"]["url"] = str(tmp_path / "vanished.zarr")

    directory = edited_catalog(catalog_dir, tmp_path / "c", gone)
    with pytest.raises(StoreError):
        compute_frame_stats(directory, progress=False)
    assert_one_line_error(run_cli("stats", "--catalog", str(directory)), "aia:", "vanished.zarr")
    assert not (directory / "frame_stats").exists()
    assert compute_frame_stats(directory, channels=["Bz"], progress=False).written  # the HMI store is there
    result = run_cli("stats", "--catalog", str(directory), "--channels", "Bz", "--scheduler", "tcp://127.0.0.1:9")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in result.stderr.strip().splitlines()[0]


def test_big_catalogs_read_frame_quality_and_frame_times_from_materialized_copies(
        catalog_dir, sample_paths, tmp_path, monkeypatch):
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.query import copies

    directory = copy_catalog(catalog_dir, tmp_path / "catalog")
    live = Catalog(directory)
    assert not live._copies and not any((directory / c.file).exists() for c in copies.COPIES)
    queries = ["SELECT * FROM frame_quality ORDER BY instrument, channel, year, idx",
               "SELECT * FROM frame_times ORDER BY instrument, channel, year, idx",
               "SELECT * FROM frame_times WHERE T_OBS BETWEEN '2010-08-27' AND '2010-08-27 12:00' "
               "ORDER BY channel, idx",
               "SELECT * FROM nearest_frames(['171A', 'Bz'], '2010-08-27', '2010-08-28', '12 minutes', '6 minutes')",
               "SELECT * FROM coverage('2010-08-26', '2010-08-29', INTERVAL 6 hours, INTERVAL 1 hour)"]
    monkeypatch.setattr(copies, "MIN_FRAMES", 0)  # as if the catalog were big
    cached = Catalog(directory)
    assert set(cached._copies) == {"frame_quality", "frame_times"}
    assert all((directory / c.file).exists() for c in copies.COPIES)
    for query in queries:
        assert cached.query(query).to_arrow().equals(live.query(query).to_arrow()), query
    assert cached.query(queries[3]).to_arrow().column("idx").null_count < len(cached.query(queries[3]))

    times_file = directory / "frame_times" / "data.parquet"
    written = times_file.stat().st_mtime_ns
    compute_frame_stats(directory, years=[2020], channels=["131A"], progress=False)  # frame_quality is stale now
    stored, current = copies.stored_stamps(directory), copies.catalog_stamps(cached.location, cached.manifest)
    assert stored["frame_times"] == current["frame_times"] and stored["frame_quality"] != current["frame_quality"]
    fresh = Catalog(directory)
    assert set(fresh._copies) == {"frame_quality", "frame_times"} and times_file.stat().st_mtime_ns == written
    dark = fresh.query("SELECT channel, idx FROM frame_quality WHERE list_contains(flags, 'dark')").to_pandas()
    assert list(zip(dark.channel, dark.idx)) == [SEEDED_DEFECTS["dark"]]

    build_catalog(hmi=str(sample_paths["hmi"]), catalog=directory, full=True, progress=False)
    rebuilt = Catalog(directory)  # a new manifest: both copies are written again
    assert set(rebuilt._copies) == {"frame_quality", "frame_times"} and times_file.stat().st_mtime_ns != written
    monkeypatch.setattr(copies, "MIN_FRAMES", 10**9)
    assert set(copies.prepare(rebuilt)) == {"frame_quality", "frame_times"}  # fresh copies stay in use at any size
    for query in queries[1:]:
        assert rebuilt.query(query).to_arrow().equals(live.query(query).to_arrow()), query
