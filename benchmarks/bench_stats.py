"""Benchmark: the frame statistics pass against the decode bound and the seed notebook's way,
its peak memory, and ``frame_quality WHERE NOT good`` on the bench_query catalog.

(1) Writes a sample with images (``--channels`` AIA channels x ``--frames`` frames of one
    year, ``--chunk-frames`` 15 (default, the real stores) or 120; cached in ``--dir``) and builds its
    catalog.  Then, each in a fresh Python (peak memory = that process's VmHWM):
    - decode bound: every chunk read and decoded once (the fetch stage's frame reader, each
      thread decoding into a buffer it keeps, as the pass does), on ``--workers`` threads,
      nothing computed;
    - ``compute_frame_stats(full=True)`` on the same threads: every chunk read once and reduced
      to per-frame statistics, written to Parquet (the two alternate ``--pairs`` times; the
      ratio is the median of the pairs' ratios);
    - the seed notebook's way: ``arr[i]`` per frame (each read decodes the frame's whole
      chunk) and numpy's nan-statistics, on ``--seed-frames`` frames (its rate is per frame).
(2) Times ``SELECT … FROM frame_quality WHERE NOT good`` on the bench_query catalog
    (``benchmarks/bench_query.py``'s, built there if missing: 1,137,000 frames), median of
    ``--repeat`` warm runs.

    .venv/bin/python benchmarks/bench_stats.py [--frames 960] [--channels 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_build import run  # noqa: E402  (runs code in a fresh Python, returns its VmHWM)

DECODE_BOUND = """
import concurrent.futures, sys, threading, time
from sdoml_sql.fetch.frames import FrameReader
from sdoml_sql.stores.source import open_store
readers = threading.local()  # one reader per thread, its decode buffer kept between chunks (as the pass does)
source, workers = open_store(sys.argv[1]), int(sys.argv[2])
jobs = []
for year in source.children()[0]:
    for channel in source.children(year)[1]:
        array = source.array(f"{year}/{channel}")
        step = array.chunks[0]
        jobs += [(array, lo, min(lo + step, array.shape[0])) for lo in range(0, array.shape[0], step)]
started = time.perf_counter()
def read(job):
    array, lo, hi = job
    FrameReader.of_thread(readers).read(array, "", lo, hi, tuple(range(hi - lo)), copy=False)
    return array.nbytes // array.shape[0] * array.chunks[0]  # a chunk is decoded whole
with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # as many chunks in flight as the pass
    decoded = sum(pool.map(read, jobs))
print(time.perf_counter() - started, decoded, peak_kb())
"""

STATS = """
import sys, time
import zarr  # imported before the clock, as the decode bound's open_store does
from sdoml_sql.quality.stats import compute_frame_stats
started = time.perf_counter()
report = compute_frame_stats(sys.argv[1], full=True, workers=int(sys.argv[2]), progress=False)
print(time.perf_counter() - started, report.frames, report.decoded_bytes, peak_kb())
"""

SEED_WAY = """
import sys, time, numpy as np, zarr
root = zarr.open_group(sys.argv[1], mode="r", zarr_format=2)
year = sorted(root.group_keys())[0]
channel = sorted(root[year].array_keys())[0]
array, n = root[year][channel], int(sys.argv[2])
attrs = root[year][channel].attrs.asdict()
yy, xx = np.mgrid[:512, :512]
started = time.perf_counter()
for i in range(n):
    img = array[i]  # one frame costs its whole chunk
    radius = attrs["RSUN_OBS"][i] / attrs["CDELT1"][i]
    disk = (xx - attrs["CRPIX1"][i] + 1) ** 2 + (yy - attrs["CRPIX2"][i] + 1) ** 2 <= radius**2
    row = (np.isnan(img).sum(), (img == 0).sum(), np.nanmin(img), np.nanmax(img), np.nanmean(img), np.nanstd(img),
           *np.nanpercentile(img, [1, 50, 99]), np.nanmean(img[disk]), np.nanmean(img[~disk]))
