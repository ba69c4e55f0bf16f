"""Benchmark: the seed notebook's attrs scan and argmin loop against ``sdoml_sql.query``.

Writes a headers-only catalog in the contract layout (docs/architecture.md) directly with
pyarrow — AIA 9 channels and HMI Bz over two years, > 1 M frames — plus the ``.zattrs`` JSON
of the two arrays the seed way reads, then times:

(a) short exposures in one week: ``EXPTIME < 2 AND T_OBS BETWEEN …`` on 171A;
(b) one year of HMI Bz on a 12-minute grid with a 3-minute tolerance.

The seed way loads the array's ``.attrs`` lists from its ``.zattrs`` JSON, then uses
``np.where`` (a) or a Python ``argmin`` loop per grid time (b).  Run:

    .venv/bin/python benchmarks/bench_query.py [--dir bench-output] [--aia-frames 60000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

AIA_CHANNELS = ("94A", "131A", "171A", "193A", "211A", "304A", "335A", "1600A", "1700A")
EXTRA_KEYS = ("CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CROTA2", "RSUN_OBS",
              "DSUN_OBS", "CRLN_OBS", "CRLT_OBS", "DATAMEAN", "DATARMS", "DATAMEDN", "DATAKURT",
              "DATASKEW", "DEG_COR", "R_SUN", "OBS_VR", "OBS_VW", "OBS_VN", "SAT_Y0", "SAT_Z0")
SECOND = np.timedelta64(1, "s")


def tai_minus_utc(day: np.datetime64) -> int:
    """TAI − UTC in seconds (2010–2020 span of the leap-second table)."""
    if day >= np.datetime64("2017-01-01"):
        return 37
    if day >= np.datetime64("2015-07-01"):
        return 36
    if day >= np.datetime64("2012-07-01"):
        return 35
    return 34


def frame_times(year: int, frames: int, cadence_s: int, offset_s: float, rng) -> np.ndarray:
    """``frames`` observation times of one array: cadence slots with gaps, days out of order."""
    start = np.datetime64(f"{year}-01-01T00:00:00", "us")
    slots = (np.datetime64(f"{year + 1}-01-01", "us") - start) // np.timedelta64(cadence_s, "s")
    chosen = np.sort(rng.choice(int(slots), size=min(frames, int(slots)), replace=False))
    jitter = np.round(rng.uniform(0, 1, chosen.size), 2)
    times = start + (chosen * cadence_s * 1_000_000 + ((offset_s + jitter) * 1e6).astype(np.int64)).astype("timedelta64[us]")
    days = times.astype("datetime64[D]")
    order = rng.permutation(np.unique(days))
    rank = {day: i for i, day in enumerate(order)}
    return times[np.lexsort((times, np.array([rank[d] for d in days])))]


def array_table(times: np.ndarray, instrument: str, rng) -> pa.Table:
    """The catalog table of one array: idx, T_OBS, T_OBS_STR, EXPTIME (AIA) and extra keys."""
    n = times.size
    columns = {"idx": pa.array(np.arange(n, dtype=np.int64))}
    if instrument == "aia":
        columns["T_OBS"] = pa.array(times)
        columns["T_OBS_STR"] = pa.array([t[:22] + "Z" for t in np.datetime_as_string(times, unit="ms")])
        columns["EXPTIME"] = pa.array(np.round(rng.uniform(0.5, 3.0, n), 3))
    else:
        tai = np.array([t + tai_minus_utc(t.astype("datetime64[D]")) * SECOND for t in times.astype("datetime64[s]")])
        columns["T_OBS"] = pa.array(times.astype("datetime64[s]").astype("datetime64[us]"))
        columns["T_OBS_STR"] = pa.array([s.replace("-", ".").replace("T", "_") + "_TAI"
                                         for s in np.datetime_as_string(tai, unit="s")])
    for key in EXTRA_KEYS:
        columns[key] = pa.array(rng.normal(size=n))
    return pa.table(columns)


def write_zattrs(path: Path, table: pa.Table) -> None:
    """The ``.zattrs`` the source store would have: one list per keyword (strings for times)."""
    attrs = {name: table.column(name).to_pylist() for name in table.column_names
             if name not in ("idx", "T_OBS")}
    attrs["T_OBS"] = attrs.pop("T_OBS_STR")
    path.mkdir(parents=True, exist_ok=True)
    (path / ".zattrs").write_text(json.dumps(attrs))


def write_catalog(directory: Path, years=(2014, 2015), aia_frames=60_000, hmi_frames=40_000,
                  channels=AIA_CHANNELS, seed=0, zattrs=(("aia", "2015/171A"), ("hmi", "2015/Bz"))) -> Path:
    """Write a headers-only catalog in the contract layout; return its directory."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    partitions = {}
    plan = [("aia", c, aia_frames, 720, 2 * i) for i, c in enumerate(channels)] + [("hmi", "Bz", hmi_frames, 720, 0)]
    plan = [(inst, ch, n, 360 if inst == "aia" else 720, off) for inst, ch, n, _, off in plan]
    for year in years:
        for instrument, channel, frames, cadence, offset in plan:
            table = array_table(frame_times(year, frames, cadence, offset, rng), instrument, rng)
            key = f"{instrument}/year={year}/channel={channel}"
            (directory / key).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, directory / key / "data.parquet")
            partitions[key] = {"instrument": instrument, "year": year, "channel": channel,
                               "array_path": f"{year}/{channel}", "rows": table.num_rows}
            if (instrument, f"{year}/{channel}") in zattrs:
                write_zattrs(directory.parent / "stores" / instrument / str(year) / channel, table)
    manifest = {"schema_version": 1, "tool_version": "bench", "sources": {}, "partitions": partitions}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return directory


