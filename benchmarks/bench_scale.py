"""Benchmark: query cost at mission scale (168 partition files) against 2 years (18 AIA files).

Builds, once (cached in ``--dir``, default ``bench-output/scale``), headers-only sample stores
(``sdoml_sql.stores.sample.write_sample``: 9 AIA channels x 2 years x ``--aia-frames`` frames,
HMI Bx/By/Bz x 2 years x ``--hmi-frames``) and harvests them with
``sdoml_sql.catalog_builder.build.build_catalog``: the *small* catalog, 18 AIA + 6 HMI files.
The *mission* catalog copies those partitions under 12 more years (2010-2023, 14 years x 12
channels = 168 files): each copy is the built partition of the same channel with every time
column shifted by whole years (written with the builder's own Parquet writer, so the same
sort order and row groups), its manifest entry copied.  The output says how many partitions
are replicated.

Timed, on both catalogs in the same run (median of ``--repeat`` warm runs):

(a) the headline filter, all channels, one week: ``EXPTIME < 2 AND T_OBS BETWEEN ...``;
(b) one year of HMI Bz on a 12-minute grid, 3-minute tolerance (``nearest``);
(c) ``sdoml-sql query "…"`` as a whole process (fresh interpreter, cold connection);
(d) ``Catalog(dir)`` open;
(e) each of (a)-(d) on the mission catalog against the small one (target <= 1.5x);
(f) the first ``Catalog()`` open since the catalog's commit against a warm open (<= 1.5x).

The seed way (the notebook's: ``json.loads`` of the channel-year ``.zattrs`` plus numpy) is
timed for (a) on every channel of the year and for (b), and the ratios printed.  With ``--s3``
the small catalog is uploaded to the S3 emulator (moto, ``tests/emulators.py``) and (a) run on
it in place (the bytes it transferred counted at the fault proxy); the mission catalog's files
are uploaded and committed as a remote build commits them, and its first open, warm open and
(b) are timed against the local figures (targets: (b) <= 3x local, first open <= 1.5x warm).
Run:

    .venv/bin/python benchmarks/bench_scale.py [--dir bench-output/scale] [--repeat 9] [--s3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the seed notebook's way and the timing, as bench_query measures them
from bench_query import STORE_NAMES, seed_grid, seed_short_exposures, timed  # noqa: E402 - after sys.path

BUILT_YEARS = (2014, 2015)
MISSION_YEARS = tuple(range(2010, 2024))
PARAMS_FILE = "params.json"
TARGETS_MS = {"a": 30, "a2": 30, "b": 60, "c": 500, "d": 100}


def prepare(directory: Path, aia_frames: int, hmi_frames: int) -> tuple[Path, Path]:
    """The small and mission catalogs, written and built once; return their directories."""
    params = {"aia_frames": aia_frames, "hmi_frames": hmi_frames, "years": list(BUILT_YEARS),
              "mission": list(MISSION_YEARS), "layout": 5}
    stores, small, mission = directory / "stores", directory / "small", directory / "mission"
    stamp = directory / PARAMS_FILE
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return small, mission
    from sdoml_sql.stores.sample import write_sample
    from sdoml_sql.workflows import build_catalog  # copies written at the commit, as `sdoml-sql build` does

    store_params = [aia_frames, hmi_frames, list(BUILT_YEARS)]
    store_stamp = directory / "stores.json"
    if not store_stamp.is_file() or json.loads(store_stamp.read_text()) != store_params:
        shutil.rmtree(stores, ignore_errors=True)
        started = time.perf_counter()
        paths = write_sample(stores, aia_frames=aia_frames, hmi_frames=hmi_frames, years=BUILT_YEARS,
                             hmi_years=BUILT_YEARS, images=False, eve=False, progress=True)
        for path in paths.values():  # the consolidated copy of every header: not needed here
            (path / ".zmetadata").unlink(missing_ok=True)
        store_stamp.write_text(json.dumps(store_params))
        print(f"wrote the sample stores in {time.perf_counter() - started:.0f} s", flush=True)
    shutil.rmtree(mission, ignore_errors=True)
    built_stamp = directory / "small.json"
    if not built_stamp.is_file() or json.loads(built_stamp.read_text()) != store_params:
        shutil.rmtree(small, ignore_errors=True)
        report = build_catalog(aia=str(stores / STORE_NAMES["aia"]), hmi=str(stores / STORE_NAMES["hmi"]),
                               catalog=small, progress=True)
        print(report.summary(), flush=True)
        built_stamp.write_text(json.dumps(store_params))
    replicate(small, mission, MISSION_YEARS)
    stamp.write_text(json.dumps(params))
    return small, mission


def replicate(small: Path, mission: Path, years: tuple[int, ...]) -> None:
    """Copy ``small`` to ``mission`` and add every missing year of ``years``: each AIA/HMI
    partition of a built year (alternately) with its time columns shifted by whole years."""
    import duckdb

    from sdoml_sql.catalog_builder.build import DATA_FILE, MANIFEST, time_index, write_partition_file
    from sdoml_sql.catalog_builder.location import manifest_bytes, open_location, read_manifest
    from sdoml_sql.query.catalog import derive_copies

    shutil.copytree(small, mission)
    manifest = read_manifest(mission)
    built = {k: v for k, v in manifest["partitions"].items() if v.get("instrument") in ("aia", "hmi")}
    connection = duckdb.connect()
    copies = 0
    for year in years:
        if year in BUILT_YEARS:
            continue
        origin = BUILT_YEARS[year % len(BUILT_YEARS)]
        for key, entry in built.items():
            if entry["year"] != origin:
                continue
            times = [k for k, v in entry["keys"].items() if v["type"] == "TIMESTAMP"]
            shifted = ", ".join(f'"{k}" + to_years({year - origin}) AS "{k}"' for k in times)
            table = connection.sql(f"SELECT * REPLACE ({shifted}) FROM read_parquet('{small / key / DATA_FILE}')"
                                   ).to_arrow_table()
            new_key = key.replace(f"year={origin}", f"year={year}")
            write_partition_file(table, mission / new_key / DATA_FILE)
            manifest["partitions"][new_key] = {**entry, "year": year, **time_index(table),
                                               "array_path": entry["array_path"].replace(str(origin), str(year))}
            copies += 1
    manifest["partitions"] = dict(sorted(manifest["partitions"].items()))
    started = time.perf_counter()
    manifest = derive_copies(open_location(mission), manifest)  # what a build's commit does
    print(f"mission catalog: copies written at the commit in {time.perf_counter() - started:.1f} s", flush=True)
    (mission / MANIFEST).write_bytes(manifest_bytes(manifest))
    print(f"mission catalog: {len(built)} built partitions + {copies} replicated under other years "
          f"(times shifted by whole years)", flush=True)


def seed_short_exposures_of_year(stores: Path, year: int, start: str, stop: str) -> int:
    """Frames of every channel of ``year`` with EXPTIME < 2 between start and stop (the seed's way)."""
    channels = sorted(p.name for p in (stores / STORE_NAMES["aia"] / str(year)).iterdir() if p.is_dir())
    return sum(len(seed_short_exposures(stores, f"{year}/{channel}", start, stop)) for channel in channels)


def headline_week(catalog_dir: Path, year: int) -> tuple[str, str]:
    """The week (midnight to midnight) around the year's first exposure under 2 s."""
    from sdoml_sql import Catalog

    first = Catalog(catalog_dir).query(f"SELECT min(T_OBS) AS t FROM aia WHERE year = {year} AND EXPTIME < 2"
                                       ).to_arrow().column("t")[0].as_py()
    day = np.datetime64(first.date())
    return str(day - np.timedelta64(3, "D")), str(day + np.timedelta64(4, "D"))


def headline_sql(start: str, stop: str) -> str:
    return ("SELECT year, channel, idx, T_OBS, EXPTIME FROM aia "
            f"WHERE EXPTIME < 2 AND T_OBS BETWEEN '{start}' AND '{stop}'")


def headline_expression_sql(start: str) -> str:
    """(a) with its bounds written as an expression DuckDB folds (issue 22)."""
    return ("SELECT year, channel, idx, T_OBS, EXPTIME FROM aia "
            f"WHERE EXPTIME < 2 AND T_OBS BETWEEN TIMESTAMP '{start}' AND TIMESTAMP '{start}' + INTERVAL 7 DAY")


def nearest_sql(year: int) -> str:
    return (f"SELECT * FROM nearest('hmi', 'Bz', '{year}-01-01', '{year + 1}-01-01', "
            "INTERVAL 12 minutes, INTERVAL 3 minutes)")


def cli_seconds(sql: str, catalog: Path) -> float:
    """Wall time of ``sdoml-sql query SQL --catalog DIR --format csv`` as a fresh process."""
    command = [str(Path(sys.executable).parent / "sdoml-sql"), "query", sql, "--catalog", str(catalog),
               "--format", "csv"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(catalog_dir: Path, year: int, start: str, stop: str, repeat: int) -> dict:
    """Figures (a)-(d) in seconds on one catalog, plus the row counts of (a) and (b)."""
    from sdoml_sql import Catalog

    figures = {}
    started = time.perf_counter()
    Catalog(catalog_dir)
    figures["d0"] = time.perf_counter() - started  # the first open since the catalog's commit
    figures["d"], _, catalog = timed(lambda: Catalog(catalog_dir), repeat)
    figures["a"], _, selection = timed(lambda: catalog.query(headline_sql(start, stop)), repeat)
    figures["a2"], _, expression = timed(lambda: catalog.query(headline_expression_sql(start)), repeat)
    assert len(expression) == len(selection), "the expression bounds select the same week"
    figures["b"], _, grid = timed(lambda: catalog.query(nearest_sql(year)), repeat)
    figures["c"] = statistics.median(cli_seconds(headline_sql(start, stop), catalog_dir)
                                     for _ in range(max(3, repeat // 2)))
    figures["rows_a"] = len(selection)
    figures["found_b"] = sum(v is not None for v in grid.to_arrow().column("idx").to_pylist())
    figures["files"] = sum(1 for _ in catalog_dir.glob("*/year=*/channel=*/*.parquet"))
    return figures


def s3_figures(small: Path, mission: Path, sql: str, year: int, repeat: int) -> dict:
    """On the S3 emulator (moto, tests/emulators.py): the small catalog uploaded and (a) run on
    it in place through the fault proxy that counts the bytes transferred; the mission
    catalog's files uploaded and committed as a remote build commits them (copies computed
    from the files in the bucket and uploaded, then the manifest), then its first open, warm
    opens and (b) timed against the emulator directly."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from emulators import S3_WRITER, FaultProxy, start_s3, upload_tree
    from sdoml_sql import Catalog
    from sdoml_sql.catalog_builder.location import MANIFEST, manifest_bytes, open_location, read_manifest
    from sdoml_sql.query.catalog import derive_copies

    emulator = start_s3({})
    proxy = FaultProxy(emulator.endpoint)
    figures = {}
    try:
        writer = emulator.writer()
        upload_tree(writer, small, f"{emulator.bucket}/small")
        started = time.perf_counter()
        ignored = ("frame_times", "frame_quality", MANIFEST, "init.sql", ".lock")
        files = [p for p in sorted(mission.rglob("*.parquet")) if p.relative_to(mission).parts[0] not in ignored]
        for file in files:
            writer.put_file(str(file), f"{emulator.bucket}/mission/{file.relative_to(mission).as_posix()}")
        figures["upload_s"] = time.perf_counter() - started
        os.environ.update({"SDOML_S3_ENDPOINT": proxy.endpoint, "AWS_ACCESS_KEY_ID": S3_WRITER["key"],
                           "AWS_SECRET_ACCESS_KEY": S3_WRITER["secret"]})
        catalog = Catalog(emulator.url("small"))
        proxy.clear()
        figures["rows_a"] = len(catalog.query(sql))
        figures["bytes_a"] = proxy.bytes_sent
        figures["size_small"] = sum(p.stat().st_size for p in small.rglob("*") if p.is_file())
        os.environ["SDOML_S3_ENDPOINT"] = emulator.endpoint  # timings: the emulator itself, not through the proxy
        location = open_location(emulator.url("mission"))
        manifest = {k: v for k, v in read_manifest(mission).items() if k != "copies"}
        started = time.perf_counter()
        manifest = derive_copies(location, manifest)
        location.write_bytes(MANIFEST, manifest_bytes(manifest))
        figures["commit_s"] = time.perf_counter() - started
        started = time.perf_counter()
        Catalog(emulator.url("mission"))
        figures["d0"] = time.perf_counter() - started
        figures["d"], _, catalog = timed(lambda: Catalog(emulator.url("mission")), repeat)
        figures["copies"] = sorted(catalog._copies)
        local = Catalog(mission)
        grid = catalog.query(nearest_sql(year))  # warm-up of both
        local.query(nearest_sql(year))
        pairs = []
        for _ in range(repeat):  # interleaved, so that both see the same load
            started = time.perf_counter()
            grid = catalog.query(nearest_sql(year))
            middle = time.perf_counter()
            local.query(nearest_sql(year))
            pairs.append((middle - started, time.perf_counter() - middle))
        figures["b"] = statistics.median(p[0] for p in pairs)
        figures["b_local"] = statistics.median(p[1] for p in pairs)
        figures["b_ratio"] = statistics.median(p[0] / p[1] for p in pairs)
        figures["found_b"] = sum(v is not None for v in grid.to_arrow().column("idx").to_pylist())
        return figures
    finally:
        proxy.stop()
        emulator.stop()


LABELS = {"a": "(a) headline filter, all channels, one week",
          "a2": "(a) with bounds TIMESTAMP '…' + INTERVAL 7 DAY", "b": "(b) nearest, HMI Bz, one year",
          "c": "(c) sdoml-sql query, whole process", "d": "(d) Catalog() open"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench-output/scale", type=Path)
    parser.add_argument("--aia-frames", default=50_100, type=int, help="frames per AIA channel and year")
    parser.add_argument("--hmi-frames", default=43_000, type=int, help="frames per HMI component and year")
    parser.add_argument("--repeat", default=9, type=int, help="timed runs per figure (after a warm-up)")
    parser.add_argument("--s3", action="store_true", help="also upload the small catalog to the S3 emulator "
                        "and count the bytes the headline query transfers (~1 minute)")
    args = parser.parse_args(argv)

    import duckdb

    small, mission = prepare(args.dir, args.aia_frames, args.hmi_frames)
    year = BUILT_YEARS[-1]
    start, stop = headline_week(small, year)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"DuckDB {duckdb.__version__}", flush=True)
    results = {name: measure(path, year, start, stop, args.repeat) for name, path in
               (("small", small), ("mission", mission))}
    for name, figures in results.items():
        print(f"{name} catalog: {figures['files']} partition files; "
              f"headline ({start} to {stop}) {figures['rows_a']} rows, nearest {figures['found_b']} frames found")
    assert results["small"]["rows_a"] == results["mission"]["rows_a"], "the week lies in a built year"
    print(f"{'':46} {'18 AIA+6 HMI':>13} {'168 files':>10} {'ratio':>6} {'target':>8}")
    for key, label in LABELS.items():
        a, b = results["small"][key] * 1000, results["mission"][key] * 1000
        verdict = "ok" if b <= TARGETS_MS[key] and b <= 1.5 * a else "MISSED"
        print(f"{label:46} {a:10.1f} ms {b:7.1f} ms {b / a:5.2f}x  <={TARGETS_MS[key]} ms, <=1.5x {verdict}")

    for name, figures in results.items():
        print(f"{name} catalog, local: first Catalog() open since its commit {figures['d0'] * 1000:.1f} ms, warm "
              f"{figures['d'] * 1000:.1f} ms: {figures['d0'] / figures['d']:.2f}x (target <= 1.5x)")
    if args.s3:
        s3 = s3_figures(small, mission, headline_sql(start, stop), year, args.repeat)
        print(f"(a) on the small catalog in the S3 emulator, read in place: {s3['bytes_a']:,} bytes transferred of "
              f"{s3['size_small']:,} ({s3['bytes_a'] / s3['size_small']:.2%}; target <= 5%), {s3['rows_a']} rows")
        print(f"mission catalog on S3: {s3['upload_s']:.0f} s to upload its partitions; the commit (copies "
              f"{', '.join(s3['copies'])} computed in the bucket, uploaded, manifest) {s3['commit_s']:.1f} s")
        print(f"mission catalog on S3: (b) nearest one year {s3['b'] * 1000:.1f} ms ({s3['found_b']} frames found) "
              f"against {s3['b_local'] * 1000:.1f} ms local, timed alternately: {s3['b_ratio']:.2f}x "
              f"(median of the per-pair ratios; target <= 3x)")
        print(f"mission catalog on S3: first Catalog() open after the commit {s3['d0'] * 1000:.1f} ms, warm "
              f"{s3['d'] * 1000:.1f} ms: {s3['d0'] / s3['d']:.2f}x (target <= 1.5x)")
    stores = args.dir / "stores"
    seed_a, _, found = timed(lambda: seed_short_exposures_of_year(stores, year, start, stop), 1)
    assert found == results["mission"]["rows_a"], (found, results["mission"]["rows_a"])
    seed_b, _, _ = timed(lambda: seed_grid(stores, year), 1)
    print(f"seed way (json.loads of the .zattrs + numpy): (a) {seed_a * 1000:,.0f} ms, "
          f"{seed_a / results['mission']['a']:,.0f}x slower than the mission catalog; (b) {seed_b * 1000:,.0f} ms, "
          f"{seed_b / results['mission']['b']:,.0f}x slower")


if __name__ == "__main__":
    main()