print(time.perf_counter() - started, n, peak_kb())
"""


def prepare(directory: Path, channels: int, frames: int, chunk_frames: int = 15) -> tuple[Path, Path]:
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import AIA_CHANNELS, write_sample

    store, catalog = directory / "sdomlv2_small.zarr", directory / "catalog"
    stamp = directory / f"params-{channels}x{frames}x{chunk_frames}"
    if not stamp.exists():
        shutil.rmtree(directory, ignore_errors=True)
        write_sample(directory, aia_frames=frames, years=(2010,), channels=AIA_CHANNELS[:channels],
                     hmi_frames=1, hmi_years=(2010,), eve=False, progress=True, chunk_frames=chunk_frames)
        build_catalog(aia=str(store), catalog=catalog, progress=False)
        stamp.touch()
    return store, catalog


def quality_query(repeat: int) -> None:
    import bench_query
    from sdoml_sql import Catalog

    directory = bench_query.prepare(Path("bench-output"), 56_000, 43_000, (2014, 2015))
    catalog = Catalog(directory)
    sql = "SELECT instrument, year, channel, idx, T_OBS, flags FROM frame_quality WHERE NOT good"
    frames = catalog.query("SELECT count(*) AS n FROM frame_times").to_pandas().n[0]
    median, runs, result = bench_query.timed(lambda: catalog.query(sql), repeat)
    spread = ", ".join(f"{r * 1000:.0f}" for r in sorted(runs))
    print(f"(2) frame_quality WHERE NOT good on {frames:,} frames (bench_query catalog, no stats): "
          f"{median * 1000:.0f} ms median warm (runs: {spread} ms; target <= 100 ms); {len(result):,} rows")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("bench-output/stats"))
    parser.add_argument("--frames", type=int, default=960, help="frames per AIA channel")
    parser.add_argument("--chunk-frames", type=int, default=15, help="frames per chunk (the real stores: 15)")
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="threads, for the pass and the decode bound")
    parser.add_argument("--seed-frames", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=5, help="alternated decode-bound / stats runs")
    parser.add_argument("--repeat", type=int, default=9, help="warm runs of the frame_quality query")
    parser.add_argument("--skip-quality", action="store_true", help="skip (2), the bench_query catalog")
    args = parser.parse_args(argv)

    store, catalog = prepare(args.dir, args.channels, args.frames, args.chunk_frames)
    workers = str(args.workers)
    run(STATS, str(catalog), workers)  # warm-up: page cache, numba's compiled-kernel cache
    pairs = []  # alternate the two ways, so that a change in the machine's load hits both
    for _ in range(args.pairs):
        (bound_s, decoded), bound_peak = run(DECODE_BOUND, str(store), workers)
        (stats_s, frames, stats_decoded), stats_peak = run(STATS, str(catalog), workers)
        assert int(decoded) == int(stats_decoded), (decoded, stats_decoded)
        pairs.append((float(bound_s), float(stats_s)))
        print(f"  pair: decode bound {float(bound_s):.2f} s, stats {float(stats_s):.2f} s, "
              f"ratio {float(bound_s) / float(stats_s):.2f}", flush=True)
    bound_s = statistics.median(p[0] for p in pairs)
    stats_s = statistics.median(p[1] for p in pairs)
    ratio = statistics.median(p[0] / p[1] for p in pairs)
    (seed_s, seed_n), seed_peak = run(SEED_WAY, str(store), str(args.seed_frames))
    seed_s, frames = float(seed_s), int(frames)
    chunk_mb = args.chunk_frames * 512 * 512 * 4 / 1e6
    print(f"(1) {frames:,} frames, {int(decoded) / 1e9:.2f} GB decoded, {args.workers} threads "
          f"(medians of {args.pairs} alternated runs):")
    print(f"  decode bound (read + decode only): {bound_s:6.2f} s  {frames / bound_s:6.0f} frames/s  "
          f"peak {bound_peak:5.0f} MB")
    print(f"  compute_frame_stats:               {stats_s:6.2f} s  {frames / stats_s:6.0f} frames/s  "
          f"peak {stats_peak:5.0f} MB ({stats_peak / chunk_mb:.1f} decoded chunks of {chunk_mb:.0f} MB)")
    print(f"  seed way (arr[i] + numpy), {int(seed_n)} frames: {seed_s:6.2f} s  {int(seed_n) / seed_s:6.1f} frames/s  "
          f"peak {seed_peak:5.0f} MB")
    print(f"  throughput / decode bound = {ratio:.2f}x  (target >= 0.8x); "
          f"vs the seed way {frames / stats_s / (int(seed_n) / seed_s):.0f}x")
    if not args.skip_quality:
        quality_query(args.repeat)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
