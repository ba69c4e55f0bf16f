"""Fetch speed: the seed notebook's per-frame loop vs ``Selection.fetch()`` vs the raw bound.

    .venv/bin/python benchmarks/bench_fetch.py [--frames 3000] [--workdir DIR]

Writes (once, kept in DIR) a sample store with real images: FRAMES frames of AIA 171A in
one year (``--chunk-frames``: 15 as the real stores, or 120; zstd/bitshuffle like SDOML v2),
builds its catalog, then times
two selections:

* day: one day on a 12-minute grid (``nearest``; grid times without a frame dropped);
* scattered: 50 frames spread over the year.

Methods: ``loop`` — ``np.array(da.from_array(zarr_array)[i])`` per frame (the notebook);
``fetch`` — ``selection.fetch().compute()``; ``raw`` — each needed chunk read once with
zarr directly, sequentially (``array[lo:hi]`` over the frames needed from that chunk: the
same chunks decoded, nothing else).  Median of ``--repeat`` interleaved runs for fetch and
raw (warm OS cache; the machine is shared, so single runs vary a lot), one run of the slow
loop.  Chunk reads of ``fetch`` are
counted with a store wrapper and compared with the number of distinct chunks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fetch_helpers import CountingStore  # the tests' chunk-read counter


def prepare(workdir: Path, frames: int, chunk_frames: int = 15):
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    stores, catalog = workdir / "stores", workdir / "catalog"
    if not (catalog / "manifest.json").exists():
        print(f"writing {frames} frames of 171A with images into {stores} (once) …", flush=True)
        paths = write_sample(stores, aia_frames={"171A": frames}, channels=("171A",), years=(2010,),
                             chunk_frames=chunk_frames, hmi_frames=1, hmi_years=(2010,), eve=False, progress=True)
        build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), catalog=catalog, progress=False)
    return catalog


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def seed_loop(array, indices):
    lazy = da.from_array(array)
    return np.stack([np.array(lazy[i]) for i in indices])


def raw_bound(array, indices):
    """Each needed chunk read once with zarr: the range of frames needed from it."""
    size = array.chunks[0]
    ranges: dict[int, list[int]] = {}
    for i in sorted(int(i) for i in indices):
        ranges.setdefault(i // size, []).append(i)
    return {c: np.asarray(array[rows[0]:rows[-1] + 1]) for c, rows in ranges.items()}


def measure(name: str, selection, array, repeat: int) -> dict:
    from sdoml_sql.fetch import chunk_keys

    table = selection.locators()
    table = table[table["idx"].notna()]
    indices = table["idx"].astype(int).tolist()
    t_loop, looped = timed(lambda: seed_loop(array, indices))  # slow and steady: one run
    fetch_times, raw_times, fetched = [], [], None
    for _ in range(repeat):  # interleaved, so both see the same machine load
        t, fetched = timed(lambda: selection.fetch(missing="drop").compute())
        fetch_times.append(t)
        raw_times.append(timed(lambda: raw_bound(array, indices))[0])
    t_fetch, t_raw = statistics.median(fetch_times), statistics.median(raw_times)
    paired = statistics.median(f / r for f, r in zip(fetch_times, raw_times))
    assert np.array_equal(looped, fetched), "fetch differs from the notebook loop"
    source = selection.catalog.source("aia")
    counter = CountingStore(source.zarr_store)
    source.__dict__["zarr_store"] = counter
    graph_tasks = len(selection.fetch(missing="drop").__dask_graph__())
    selection.fetch(missing="drop").compute()
    del source.__dict__["zarr_store"]
    expected = chunk_keys(selection)
    return {"case": name, "frames": len(indices), "chunks": len(expected), "reads": len(counter.reads),
            "distinct": len(set(counter.reads)), "tasks": graph_tasks,
            "loop": t_loop, "fetch": t_fetch, "raw": t_raw, "paired": paired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--chunk-frames", type=int, default=15, help="frames per chunk (the real stores: 15)")
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/fetch"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from sdoml_sql.query.catalog import Catalog

    catalog = Catalog(prepare(args.workdir, args.frames, args.chunk_frames))
    array = zarr.open_array(str(catalog.source("aia").root) + "/2010/171A", mode="r", zarr_format=2)
    first, last = catalog.sql("SELECT min(T_OBS), max(T_OBS) FROM aia").fetchall()[0]
    day = (first + (last - first) / 2).date()
    day_sql = (f"SELECT * FROM nearest('aia', '171A', TIMESTAMP '{day}', TIMESTAMP '{day}' + INTERVAL 1 DAY, "
               f"'12 minutes', '6 minutes')")
    scattered_sql = ("SELECT year, channel, idx FROM (SELECT * FROM aia ORDER BY hash(idx) LIMIT 50) "
                     "ORDER BY T_OBS")
    print(f"store: {array.shape[0]} frames of 512×512 float32, chunks {array.chunks}, "
          f"{first:%Y-%m-%d} … {last:%Y-%m-%d}; dask scheduler: {dask.config.get('scheduler', 'threads')}")
    rows = [measure(f"day {day} @12 min", catalog.query(day_sql), array, args.repeat),
            measure("50 scattered over the year", catalog.query(scattered_sql), array, args.repeat)]
    header = f"{'case':<28}{'frames':>7}{'chunks':>7}{'reads':>6}{'tasks':>6}{'loop s':>9}{'fetch s':>9}{'raw s':>8}" \
             f"{'loop/fetch':>11}{'fetch/raw':>10}"
    print(header)
    for r in rows:
        print(f"{r['case']:<28}{r['frames']:>7}{r['chunks']:>7}{r['reads']:>6}{r['tasks']:>6}{r['loop']:>9.2f}"
              f"{r['fetch']:>9.2f}{r['raw']:>8.2f}{r['loop'] / r['fetch']:>10.1f}×{r['fetch'] / r['raw']:>9.2f}×")
        ok_reads = r["reads"] == r["distinct"] == r["chunks"]
        print(f"    chunk reads {'==' if ok_reads else '!='} distinct chunks ({r['reads']} vs {r['chunks']}); "
              f"median of per-run fetch/raw ratios {r['paired']:.2f}×")


if __name__ == "__main__":
    main()
