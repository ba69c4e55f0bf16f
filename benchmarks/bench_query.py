"""Benchmark: the seed notebook's attrs scan and argmin loop against ``sdoml_sql.query``.

Builds the catalog the real way, once (cached in ``--dir``, default ``bench-output/``):
``sdoml_sql.stores.sample.write_sample`` writes headers-only AIA and HMI stores with the real key set
(175 AIA keywords per frame), then ``sdoml_sql.catalog_builder.build.build_catalog`` harvests them.  Default:
AIA 9 channels x 2 years x 56,000 frames and HMI Bx/By/Bz over one year (43,000 frames each,
a 12-minute cadence, across the 2015 leap second): 1,137,000 frames.  Then times

(a) short exposures of one channel-year in one week: ``EXPTIME < 2 AND T_OBS BETWEEN ...``;
(b) one year of HMI Bz on a 12-minute grid with a 3-minute tolerance (the ``nearest`` macro).

The seed way loads the array's ``.attrs`` lists from its ``.zattrs`` JSON (``json.loads``), then
uses ``np.where`` (a) or a Python ``argmin`` loop per grid time (b).  Every figure is the median
of ``--repeat`` runs after one warm-up run.  Run:

    .venv/bin/python benchmarks/bench_query.py [--dir bench-output] [--repeat 9]

Generating the stores takes ~2 minutes and ~10 GB of memory (the sample writer consolidates
all headers in memory), the build ~30 s; the stores take ~3 GB on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

STORE_NAMES = {"aia": "sdomlv2_small.zarr", "hmi": "sdomlv2_hmi_small.zarr"}
PARAMS_FILE = "params.json"


def prepare(directory: Path, aia_frames: int, hmi_frames: int, years: tuple[int, ...]) -> Path:
    """The catalog of sample stores of these sizes, written and built once; return its directory.

    A rerun with the same sizes reuses ``directory``; other sizes rebuild it.
    """
    params = {"aia_frames": aia_frames, "hmi_frames": hmi_frames, "years": list(years),
              "hmi_years": [years[-1]]}
    stores, catalog = directory / "stores", directory / "catalog"
    stamp = directory / PARAMS_FILE
    if stamp.is_file() and json.loads(stamp.read_text()) == params and (catalog / "manifest.json").is_file():
        return catalog
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    shutil.rmtree(stores, ignore_errors=True)
    shutil.rmtree(catalog, ignore_errors=True)
    started = time.perf_counter()
    paths = write_sample(stores, aia_frames=aia_frames, hmi_frames=hmi_frames, years=years,
                         hmi_years=(years[-1],), images=False, eve=False, progress=True)
    for path in paths.values():  # the consolidated copy of every header: not needed here
        (path / ".zmetadata").unlink(missing_ok=True)
    print(f"wrote the sample stores in {time.perf_counter() - started:.0f} s", flush=True)
    report = build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), catalog=catalog, progress=True)
    print(report.summary(), flush=True)
    stamp.write_text(json.dumps(params))
    return catalog


# --- the seed notebook's way -----------------------------------------------------------------

def seed_attrs(stores: Path, instrument: str, array_path: str) -> dict:
    """``root[year][channel].attrs`` as the seed reads it: the whole ``.zattrs`` JSON."""
    return json.loads((stores / STORE_NAMES[instrument] / array_path / ".zattrs").read_text())


def seed_times(strings: list[str], tai: bool) -> np.ndarray:
    """The seed's time parsing (TAI strings taken as UTC, as every public reader does)."""
    if tai:
        strings = [s[:19].replace(".", "-", 2).replace("_", "T") for s in strings]
    return np.array([s.rstrip("Z") for s in strings], dtype="datetime64[ms]")


def seed_short_exposures(stores: Path, array_path: str, start: str, stop: str) -> np.ndarray:
    attrs = seed_attrs(stores, "aia", array_path)
    times = seed_times(attrs["T_OBS"], tai=False)
    exptime = np.array(attrs["EXPTIME"], dtype=float)
    return np.where((exptime < 2.0) & (times >= np.datetime64(start)) & (times <= np.datetime64(stop)))[0]


def seed_grid(stores: Path, year: int, cadence_min=12, tolerance_min=3) -> list:
    attrs = seed_attrs(stores, "hmi", f"{year}/Bz")
    times = seed_times(attrs["T_OBS"], tai=True)
    grid = np.arange(np.datetime64(f"{year}-01-01"), np.datetime64(f"{year + 1}-01-01"),
                     np.timedelta64(cadence_min, "m")).astype("datetime64[ms]")
    picked = []
    for t in grid:
        distance = np.abs(times - t)
        i = int(np.argmin(distance))
        picked.append(i if distance[i] <= np.timedelta64(tolerance_min, "m") else None)
    return picked


