"""Issue 23: what a new user hit, round 2 — one reproduction per item, each failing before its fix.

Real sample stores, real catalogs, the real CLI in subprocesses (so a traceback or a hang
would show), real signals, real DuckDB spill files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sdoml_sql import Catalog
from sdoml_sql.exceptions import DatasetError, InputError, QueryError
from test_bad_input import assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
#: A query that runs for minutes unless stopped (read-only: it passes the SQL guard).
ENDLESS_SQL = "SELECT sum(hash(range)) AS s FROM range(1000000000000)"


def run_cli(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "sdoml_sql.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg", **(env or {})})


def copy_catalog(catalog_dir: Path, target: Path) -> Path:
    shutil.copytree(catalog_dir, target, ignore=shutil.ignore_patterns("frame_stats", ".lock", "init.sql"))
    return target


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Every file's bytes, but the build lock's (a build, failed or not, writes its pid there)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Small headers-and-pixels stores (2010 and 2020, 171A and 193A) and their catalog."""
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    directory = tmp_path_factory.mktemp("small")
    paths = write_sample(directory / "stores", aia_frames=20, hmi_frames=6, eve_samples=50,
                         channels=("171A", "193A"), progress=False)
    build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), eve=str(paths["eve"]),
                  catalog=directory / "catalog", progress=False)
    return {"catalog": directory / "catalog", **paths}


# --- 1. a query can fill the disk -----------------------------------------------------------------

SPILL_SCRIPT = """
import os, sys
import sdoml_sql
catalog = sdoml_sql.Catalog(sys.argv[1])
settings = dict(catalog.sql("SELECT name, value FROM duckdb_settings() WHERE name IN "
                            "('temp_directory', 'max_temp_directory_size', 'memory_limit')").fetchall())
print("SETTINGS", settings["temp_directory"], "|", settings["max_temp_directory_size"], "|", settings["memory_limit"])
try:
    rows = catalog.query("SELECT count(*) AS n FROM (SELECT range AS k, hash(range) AS h FROM range(6000000) "
                         "ORDER BY h)").to_pandas()
    print("ROWS", int(rows.n.iloc[0]))
except sdoml_sql.QueryError as error:
    print("ERROR", error)
print("SPILLED", os.path.isdir(settings["temp_directory"]))
"""


