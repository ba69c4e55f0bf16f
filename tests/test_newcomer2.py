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
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_bad_input import assert_one_line_error
from sdoml_sql import Catalog
from sdoml_sql.exceptions import DatasetError, InputError, QueryError, StoreError

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
    with pytest.raises(QueryError, match=r"bucket '1 second' gives [\d,]+ buckets .* more than 2,000: choose '6 minutes' or longer"):
        plot_quality(catalog, start="2010-08-27", stop="2010-08-29", bucket="1 second")
    assert time.perf_counter() - started < 10
    with pytest.raises(QueryError, match="2,880 buckets"):
        plot_quality(catalog, start="2010-08-27", stop="2010-08-29", bucket="1 minute")
    assert plot_quality(catalog, start="2010-08-27", stop="2010-08-29", bucket="2 minutes") is not None  # 1,440


# --- 2, 3. build: unknown channels, a store of another instrument -------------------------------

def test_build_refuses_unknown_channels_with_a_did_you_mean_and_leaves_the_catalog(small, tmp_path):
    catalog = copy_catalog(small["catalog"], tmp_path / "catalog")
    before = tree_bytes(catalog)
    result = run_cli("build", "--aia", small["aia"], "--catalog", catalog, "--channels", "171", "--quiet")
    assert_one_line_error(result, "unknown channel 171", "the aia store has 171A, 193A", "did you mean 171A?")
    result = run_cli("build", "--aia", small["aia"], "--hmi", small["hmi"], "--catalog", catalog,
                     "--channels", "4500A,Bz", "--quiet")
    assert_one_line_error(result, "unknown channel 4500A", "the aia and hmi stores have 171A, 193A, Bx, By, Bz")
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

def test_ctrl_c_stops_the_cli_query_within_a_second(small):
    process = subprocess.Popen([PY, "-m", "sdoml_sql.cli", "query", ENDLESS_SQL, "--catalog", str(small["catalog"])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
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
    process = subprocess.Popen([PY, "-c", INTERRUPTED_SCRIPT, str(small["catalog"]), ENDLESS_SQL],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "RUNNING"
        time.sleep(2)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        interrupted = process.stdout.readline().split()
        elapsed = time.monotonic() - sent
        after = process.stdout.readline().split()
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
