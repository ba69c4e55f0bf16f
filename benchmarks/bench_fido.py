"""Fido speed: the seed notebook's way to FITS files vs ``Fido.search`` + ``Fido.fetch``.

    .venv/bin/python benchmarks/bench_fido.py [--frames 1500] [--workdir DIR] [--repeat 3]

Writes (once, kept in DIR) a sample store with real images of AIA 171A in one year (15- or 120-frame
chunks, as bench_fetch.py), builds its catalog, then does one job three ways: the 171A frames
nearest to a 12-minute grid over one day (within 6 minutes), written as one FITS file each.

* ``seed`` — the notebook: ``json.load`` of the array's ``.zattrs``, an ``argmin`` over
  ``T_OBS`` per grid time, ``np.array(da.from_array(array)[i])`` per frame, the header
  ``{k: v[i] for k, v in attrs.items()}``, ``sunpy.map.Map((img, hdr)).save(path)``;
* ``fido`` — ``Fido.search(a.Time, a.Instrument.aia, a.Wavelength(171 Å), a.Sample(12 min),
  a.sdoml.Catalog)`` then ``Fido.fetch(results, path=...)``, timed apart;
* ``sql`` — ``catalog.query("... nearest(...)")`` then ``write_frames(..., format="fits")``
  (the ``sdoml-sql fetch --format fits`` way).

Median of ``--repeat`` interleaved runs (the machine is shared).  Checks that the three ways
write the same frames (pixels) and that ``Fido.fetch`` reads each chunk once.

``--search-catalog DIR`` also times ``Fido.search`` alone on a big catalog (e.g. the
1,137,000-frame one ``bench_query.py`` builds in ``bench-output/catalog``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import warnings
from pathlib import Path

import astropy.units as u
import dask.array as da
import numpy as np
import zarr
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_fetch import prepare, timed
from fetch_helpers import count_chunk_reads


def seed_way(store_root: Path, day: np.datetime64, out: Path) -> list[Path]:
    import sunpy.map

    array = zarr.open_array(str(store_root / "2010" / "171A"), mode="r", zarr_format=2)
    attrs = json.loads((store_root / "2010" / "171A" / ".zattrs").read_text())
    t_obs = np.array([np.datetime64(t.rstrip("Z")) for t in attrs["T_OBS"]])
    grid = day + np.arange(0, 24 * 60, 12).astype("timedelta64[m]")
    lazy = da.from_array(array)
    written = []
    for time_ in grid:
        offsets = np.abs(t_obs - time_)
        i = int(np.argmin(offsets))
        if offsets[i] > np.timedelta64(6, "m"):
            continue
        header = {k: v[i] for k, v in attrs.items() if isinstance(v, list) and len(v) == len(t_obs)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solar_map = sunpy.map.Map((np.array(lazy[i]), header))
            path = out / f"{i:05d}.fits"
            solar_map.save(path, overwrite=True)
        written.append(path)
    return written


def fido_search(catalog_dir: Path, day: np.datetime64):
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    return Fido.search(a.Time(str(day), str(day + np.timedelta64(1, "D"))), a.Instrument.aia,
                       a.Wavelength(171 * u.AA), a.Sample(12 * u.min), a.sdoml.Catalog(catalog_dir))


def fido_fetch(results, out: Path):
    from sunpy.net import Fido

    return Fido.fetch(results, path=out / "{file}", progress=False, overwrite=True)


def sql_way(catalog, day: np.datetime64, out: Path):
    from sdoml_sql.fetch.output import write_frames

    selection = catalog.query(f"SELECT * FROM nearest('aia', '171A', TIMESTAMP '{day}', "
                              f"TIMESTAMP '{day}' + INTERVAL 1 DAY, '12 minutes', '6 minutes') WHERE idx IS NOT NULL")
    return write_frames(selection, out / "frames", format="fits")


def search_speed(catalog_dir: Path, repeat: int) -> None:
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    from sdoml_sql.query.catalog import open_catalog

    first, _ = open_catalog(catalog_dir).sql("SELECT min(T_OBS), max(T_OBS) FROM frame_times").fetchall()[0]
    day = a.Time(first.date() + np.timedelta64(30, "D"), first.date() + np.timedelta64(31, "D"))
    month = a.Time(first.date() + np.timedelta64(30, "D"), first.date() + np.timedelta64(60, "D"))
    cases = {"one day of 171A": (day, a.Instrument.aia, a.Wavelength(171 * u.AA)),
             "one day of 171A @ 12 min": (day, a.Instrument.aia, a.Wavelength(171 * u.AA), a.Sample(12 * u.min)),
             "30 days, 9 AIA channels @ 1 h": (month, a.Instrument.aia, a.Sample(1 * u.h)),
             "one day, EXPTIME > 2.5": (day, a.Instrument.aia, a.sdoml.Keyword("EXPTIME") > 2.5)}
    print(f"Fido.search on {catalog_dir} (best of {repeat} after the first):")
    for name, attrs in cases.items():
        runs = [timed(lambda attrs=attrs: Fido.search(*attrs, a.sdoml.Catalog(catalog_dir))) for _ in range(repeat + 1)]
        later = min(t for t, _ in runs[1:])
        print(f"  {name:<32} {len(runs[0][1][0]):>6} rows  first {runs[0][0]:.2f} s, then {later:.2f} s")


def pixels(paths) -> list[np.ndarray]:
    return [fits.getdata(p) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--chunk-frames", type=int, default=15, help="frames per chunk (the real stores: 15)")
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/fido"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--search-catalog", type=Path)
    args = parser.parse_args()

    import sdoml_sql.fido  # noqa: F401 - registers the client
    from sdoml_sql.query.catalog import open_catalog

    catalog_dir = prepare(args.workdir, args.frames, args.chunk_frames)
    catalog = open_catalog(catalog_dir)
    store_root = Path(catalog.source("aia").root)
    first, last = catalog.sql("SELECT min(T_OBS), max(T_OBS) FROM aia").fetchall()[0]
    day = np.datetime64((first + (last - first) / 2).date(), "D")
    out = args.workdir / "out"
    counters = count_chunk_reads(catalog)  # before any array is opened
    reads: list[str] = []
    times: dict[str, list[float]] = {"seed": [], "fido search": [], "fido fetch": [], "sql": []}
    for _ in range(args.repeat):
        for name in ("seed", "fido", "sql"):
            shutil.rmtree(out / name, ignore_errors=True)
            (out / name).mkdir(parents=True)
        t, seed_files = timed(lambda: seed_way(store_root, day, out / "seed"))
        times["seed"].append(t)
        t, results = timed(lambda: fido_search(catalog_dir, day))
        times["fido search"].append(t)
        counters["aia"].reads.clear()
        t, fido_files = timed(lambda results=results: fido_fetch(results, out / "fido"))
        times["fido fetch"].append(t)
        reads = list(counters["aia"].reads)
        t, sql_files = timed(lambda: sql_way(catalog, day, out / "sql"))
        times["sql"].append(t)
    assert not fido_files.errors and len(fido_files) == len(seed_files) == len(sql_files)
    seed_pixels = pixels(seed_files)
    assert all(np.array_equal(x, y) for x, y in zip(seed_pixels, pixels(sorted(fido_files))))

    median = {name: statistics.median(values) for name, values in times.items()}
    fido_total = median["fido search"] + median["fido fetch"]
    print(f"store: {args.frames} frames of AIA 171A, chunks {zarr.open_array(str(store_root / '2010/171A')).chunks}; "
          f"job: {day} on a 12-minute grid → {len(seed_files)} FITS files; median of {args.repeat} runs")
    for name, value in median.items():
        print(f"  {name:<12} {value:7.2f} s")
    print(f"  seed / fido (search + fetch) = {median['seed'] / fido_total:.1f}×; "
          f"fido / sql way = {fido_total / median['sql']:.2f}×")
    print(f"  Fido.fetch chunk reads: {len(reads)} ({len(set(reads))} distinct); same pixels as the seed: yes")
    if args.search_catalog:
        search_speed(args.search_catalog, args.repeat)


if __name__ == "__main__":
    main()