# --- the seed notebook's way -----------------------------------------------------------------

def seed_attrs(stores: Path, instrument: str, array_path: str) -> dict:
    """``root[year][channel].attrs`` as the seed reads it: the whole ``.zattrs`` JSON."""
    return json.loads((stores / instrument / array_path / ".zattrs").read_text())


def seed_times(strings: list[str], tai: bool) -> np.ndarray:
    """The seed's time parsing (TAI strings taken as UTC, as every public reader does)."""
    if tai:
        strings = [s[:19].replace(".", "-", 2).replace("_", "T") for s in strings]
    return np.array([s.rstrip("Z") for s in strings], dtype="datetime64[ms]")


def seed_short_exposures(stores: Path, start: str, stop: str) -> np.ndarray:
    attrs = seed_attrs(stores, "aia", "2015/171A")
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


def timed(function, repeat: int = 1):
    """(best seconds over ``repeat`` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench-output", type=Path)
    parser.add_argument("--aia-frames", default=60_000, type=int, help="frames per AIA channel and year")
    parser.add_argument("--hmi-frames", default=40_000, type=int, help="HMI Bz frames per year")
    args = parser.parse_args(argv)

    from sdoml_sql import Catalog

    catalog_dir = args.dir / "catalog"
    if not (catalog_dir / "manifest.json").exists():
        started = time.perf_counter()
        write_catalog(catalog_dir, aia_frames=args.aia_frames, hmi_frames=args.hmi_frames)
        print(f"wrote {catalog_dir} in {time.perf_counter() - started:.1f} s")
    stores = args.dir / "stores"
    catalog = Catalog(catalog_dir)
    total = catalog.query("SELECT count(*) AS n FROM frames").to_pandas()["n"][0]
    print(f"catalog: {total:,} frames; machine: {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}")

    start, stop = "2015-03-01", "2015-03-08"
    sql_a = ("SELECT year, channel, idx, T_OBS, EXPTIME FROM aia WHERE channel = '171A' "
             f"AND EXPTIME < 2 AND T_OBS BETWEEN '{start}' AND '{stop}'")
    seed_a, seed_rows = timed(lambda: seed_short_exposures(stores, start, stop))
    catalog.query(sql_a)  # warm-up: file metadata in the OS cache
    sql_time_a, selection = timed(lambda: catalog.query(sql_a), repeat=5)
    assert sorted(selection.to_pandas()["idx"]) == sorted(seed_rows.tolist())
    report("(a) EXPTIME < 2 AND T_OBS BETWEEN (one week, 171A)", seed_a, sql_time_a, len(selection))

    sql_b = ("SELECT * FROM nearest('hmi', 'Bz', '2015-01-01', '2016-01-01', "
             "INTERVAL 12 minutes, INTERVAL 3 minutes)")
    seed_b, picked = timed(lambda: seed_grid(stores, 2015))
    catalog.query(sql_b)
    sql_time_b, grid = timed(lambda: catalog.query(sql_b), repeat=3)
    found = grid.to_pandas()["idx"].notna().sum()
    report("(b) one year of HMI Bz at 12 min, 3 min tolerance", seed_b, sql_time_b, len(grid),
           f"{found} frames found, seed {sum(p is not None for p in picked)}")


def report(title: str, seed_s: float, sql_s: float, rows: int, extra: str = "") -> None:
    print(f"{title}: seed {seed_s * 1000:,.0f} ms, query() {sql_s * 1000:,.1f} ms warm, "
          f"{seed_s / sql_s:,.0f}x faster; {rows} rows {extra}".rstrip())


if __name__ == "__main__":
    main()