def test_connections_spill_into_a_bounded_directory_in_the_user_cache_removed_at_exit(small, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    (work / "stale-owner").mkdir()
    left = cache / "sdoml-sql" / "duckdb-tmp" / "999999999-deadbeef"  # a dead process's spill directory
    left.mkdir(parents=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "SDOML_DUCKDB_MEMORY": "40MB",
           "SDOML_DUCKDB_MAX_TEMP": "2GB"}
    done = subprocess.run([PY, "-c", SPILL_SCRIPT, str(small["catalog"])], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    temp, limit, memory = (part.strip() for part in out["SETTINGS"].split("|"))
    assert Path(temp).parent == cache / "sdoml-sql" / "duckdb-tmp" and Path(temp).name.split("-")[0].isdigit()
    assert (limit, memory) == ("1.8 GiB", "38.1 MiB")  # 2GB and 40MB as DuckDB shows them
    assert out["ROWS"] == "6000000" and out["SPILLED"] == "True"  # it did spill, and where it was told to
    assert not Path(temp).exists() and not left.exists()  # removed at exit; a dead process's leftovers too
    assert not (work / ".tmp").exists() and sorted(p.name for p in work.iterdir()) == ["stale-owner"]
    bounded = subprocess.run([PY, "-c", SPILL_SCRIPT, str(small["catalog"])], cwd=work, capture_output=True,
                             text=True, timeout=300, env={**env, "SDOML_DUCKDB_MAX_TEMP": "1MB"})
    assert bounded.returncode == 0, bounded.stderr
    error = dict(line.split(" ", 1) for line in bounded.stdout.splitlines())["ERROR"]
    assert "Out of Memory" in error and "(1MB, $SDOML_DUCKDB_MAX_TEMP)" in error, error


def test_plot_quality_caps_a_chosen_bucket(small):
    from sdoml_sql.quality.plot import plot_quality

    catalog = Catalog(small["catalog"])
    started = time.perf_counter()
    with pytest.raises(QueryError, match=r"bucket '1 second' gives [\d,]+ buckets .* more than 2,000: "
                                         r"choose '6 minutes' or longer"):
        plot_quality(catalog, start="2010-08-27", stop="2010-08-29", bucket="1 second")
    assert time.perf_counter() - started < 10
    with pytest.raises(QueryError, match="2,880 buckets"):
        plot_quality(catalog, start="2010-08-27", stop="2010-08-29", bucket="1 minute")
    assert plot_quality(catalog, start="2010-08-27", stop="2010-08-29", bucket="2 minutes") is not None  # 1,440


# --- 2, 3. build: unknown channels, a store of another instrument -------------------------------

def test_did_you_mean_keeps_a_wavelength_s_digits():
    from sdoml_sql.exceptions import closest_names

    channels = ["94A", "131A", "171A", "193A", "1600A", "1700A", "Bx", "By", "Bz"]
    assert closest_names("171", channels) == ["171A"]
    assert closest_names("1700a", channels) == ["1700A"]
    assert closest_names("bz", channels) == ["Bz"]
    assert closest_names("4500A", channels) == []
    assert closest_names("170A", channels) == []


def test_build_refuses_unknown_channels_with_a_did_you_mean_and_leaves_the_catalog(small, tmp_path):
    catalog = copy_catalog(small["catalog"], tmp_path / "catalog")
    before = tree_bytes(catalog)
    result = run_cli("build", "--aia", small["aia"], "--catalog", catalog, "--channels", "171", "--quiet")
    assert_one_line_error(result, "unknown channel 171", "the aia store has 171A, 193A", "did you mean 171A?")
    result = run_cli("build", "--aia", small["aia"], "--hmi", small["hmi"], "--catalog", catalog,
                     "--channels", "4500A,Bz", "--quiet")
    assert_one_line_error(result, "unknown channel 4500A", "the aia and hmi stores have 171A, 193A, Bx, By, Bz")
    assert "did you mean" not in result.stderr  # 4500A is no typo of 1700A: no wavelength shares its digits
    assert tree_bytes(catalog) == before
    fresh = run_cli("build", "--aia", small["aia"], "--catalog", tmp_path / "new", "--channels", "171A", "--quiet")
    assert fresh.returncode == 0, fresh.stderr
    assert Catalog(tmp_path / "new").channels() == {"171A": "aia"}


def test_build_refuses_a_store_of_another_instrument(small, tmp_path):
    catalog = copy_catalog(small["catalog"], tmp_path / "catalog")
    before = tree_bytes(catalog)
    assert_one_line_error(run_cli("build", "--aia", small["hmi"], "--catalog", catalog, "--quiet"),
                          f"aia: store {small['hmi']} is an HMI store", "give it as --hmi")
    assert_one_line_error(run_cli("build", "--hmi", small["aia"], "--catalog", catalog, "--quiet"),
                          f"hmi: store {small['aia']} is an AIA store", "give it as --aia")
    assert_one_line_error(run_cli("build", "--eve", small["aia"], "--catalog", catalog, "--quiet"),
                          "is not an EVE store", "give it as --aia")
    assert_one_line_error(run_cli("build", "--aia", small["eve"], "--catalog", catalog, "--quiet"),
                          "is not an AIA store", "use --eve")
    assert tree_bytes(catalog) == before
    assert Catalog(catalog).query("SELECT DISTINCT channel FROM aia ORDER BY 1").to_pandas().channel.tolist() == \
        ["171A", "193A"]


# --- 4. sample refuses to overwrite stores --------------------------------------------------------

def test_sample_refuses_existing_stores_unless_overwrite(tmp_path):
    from sdoml_sql.catalog_builder.build import build_catalog

    options = ("--frames", "3", "--hmi-frames", "2", "--eve-samples", "5", "--channels", "171A", "--years", "2010")
    assert run_cli("sample", tmp_path / "s", *options).returncode == 0
    paths = {"aia": tmp_path / "s" / "sdomlv2_small.zarr", "hmi": tmp_path / "s" / "sdomlv2_hmi_small.zarr"}
    build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), catalog=tmp_path / "catalog", progress=False)
    stores = tree_bytes(tmp_path / "s")
    assert_one_line_error(run_cli("sample", tmp_path / "s", *options, "--seed", "5"),
                          f"{paths['aia']} exists", "--overwrite")
    assert tree_bytes(tmp_path / "s") == stores  # untouched: the catalog still fetches its frames
    frames = Catalog(tmp_path / "catalog").query("SELECT year, channel, idx FROM aia").fetch().compute()
    assert frames.shape[0] == 3
    again = run_cli("sample", tmp_path / "s", *options, "--seed", "5", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert tree_bytes(tmp_path / "s") != stores and not list((tmp_path / "s").glob(".sample-*"))


# --- 7. a sample that never ended ---------------------------------------------------------------------

def test_small_samples_end_whatever_the_seed(tmp_path):
    for seed in (9, 0, 3):
        result = run_cli("sample", tmp_path / f"s{seed}", "--frames", "4", "--no-images", "--hmi-frames", "2",
                         "--eve-samples", "5", "--seed", seed, timeout=60)
        assert result.returncode == 0, result.stderr
    from sdoml_sql.stores.sample import seeded_defects

    t_obs = np.array([1, 2, 3], dtype=np.int64)  # all from the previous year: no frame can hold a defect
    assert seeded_defects("211A", t_obs, np.zeros(3, bool), 2020) == {}


# --- 8. Ctrl-C -----------------------------------------------------------------------------------------

def as_from_a_terminal():
    """In the child, before exec: Ctrl-C as a shell gives it (default action, not blocked),
    whatever the test runner's process inherited or set (a child inherits SIG_IGN and the
    signal mask; in a full run the runner's worker had SIGINT ignored, and both tests failed)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def test_ctrl_c_stops_the_cli_query_within_a_second(small):
    process = subprocess.Popen([PY, "-m", "sdoml_sql.cli", "query", ENDLESS_SQL, "--catalog", str(small["catalog"])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               preexec_fn=as_from_a_terminal)
    try:
        time.sleep(6)  # imports, the catalog opened, the query running
        assert process.poll() is None, process.communicate()
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines() == ["interrupted"]
    assert elapsed < 1.0, elapsed


INTERRUPTED_SCRIPT = """
import sys, time
import sdoml_sql
catalog = sdoml_sql.Catalog(sys.argv[1])
print("RUNNING", flush=True)
started = time.monotonic()
try:
    catalog.query(sys.argv[2])
except KeyboardInterrupt:
    print("INTERRUPTED", round(time.monotonic() - started, 3), flush=True)
print("AFTER", len(catalog.query("SELECT * FROM aia")), flush=True)
"""


def test_ctrl_c_interrupts_query_in_python_and_the_catalog_stays_usable(small):
    import queue

    process = subprocess.Popen([PY, "-c", INTERRUPTED_SCRIPT, str(small["catalog"]), ENDLESS_SQL],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
    lines: queue.Queue = queue.Queue()  # read on a thread, so a script that never answers fails the test, not hangs it
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=60).strip() == "RUNNING"
        time.sleep(2)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        interrupted = lines.get(timeout=30).split()
        elapsed = time.monotonic() - sent
        after = lines.get(timeout=60).split()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert interrupted[0] == "INTERRUPTED", process.stderr.read()
    assert elapsed < 1.0, elapsed
    assert after == ["AFTER", str(len(Catalog(small["catalog"]).query("SELECT * FROM aia")))]
    assert process.returncode == 0


# --- 9. one line, not a traceback ------------------------------------------------------------------

def test_bad_years_and_channels_are_one_line_in_every_command(small, tmp_path):
    catalog = copy_catalog(small["catalog"], tmp_path / "catalog")
    for command in (("stats", "--catalog", catalog), ("build", "--aia", small["aia"], "--catalog", catalog),
                    ("sample", tmp_path / "s")):
        assert_one_line_error(run_cli(*command, "--years", "abc"), "--years: 'abc' is not a year")
    assert_one_line_error(run_cli("sample", tmp_path / "s", "--channels", "171,193A"),
                          "unknown channel 171", "did you mean 171A?")
    assert not (tmp_path / "s").exists()


def test_one_item_is_accepted_where_one_is_meant(small, tmp_path):
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.quality.stats import compute_frame_stats

    catalog = copy_catalog(small["catalog"], tmp_path / "catalog")
    report = compute_frame_stats(catalog, channels="171A", years=2020, progress=False)
    assert report.written == ["frame_stats/instrument=aia/year=2020/channel=171A"]
    report = build_catalog(aia=str(small["aia"]), catalog=tmp_path / "one", channels="193A", years=2010,
                           progress=False)
    assert report.written == ["aia/year=2010/channel=193A"]
    with pytest.raises(InputError, match="years: 'x' is not a year"):
        build_catalog(aia=str(small["aia"]), catalog=tmp_path / "two", years=["x"], progress=False)


@pytest.mark.parametrize("bucket", ["1 week", "1 month"])
def test_plot_quality_takes_any_duckdb_interval(small, tmp_path, bucket):
    output = tmp_path / "q.png"
    result = run_cli("plot-quality", "--catalog", small["catalog"], output, "--start", "2019-06-01",
                     "--stop", "2020-06-01", "--bucket", bucket)
    assert result.returncode == 0 and output.stat().st_size > 10_000, result.stderr


@pytest.mark.parametrize("bucket", ["1 week", "1 month", "1 day"])
def test_coverage_and_flags_count_every_frame_in_buckets_of_any_interval(stats_small, bucket):
    """Month buckets started on the 15th: time_bucket put every frame in a bucket starting on the
    1st, which no bucket of the range did, so the plot said "no frame" everywhere."""
    from sdoml_sql.quality.plot import quality_counts

    catalog = Catalog(stats_small)
    window = {"start": "2019-06-15", "stop": "2020-06-15"}
    counts, flags, _, frames, _ = quality_counts(catalog, bucket=bucket, **window)
    expected = catalog.query("SELECT instrument, channel, count(*) AS n FROM frame_times WHERE T_OBS >= $start "
                             "AND T_OBS < $stop GROUP BY ALL", window).to_pandas()
    got = counts.groupby(["instrument", "channel"])["frames"].sum()
    assert frames > 0 and {k: got[k] for k in got.index if got[k]} == {
        (i, c): n for i, c, n in expected.itertuples(index=False)}
    assert len(flags) and set(zip(flags.instrument, flags.channel, flags.bucket)) <= set(
        zip(counts.instrument, counts.channel, counts.bucket))


def test_plot_quality_draws_each_bar_series_as_one_collection(stats_small):
    """A patch per bar cost ~2 ms: '1 week' over nine years (12,000 bars) took 57 s, and the
    2,000-bucket cap allowed 60,000.  Every bucket is still drawn, grey or pale red."""
    from matplotlib.collections import PolyCollection

    from sdoml_sql.quality.plot import plot_quality

    figure = plot_quality(Catalog(stats_small), start="2010-08-01", stop="2020-02-01", bucket="1 week")
    weeks = len(pd.date_range("2010-08-01", "2020-02-01", freq="7D", inclusive="left"))
    for axis in figure.axes:
        assert not axis.patches
        bars = [c for c in axis.collections if isinstance(c, PolyCollection)]
        assert sum(len(c.get_paths()) for c in bars) >= weeks, axis.get_ylabel()


def test_sample_takes_progress_and_quiet_as_the_other_commands_do(tmp_path):
    for flag in ("--quiet", "--progress"):
        result = run_cli("sample", tmp_path / flag.strip("-"), "--frames", "2", "--hmi-frames", "1",
                         "--eve-samples", "5", "--years", "2010", "--channels", "171A", flag)
        assert result.returncode == 0, result.stderr
        assert ("sample images" in result.stderr) == (flag == "--progress"), result.stderr


def test_a_blank_time_has_its_arrays_unit():
    """numpy 2.5 (what pip picks on Python 3.13) deprecates a NaT without a unit (it will be an error)."""
    from sdoml_sql.fetch.output import _blank

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        blank = _blank(np.array(["2010-08-27T00:00"], dtype="datetime64[ns]"))
    assert np.isnat(blank) and np.datetime_data(blank.dtype)[0] == "ns"


# --- 5. stale statistics ------------------------------------------------------------------------------

def test_statistics_of_changed_sources_count_as_missing_until_stats_runs_again(tmp_path):
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.quality.stats import compute_frame_stats
    from sdoml_sql.stores.sample import write_sample

    options = {"aia_frames": 6, "hmi_frames": 2, "eve_samples": 5, "channels": ("171A", "193A"), "years": (2010,),
               "eve": False, "progress": False}
    paths = write_sample(tmp_path / "stores", seed=1, **options)
    catalog = tmp_path / "catalog"
    build_catalog(aia=str(paths["aia"]), catalog=catalog, progress=False)
    compute_frame_stats(catalog, progress=False)
    query = "SELECT channel, count_if(has_stats) AS checked, count(*) AS n FROM frame_quality GROUP BY 1 ORDER BY 1"
    counts = Catalog(catalog).query(query).to_pandas()
    assert counts.checked.tolist() == counts.n.tolist() and len(counts) == 2 and counts.n.min() > 0
    write_sample(tmp_path / "stores", seed=2, overwrite=True, **options)  # other pixels and headers
    result = run_cli("rebuild", "--catalog", catalog, "--quiet")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "frame_stats of 2 partition(s)" in notes[0] and "sdoml-sql stats" in notes[0], notes
    stale = Catalog(catalog)
    assert stale.query(query).to_pandas().checked.tolist() == [0, 0] and stale.query(query).to_pandas().n.min() > 0
    assert len(stale.query("SELECT * FROM frame_stats")) == 0  # the old means are not served
    compute_frame_stats(catalog, progress=False)
    fresh = Catalog(catalog)
    assert fresh.query(query).to_pandas().checked.tolist() == counts.n.tolist()
    means = fresh.query("SELECT idx, mean FROM frame_stats WHERE channel = '171A' ORDER BY idx").to_pandas()
    pixels = fresh.query("SELECT year, channel, idx FROM aia WHERE channel = '171A' ORDER BY idx").fetch().compute()
    np.testing.assert_allclose(means["mean"], np.nanmean(pixels.astype(np.float64), axis=(1, 2)), rtol=1e-9)
    again = run_cli("rebuild", "--catalog", catalog, "--quiet")
    assert "note:" not in again.stderr, again.stderr


# --- 6. the loader's length and batch size ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
    from ml_helpers import ml_catalog

    return ml_catalog(tmp_path_factory.mktemp("ml"))


def _aia_dataset(ml_dir, **options):
    from ml_helpers import AIA_SQL

    return Catalog(ml_dir).query(AIA_SQL).dataset(downsample=16, **options)


@pytest.mark.parametrize("options", [dict(batch_size=4), dict(batch_size=4, drop_last=True),
                                     dict(batch_size=5, rank=1, world_size=3),
                                     dict(batch_size=7, rank=0, world_size=2, drop_last=True)])
def test_len_of_a_loader_is_its_batches(ml_dir, options):
    ds = _aia_dataset(ml_dir)
    loader = ds.loader(**options)
    batches = list(loader)
    assert len(loader) == len(batches) > 0 and loader.batch_size == options["batch_size"]
    sizes = [len(b["row"]) for b in batches]
    schedules = loader.dataset.plan.schedules
    dropped = sum(len(s.steps) % options["batch_size"] for s in schedules) if options.get("drop_last") else 0
    assert max(sizes) <= options["batch_size"] and sum(sizes) == sum(len(s.steps) for s in schedules) - dropped
    if options.get("drop_last"):
        assert set(sizes) == {options["batch_size"]}
    transformed = _aia_dataset(ml_dir, transform=lambda item: item).loader(**options)
    assert len(transformed) == len(list(transformed)) and transformed.batch_size == options["batch_size"]


@pytest.mark.parametrize("context", ["forkserver", "spawn"])
def test_loader_workers_under_each_start_method_without_fork_warnings(ml_dir, context):
    ds = _aia_dataset(ml_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # Python 3.12+: fork() of a multi-threaded process
        loader = ds.loader(batch_size=4, num_workers=2, persistent_workers=True, multiprocessing_context=context)
        rows = [[r for b in loader for r in b["row"].tolist()] for _ in range(2)]  # two epochs, same workers
    assert len(loader) == sum(-(-len(s.steps) // 4) for s in loader.dataset.plan.schedules)
    assert sorted(rows[0]) == sorted(rows[1]) == sorted(ds.rows.tolist())
    assert loader.multiprocessing_context.get_start_method() == context
    default = ds.loader(batch_size=4, num_workers=2)  # no fork() of this process, which runs threads
    assert default.multiprocessing_context.get_start_method() == "forkserver"
    with pytest.raises(DatasetError, match="unknown loader option persistent: the options are"):
        ds.loader(batch_size=4, persistent=True)


# --- 11. splits that come out empty ----------------------------------------------------------------------

def test_an_empty_split_warns_and_the_readme_split_splits(catalog_dir):
    catalog = Catalog(catalog_dir)
    two_days = catalog.query("SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27', '2010-08-29', "
                             "INTERVAL 12 minutes, INTERVAL 6 minutes)").dataset(downsample=8)
    with pytest.warns(UserWarning, match=r"split val and test came out empty: .* 1 month\(s\) \(2010-08\)"):
        parts = two_days.split(val=0.2, test=0.2, seed=0, gap="1 day")
    assert len(parts["val"]) == len(parts["test"]) == 0
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "splits = " in line and ".split(" in line)
    frames = catalog.query("SELECT * FROM aia WHERE channel = '171A' ORDER BY T_OBS").dataset(downsample=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        splits = eval(line.split("=", 1)[1].split("#")[0].strip(), {"frames": frames})
    assert all(len(part) > 0 for part in splits.values()), {k: len(v) for k, v in splits.items()}


# --- 10. Fido ---------------------------------------------------------------------------------------------

def test_fido_path_templates_take_the_table_columns_and_name_the_keys(catalog_dir, tmp_path, capfd):
    import astropy.units as u
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    import sdoml_sql.fido  # noqa: F401 - registers the client

    found = Fido.search(a.Time("2010-08-27 00:00", "2010-08-27 00:40"),
                        a.Wavelength(171 * u.AA) | a.sdoml.Channel("Bz"), a.sdoml.Catalog(catalog_dir))
    capfd.readouterr()
    files = Fido.fetch(found, path=tmp_path / "{Instrument}" / "{Channel}" / "{file}")
    assert not files.errors and len(files) == len(found[0]) + len(found[1]) > 2
    assert {Path(f).parent.relative_to(tmp_path).as_posix() for f in files} == {"AIA/171A", "HMI/Bz"}
    assert "Files Downloaded" not in capfd.readouterr().err  # parfive downloaded nothing: no "0file" bar
    with pytest.raises(InputError,
                       match=r"path template '.*\{chanel\}.*': no key 'chanel'; the keys are .*\{channel\}"):
        Fido.fetch(found, path=str(tmp_path / "{chanel}" / "{file}"))
    again = Fido.fetch(found[1], path=tmp_path / "again" / "{file}")  # a later fetch works, and says nothing
    assert len(again) == len(found[1]) and "Traceback" not in capfd.readouterr().err


#: A Fido fetch on the main thread, then what a session does next: a query (its helper thread
#: may run the garbage collector) and a child process ending (SIGCHLD, as a loader worker's).
FETCH_THEN_GC_ELSEWHERE = """
import gc, signal, subprocess, sys, threading, time
import astropy.units as u
from sunpy.net import Fido, attrs as a
import sdoml_sql.fido
gc.disable()  # the collector runs only where this script says
found = Fido.search(a.Time("2010-08-27 00:00", "2010-08-27 00:40"), a.Wavelength(171 * u.AA),
                    a.sdoml.Catalog(sys.argv[1]))
files = Fido.fetch(found, path=sys.argv[2] + "/{file}", progress=False)
assert len(files) > 0 and not files.errors
elsewhere = threading.Thread(target=gc.collect)
elsewhere.start()
elsewhere.join()
signal.signal(signal.SIGCHLD, lambda *_: None)
subprocess.run(["true"])
time.sleep(0.2)
print("wakeup fd", signal.set_wakeup_fd(-1))
"""


def test_a_fido_fetch_leaves_no_event_loop_for_another_thread_to_close(catalog_dir, tmp_path):
    """parfive's loop, left open with its signal handlers, failed to close when collected on
    another thread ("Exception ignored … signal only works in main thread") and left Python's
    signal wakeup fd on a closed socket ("OSError: Bad file descriptor" at the next SIGCHLD)."""
    done = subprocess.run([PY, "-c", FETCH_THEN_GC_ELSEWHERE, str(catalog_dir), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "Bad file descriptor" not in done.stderr, done.stderr
    assert done.stdout.split() == ["wakeup", "fd", "-1"], done.stdout


def test_fido_attrs_refuse_what_they_cannot_mean(catalog_dir):
    import astropy.units as u
    from sunpy.net import attrs as a

    import sdoml_sql.fido  # noqa: F401 - registers the client
    from sdoml_sql.fido.client import SDOMLClient

    with pytest.raises(InputError, match="unknown channel 171: SDOML has 94A, .*; did you mean 171A?"):
        a.sdoml.Channel("171")
    assert a.sdoml.Channel("bz").value == "Bz" and a.sdoml.Channel("AIA_171A").value == "171A"
    with pytest.raises(QueryError, match=r"Tolerance is the reach of a.Sample's grid times: add a.Sample"):
        SDOMLClient().search(a.Time("2010-08-27", "2010-08-28"), a.sdoml.Tolerance(3 * u.min),
                             a.sdoml.Catalog(catalog_dir))
    assert dir(a.sdoml) == ["Catalog", "Channel", "Keyword", "KeywordFilter", "Tolerance"]
    names = dir(a.sdoml.Channel)
    assert "aia_171a" in names and "hmi_bz" in names and not any(n.startswith("one_") for n in names)


def test_hmi_maps_from_fetched_fits_name_their_component(catalog_dir, tmp_path):
    import sunpy.map
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    import sdoml_sql.fido  # noqa: F401 - registers the client

    found = Fido.search(a.Time("2010-08-27 00:00", "2010-08-27 00:20"), a.Instrument.hmi, a.sdoml.Catalog(catalog_dir))
    files = Fido.fetch(found, path=tmp_path / "{file}", progress=False)
    names = sorted({" ".join(sunpy.map.Map(f).name.split()[:3]) for f in files})
    assert names == ["HMI Bx magnetic", "HMI By magnetic", "HMI Bz magnetic"], names


# --- 13. plot-quality -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stats_small(small, tmp_path_factory):
    from sdoml_sql.quality.stats import compute_frame_stats

    directory = copy_catalog(small["catalog"], tmp_path_factory.mktemp("stats") / "catalog")
    compute_frame_stats(directory, progress=False)
    return directory


def test_plot_quality_marks_every_flagged_bucket_and_its_labels_fit(stats_small, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D

    from sdoml_sql.quality.plot import FLAG_COLOURS, plot_quality

    catalog = Catalog(stats_small)
    flagged = catalog.query("SELECT channel, count(*) AS n FROM frame_quality WHERE NOT good GROUP BY 1").to_pandas()
    figure = plot_quality(catalog, tmp_path / "q.png")  # the default range: 2010 to 2020 in 30-day buckets
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = figure.bbox.width, figure.bbox.height
    colours = {tuple(round(c, 3) for c in to_rgb(v)) for v in FLAG_COLOURS.values()}
    for axis in figure.axes:
        label = axis.yaxis.label
        box = label.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, label.get_text()
        marks = []  # the bars of the strip under the row: (bar, its outline width)
        for bars in (c for c in axis.collections if isinstance(c, PolyCollection)):
            faces, widths = bars.get_facecolors(), bars.get_linewidths()
            for n, bar in enumerate(bars.get_paths()):
                if tuple(round(c, 3) for c in faces[n % len(faces)][:3]) in colours and bar.vertices[:, 1].min() < 0:
                    marks.append((bar, widths[n % len(widths)]))
        channel = label.get_text()
        if channel in set(flagged.channel):
            assert marks, channel
            for bar, outline in marks:  # visible whatever the bucket's count: at least 4 px high, 1 px wide
                extent = bar.get_extents(axis.transData)
                assert extent.height >= 4 and extent.width + 2 * outline * figure.dpi / 72 >= 1
        else:
            assert not marks, channel
    (legend,) = figure.legends
    gap = [h for h in legend.legend_handles if "gap" in h.get_label()]
    assert len(gap) == 1 and isinstance(gap[0], Line2D) and gap[0].get_marker() == "v"  # as drawn on the rows
    assert (tmp_path / "q.png").stat().st_size > 20_000


@pytest.mark.parametrize("gap", ["-5", "0 minutes", "soon"])
def test_plot_quality_refuses_a_gap_that_is_not_a_positive_interval(small, tmp_path, gap):
    result = run_cli("plot-quality", "--catalog", small["catalog"], tmp_path / "q.png", "--gap", gap)
    assert_one_line_error(result, f"gap '{gap}' is not a positive interval")
    assert not (tmp_path / "q.png").exists()


# --- 14. the CLI and README agree -----------------------------------------------------------------------------

def test_small_cli_disagreements(small, tmp_path):
    assert_one_line_error(run_cli("stats", "--catalog", copy_catalog(small["catalog"], tmp_path / "c"),
                                  "--scheduler", "tcp://127.0.0.1:1"), "cannot reach the dask scheduler at tcp://127.0.0.1:1")
    sync = run_cli("sync", "--help").stdout
    assert "--cache-dir" not in sync and "or a directory" in sync
    shell = run_cli("shell", "--catalog", "s3://no-such-bucket-sdoml/catalog", "-c", "SELECT 1",
                    env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, timeout=60)
    assert_one_line_error(shell, "is remote and the DuckDB shell reads local files", "sdoml-sql sync")
    for command in ["", *run_cli("--help").stdout.split("Commands:")[1].split()[::1]]:
        if not command.islower() or command.startswith("-"):
            continue
        text = run_cli(*([command] if command else []), "--help").stdout
        if command and not text:
            continue
        assert "Example:\n  " in text or "Example:\n" in text, (command, text)


def test_build_quiet_summarises_its_warnings_in_one_line(small, tmp_path):
    result = run_cli("build", "--aia", small["aia"], "--catalog", tmp_path / "c", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    warned = [w for entry in manifest["partitions"].values() for w in entry.get("warnings", [])]
    assert len(warned) > 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"warning: {len(warned)} warnings, the first: ") and "manifest.json" in lines[0]


def test_a_finished_export_rerun_says_it_is_complete(catalog_dir, tmp_path):
    sql = "SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27', '2010-08-27 06:00', '12 minutes', '6 minutes')"
    first = run_cli("export", sql, tmp_path / "t.zarr", "--downsample", "8", "--catalog", catalog_dir, "--quiet")
    assert first.returncode == 0 and first.stdout.startswith("wrote "), first.stderr
    files = tree_bytes(tmp_path / "t.zarr")
    again = run_cli("export", sql, tmp_path / "t.zarr", "--downsample", "8", "--catalog", catalog_dir, "--quiet")
    assert again.returncode == 0 and again.stdout.startswith(f"complete: {tmp_path / 't.zarr'}"), again.stderr
    assert tree_bytes(tmp_path / "t.zarr") == files
    other = run_cli("export", sql, tmp_path / "t.zarr", "--downsample", "4", "--catalog", catalog_dir, "--quiet")
    assert_one_line_error(other, "exists and holds other samples or options")


def test_start_after_stop_and_misspelt_macro_parameters_name_the_problem(catalog):
    with pytest.raises(QueryError, match=r"stop 2010-08-27 00:00:00 is before start 2010-08-28 00:00:00"):
        catalog.query("SELECT * FROM nearest('aia', '171A', '2010-08-28', '2010-08-27', '12 minutes', '6 minutes')")
    with pytest.raises(QueryError, match=r"stop .* is before start"):
        catalog.query("SELECT * FROM nearest_eve('2010-08-28', '2010-08-27', '12 minutes', '6 minutes')")
    with pytest.raises(QueryError, match=r"^macro nearest\(\) has no parameter goodonly: "
                                         r"its parameters are .*good_only; "
                                         r"did you mean good_only\?"):
        catalog.query("SELECT * FROM nearest('aia', '171A', '2010-08-27', '2010-08-28', '12 minutes', '6 minutes', "
                      "goodonly := true)")
    assert len(catalog.query("SELECT * FROM nearest('aia', '171A', '2010-08-27', '2010-08-27', '12 minutes', "
                             "'6 minutes')")) == 0  # an empty range is no error


# --- 12. numba's first compile, and a read-only install ---------------------------------------------------

from test_packaging import _pip_env, wheel  # noqa: E402,F401 - the wheel fixture


def test_first_stats_says_it_compiles_once_without_an_eta_even_on_a_read_only_install(wheel, small, tmp_path):  # noqa: F811 - the fixture
    target = tmp_path / "site"
    subprocess.run([PY, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target),
                    str(wheel)], check=True, cwd=tmp_path, env=_pip_env(), timeout=300)
    cache = target / "sdoml_sql" / "quality" / "__pycache__"
    shutil.rmtree(cache, ignore_errors=True)
    cache.write_text("not a directory: nothing can be cached beside the package (as in a read-only install)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR")}
    env.update(PYTHONPATH=str(target), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    runs = []
    for n in range(2):
        catalog = copy_catalog(small["catalog"], tmp_path / f"catalog{n}")
        done = subprocess.run([PY, "-m", "sdoml_sql.cli", "stats", "--catalog", str(catalog), "--channels", "171A",
                               "--years", "2010"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr
        runs.append(done.stderr.replace("\r", "\n"))
    compiling = [line for line in runs[0].splitlines() if "compiling kernels (once)" in line]
    assert compiling and not any(mark in line for line in compiling for mark in ("<", "?", "/s", "%")), compiling
    assert "compiling" not in runs[1]  # the kernels came from numba's user cache
    assert list((tmp_path / "cache" / "numba").rglob("*.nbi")), "numba cached nowhere"
    assert cache.is_file()


# --- 16. warnings that turn into errors later ----------------------------------------------------------------

def test_sample_stores_are_written_without_deprecation_warnings(tmp_path):
    from sdoml_sql.stores.sample import write_sample

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy 2.5: the 'generic' timedelta unit
        warnings.simplefilter("error", PendingDeprecationWarning)
        write_sample(tmp_path, aia_frames=3, hmi_frames=3, eve_samples=20, images=False, progress=False)


def test_make_test_runs_the_oldest_and_the_newest_python_and_make_demo_installs_no_test_tools():
    dry = subprocess.run(["make", "-n", "-B", "test", "demo", "PYTHON_NEWEST=python3.13"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    runs = [line for line in lines if "-m pytest" in line]
    assert [line.split("/bin/python")[0] for line in runs] == [".venv", ".venv313"], runs
    assert "python3.13 -m venv .venv313" in lines
    demo_install = [line for line in lines if "pip install --quiet -e ." in line and "[" not in line]
    assert demo_install == [".venv/bin/python -m pip install --quiet -e ."], lines
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
    assert "--index-url https://download.pytorch.org/whl/cpu" in (ROOT / "README.md").read_text()


def test_ctrl_c_while_the_query_thread_starts_still_stops_the_query(monkeypatch):
    """A Ctrl-C that lands while ``interruptible`` waits for its thread to begin (seen under
    load: the query ran on, orphaned, and the next query on the cursor waited for ever)."""
    import duckdb

    from sdoml_sql.query import connection

    assert threading.current_thread() is threading.main_thread()
    cursor = duckdb.connect().cursor()
    start = threading.Thread.start

    def start_then_ctrl_c(thread):
        start(thread)
        raise KeyboardInterrupt  # as SIGINT does in the main thread's wait inside start()

    monkeypatch.setattr(threading.Thread, "start", start_then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            connection.interruptible(cursor, lambda: cursor.execute(ENDLESS_SQL).fetchall())
        monkeypatch.undo()
        answer = []
        probe = threading.Thread(target=lambda: answer.append(cursor.execute("SELECT 42").fetchall()), daemon=True)
        probe.start()
        probe.join(20)
        assert answer == [[(42,)]], "the interrupted query still holds the cursor"
    finally:
        cursor.interrupt()