def timed(function, repeat: int):
    """(median seconds of ``repeat`` runs after one warm-up run, all run times, last result)."""
    result = function()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs, result


def catalog_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose this benchmark's catalog (``prepare``'s arguments)."""
    parser.add_argument("--dir", default="bench-output", type=Path)
    parser.add_argument("--aia-frames", default=56_000, type=int, help="frames per AIA channel and year")
    parser.add_argument("--hmi-frames", default=43_000, type=int, help="frames per HMI component (last year)")
    parser.add_argument("--years", default=[2014, 2015], type=int, nargs="+")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    catalog_arguments(parser)
    parser.add_argument("--repeat", default=9, type=int, help="timed runs per figure (after a warm-up)")
    parser.add_argument("--seed-repeat", default=3, type=int, help="timed runs of the seed way")
    args = parser.parse_args(argv)

    from sdoml_sql import Catalog

    catalog_dir = prepare(args.dir, args.aia_frames, args.hmi_frames, tuple(args.years))
    stores = args.dir / "stores"
    catalog = Catalog(catalog_dir)
    total = catalog.query("SELECT count(*) AS n FROM frames").to_pandas()["n"][0]
    keys = len(catalog.manifest["partitions"][f"aia/year={args.years[-1]}/channel=171A"]["keys"])
    print(f"catalog: {total:,} frames, {keys} AIA keywords; machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {__import__('duckdb').__version__}")

    # (a) the week around the first short 171A exposure of the last year
    year = args.years[-1]
    first = catalog.query(f"SELECT min(T_OBS) AS t FROM aia WHERE channel = '171A' AND year = {year} "
                          "AND EXPTIME < 2").to_pandas()["t"][0]
    start = str((first - np.timedelta64(3, "D")).floor("D").date())
    stop = str((first + np.timedelta64(4, "D")).floor("D").date())
    sql_a = (f"SELECT year, channel, idx, T_OBS, EXPTIME FROM aia WHERE channel = '171A' AND year = {year} "
             f"AND EXPTIME < 2 AND T_OBS BETWEEN '{start}' AND '{stop}'")
    seed_a, seed_runs_a, seed_rows = timed(lambda: seed_short_exposures(stores, f"{year}/171A", start, stop),
                                           args.seed_repeat)
    sql_time_a, runs_a, selection = timed(lambda: catalog.query(sql_a), args.repeat)
    assert sorted(selection.to_pandas()["idx"]) == sorted(seed_rows.tolist())
    report(f"(a) 171A {year} EXPTIME < 2 AND T_OBS BETWEEN '{start}' AND '{stop}'", seed_a, sql_time_a,
           runs_a, len(selection))

    # (b) one year of HMI Bz at 12 minutes, 3-minute tolerance
    sql_b = (f"SELECT * FROM nearest('hmi', 'Bz', '{year}-01-01', '{year + 1}-01-01', "
             "INTERVAL 12 minutes, INTERVAL 3 minutes)")
    seed_b, seed_runs_b, picked = timed(lambda: seed_grid(stores, year), args.seed_repeat)
    sql_time_b, runs_b, grid = timed(lambda: catalog.query(sql_b), args.repeat)
    got = [None if v is None else int(v) for v in grid.to_arrow().column("idx").to_pylist()]
    agree = sum(g == p for g, p in zip(got, picked))
    report(f"(b) HMI Bz {year} on a 12-minute grid, 3-minute tolerance (nearest)", seed_b, sql_time_b, runs_b,
           len(grid), f"{sum(g is not None for g in got)} frames found, seed {sum(p is not None for p in picked)}; "
           f"same pick for {agree} grid times (the seed reads TAI strings as UTC)")


def report(title: str, seed_s: float, sql_s: float, runs: list[float], rows: int, extra: str = "") -> None:
    spread = ", ".join(f"{r * 1000:.1f}" for r in sorted(runs))
    print(f"{title}:\n  seed {seed_s * 1000:,.0f} ms; query() {sql_s * 1000:,.1f} ms median warm "
          f"(runs: {spread} ms); {seed_s / sql_s:,.0f}x faster; {rows} rows. {extra}".rstrip(), flush=True)


if __name__ == "__main__":
    main()
