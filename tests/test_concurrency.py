"""Readers during rebuilds see a complete old or a complete new partition; two builds of
one catalog at once are refused across processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import duckdb
import numpy as np
import pytest

from sdoml_sql.catalog_builder.build import build_catalog, rebuild_catalog
from sdoml_sql.query.catalog import Catalog

PY = sys.executable
ARRAYS = ("2010/171A", "2010/193A")
FETCH_SQL = "SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 AND idx < 3 ORDER BY idx"
REBUILDS = 6
READ_DEADLINE_S = 120


@pytest.fixture()
def live_catalog(sample_paths, tmp_path):
    """A copy of the AIA sample (2010 only) and a catalog built from it."""
    store = tmp_path / "aia.zarr"
    shutil.copytree(sample_paths["aia"], store, ignore=shutil.ignore_patterns("2020"))
    (store / ".zmetadata").unlink(missing_ok=True)
    set_exptime(store, 0.5)  # one value per partition from the start: a reader may come before the first rebuild
    catalog = tmp_path / "catalog"
    build_catalog(aia=str(store), catalog=catalog, progress=False)
    return store, catalog


def set_exptime(store, value: float) -> None:
    """Give every frame of the watched arrays EXPTIME = value."""
    for array in ARRAYS:
        path = store / array / ".zattrs"
        attrs = json.loads(path.read_text())
        attrs["EXPTIME"] = [value] * len(attrs["EXPTIME"])
        path.write_text(json.dumps(attrs, indent=2))


def frames(store, array: str) -> int:
    return json.loads((store / array / ".zarray").read_text())["shape"][0]


def test_readers_see_whole_partitions_while_rebuild_swaps_them(live_catalog):
    store, catalog = live_catalog
    expected_counts = {a.split("/")[1]: frames(store, a) for a in ARRAYS}
    expected_pixels = Catalog(catalog).query(FETCH_SQL).fetch().compute()
    errors: list[BaseException] = []

    def rebuild_repeatedly():
        try:
            for n in range(REBUILDS):
                set_exptime(store, float(n % 2 + 1))
                assert len(rebuild_catalog(catalog, progress=False).written) == len(ARRAYS)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=rebuild_repeatedly)
    writer.start()
    reads = 0
    deadline = time.monotonic() + READ_DEADLINE_S
    while (writer.is_alive() or reads < 3) and time.monotonic() < deadline:
        rows = Catalog(catalog).query(
            "SELECT channel, count(*) AS n, min(EXPTIME) AS lo, max(EXPTIME) AS hi FROM aia "
            "WHERE year = 2010 AND channel IN ('171A', '193A') GROUP BY channel").to_arrow().to_pylist()
        for row in rows:
            assert row["n"] == expected_counts[row["channel"]], row  # never a partial file
            assert row["lo"] == row["hi"], row  # never half old, half new
        assert {r["channel"] for r in rows} == set(expected_counts)
        np.testing.assert_array_equal(Catalog(catalog).query(FETCH_SQL).fetch().compute(), expected_pixels)
        reads += 1
    writer.join(timeout=READ_DEADLINE_S)
    assert not writer.is_alive() and not errors, errors
    assert reads >= 3
    final = duckdb.sql(f"SELECT DISTINCT EXPTIME FROM read_parquet('{catalog}/aia/year=2010/channel=171A/*.parquet')")
    assert final.fetchall() == [(float((REBUILDS - 1) % 2 + 1),)]


HOLD_THE_LOCK = """
import sys, time
import sdoml_sql.catalog_builder.build as build
import sdoml_sql.catalog_builder.partition_files as partition_files
real = partition_files.harvest_partition
def slow(*args, **kwargs):
    result = real(*args, **kwargs)
    print("harvesting", flush=True)
    time.sleep(60)
    return result
partition_files.harvest_partition = slow
build.rebuild_catalog(sys.argv[1], full=True, progress=False)
"""


def test_a_second_build_in_another_process_is_refused(live_catalog):
    store, catalog = live_catalog
    holder = subprocess.Popen([PY, "-c", HOLD_THE_LOCK, str(catalog)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "harvesting"
        for args in (["rebuild"], ["build", "--aia", str(store)]):
            result = subprocess.run([PY, "-m", "sdoml_sql.cli", *args, "--catalog", str(catalog), "--quiet"],
                                    capture_output=True, text=True, timeout=120)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 1 and len(lines) == 1, result.stderr
            assert lines[0].startswith("error: catalog") and f"is being built by pid {holder.pid}" in lines[0]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert rebuild_catalog(catalog, progress=False).written == []  # lock released with the process
