"""Frame-addressable reads: the frame reader's partial Blosc path against today's whole-chunk reads.

    .venv/bin/python benchmarks/bench_frames.py [--workdir DIR] [--frames 480] [--hourly-frames 1440]
        [--repeat 7] [--skip-s3] [--only abcdeh]

Writes (once per chunking, kept in DIR) sample stores of the 9 AIA channels, FRAMES frames
each (6-minute cadence, about 2 days for 480), with 15-frame chunks (the real stores) and with
120-frame chunks (the sample's old layout), builds their catalogs, then for each chunking:

* (a) one frame: the frame reader alone (partial) against a whole-chunk read (zarr's
  ``array[lo:lo+1]``, what ``read_chunk_frames`` did) and against the reader's own whole path;
  ``Selection.fetch().compute()`` and ``maps()`` of that frame against the same calls with the
  read task swapped for today's (``whole``); fixed costs (query, graph, headers) apart (the
  header records warm — the frame's row group cached, as in the repeats — and cold);
* (b) an hourly cadence (the first frame of every hour, 1 frame in 10) of all 9 channels:
  ``fetch().compute()`` against today's, pixels compared;
* (c) training: one epoch of ``ds.loader(shuffle="uniform", num_workers=2)`` (thread workers)
  on 9-channel aligned samples (12-minute grid) against the chunk-decode bound (each distinct
  chunk read and decoded once, two processes started before the clock), against the same
  shuffle in worker processes and against the block-shuffle loader, alternated in rounds;
  (h) on an hourly grid, uniform against the block shuffle (and the bound), on a store of its own
  (``--hourly-frames``, 6 days: about 160 samples) so that an epoch is long enough to time;
* (d) bytes the S3 emulator's proxy passes for (b) (one channel), partial against whole;
* (e) the uniform loader against the per-sample way of the peers (``zarr_array[idx]`` per
  channel per sample, random order, two processes).

Each ratio is measured in one run, the two sides alternated, medians of ``--repeat`` (best
for the slow loaders: one epoch each, after one untimed epoch of each loader).  Prints
``uptime``: the machine is shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

AIA = ["94A", "131A", "171A", "193A", "211A", "304A", "335A", "1600A", "1700A"]
MB = 1e6


def prepare(workdir: Path, frames: int, chunk_frames: int, suffix: str = "") -> Path:
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    stores, catalog = workdir / f"stores-{chunk_frames}{suffix}", workdir / f"catalog-{chunk_frames}{suffix}"
    if not (catalog / "manifest.json").exists():
        print(f"writing 9 AIA x {frames} frames, {chunk_frames}-frame chunks, into {stores} (once) …", flush=True)
        paths = write_sample(stores, aia_frames=frames, years=(2010,), hmi_years=(2010,), hmi_frames=1,
                             eve=False, progress=True, chunk_frames=chunk_frames)
        build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), catalog=catalog, progress=False)
    return catalog


def today_read_chunk_frames(array, label, lo, hi, offsets, factor, method):
    """The read task before the frame reader: zarr decodes the whole chunk (``array[lo:hi]``)."""
    from sdoml_sql.fetch.frames import downsample_frames

    slab = np.asarray(array[lo:hi])
    if len(offsets) != hi - lo:
        slab = slab[list(offsets)]
    return np.ascontiguousarray(downsample_frames(slab, factor, method), dtype=np.float32)


def today_read_frames(grid, layout, factor, method, shape):
    """How fetch().compute() and maps() read before this work: dask runs the graph (a fresh array
    per block, then one more for their concatenation)."""
    import dask.array as da

    from sdoml_sql.fetch.graph import dask_array

    return da.Array.compute(dask_array(grid, layout, factor, method, shape[-2:]))


class Today:
    """Within the block: every read task reads as before the frame reader (whole chunks), and
    ``compute()`` and maps run the dask graph, as before."""

    def __enter__(self):
        import dask.array as da

        import sdoml_sql.fetch.graph as graph
        import sdoml_sql.fetch.stack as stack

        self.saved = graph.read_chunk_frames, graph.FrameStack.compute, stack.read_frames
        graph.read_chunk_frames = today_read_chunk_frames
        graph.FrameStack.compute = da.Array.compute
        stack.read_frames = today_read_frames

    def __exit__(self, *exc):
        import sdoml_sql.fetch.graph as graph
        import sdoml_sql.fetch.stack as stack

        graph.read_chunk_frames, graph.FrameStack.compute, stack.read_frames = self.saved


class Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def alternated(new, old, repeat: int) -> tuple[float, float]:
    """Medians of ``repeat`` timings of ``new()`` and of ``old()`` (inside :class:`Today`), alternated."""
    times_new, times_old = [], []
    for _ in range(repeat):
        for function, context, times in ((new, Nothing(), times_new), (old, Today(), times_old)):
            with context:
                start = time.perf_counter()
                function()
                times.append(time.perf_counter() - start)
    return statistics.median(times_new), statistics.median(times_old)


def timed_median(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- (a) ------------------------------------------------------------------------------------

def one_frame(catalog, repeat: int) -> None:
    from sdoml_sql.fetch.frames import FrameReader, read_chunk_frames

    array = catalog.source("aia").array("2010/171A")
    t = int(array.chunks[0])
    frame = t + t // 2  # a frame in the middle of the second chunk
    reader = FrameReader()
    partial = timed_median(lambda: read_chunk_frames(array, "", frame, frame + 1, (0,), 1, "stride"), repeat)
    whole_zarr = timed_median(lambda: np.asarray(array[frame:frame + 1]), repeat)
    lo = frame // t * t
    whole_kept = timed_median(lambda: reader.read(array, "", lo, lo + t, tuple(range(t)), copy=False), repeat)
    decode_only = decode_bound_one_frame(array, frame, repeat)
    print(f"  (a) one frame, the reader alone: partial {partial * 1e3:.2f} ms; whole chunk through zarr "
          f"{whole_zarr * 1e3:.1f} ms ({whole_zarr / partial:.1f}x); whole chunk into a kept buffer "
          f"{whole_kept * 1e3:.1f} ms ({whole_kept / partial:.1f}x); decode-only bound of its blocks "
          f"{decode_only * 1e3:.2f} ms (partial = {partial / decode_only:.2f}x the bound)")

    sql = f"SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 AND idx = {frame}"
    fixed = fixed_costs(catalog, sql, repeat)
    selection = catalog.query(sql)
    new, old = alternated(lambda: selection.fetch().compute(), lambda: selection.fetch().compute(), repeat)
    print(f"  (a) fetch().compute() of it: {new * 1e3:.1f} ms vs today's {old * 1e3:.1f} ms ({old / new:.1f}x); "
          f"fixed costs apart: query {fixed['query']:.1f} ms, locators {fixed['locators']:.1f} ms (once per "
          f"selection), frame grid and chunk layout {fixed['layout']:.1f} ms, dask graph {fixed['graph']:.1f} ms")
    new, old = alternated(lambda: selection.maps(), lambda: selection.maps(), repeat)
    print(f"  (a) maps() of it: {new * 1e3:.1f} ms vs today's {old * 1e3:.1f} ms ({old / new:.1f}x); beyond the "
          f"reader's {partial * 1e3:.2f} ms: {(new - partial) * 1e3:.1f} ms, of which its header records "
          f"{fixed['headers']:.1f} ms ({fixed['headers_cold']:.1f} ms cold: row group not cached), the frame grid "
          f"and chunk layout {fixed['layout']:.1f} ms, the SunPy map {fixed['map']:.1f} ms")
    new, old = alternated(lambda: catalog.query(sql).maps(), lambda: catalog.query(sql).maps(), repeat)
    print(f"  (a) a fresh query's maps(), query included: {new * 1e3:.1f} ms vs today's {old * 1e3:.1f} ms "
          f"({old / new:.1f}x)")


def fixed_costs(catalog, sql: str, repeat: int) -> dict[str, float]:
    """The one-frame fetch's and map's costs beside the read, in ms (medians)."""
    from sdoml_sql.fetch.graph import dask_array
    from sdoml_sql.fetch.headers import clear_row_group_cache, header_records
    from sdoml_sql.fetch.maps import load_frames, make_map, map_header
    from sdoml_sql.fetch.stack import prepare_stack

    selection = catalog.query(sql)
    fresh = iter([catalog.query(sql) for _ in range(repeat)])
    costs = {"query": timed_median(lambda: catalog.query(sql), repeat),
             "locators": timed_median(lambda: next(fresh).locators(), repeat),
             "layout": timed_median(lambda: prepare_stack(selection, 1, "stride", "raise"), repeat)}
    grid, layout = prepare_stack(selection, 1, "stride", "raise")
    costs["graph"] = timed_median(lambda: dask_array(grid, layout, 1, "stride", layout.shape), repeat)
    clear_row_group_cache()
    costs["headers_cold"] = timed_median(lambda: header_records(catalog, grid.table), 1)
    costs["headers"] = timed_median(lambda: header_records(catalog, grid.table), repeat)
    pixels, table, raw, rows, keys = load_frames(selection)
    costs["map"] = timed_median(lambda: make_map(pixels[0], map_header(raw[0], rows[0], keys[0], 1, "stride"),
                                                 "aia", "171A"), repeat)
    return {name: value * 1e3 for name, value in costs.items()}


def decode_bound_one_frame(array, frame: int, repeat: int) -> float:
    """``numcodecs.blosc.decompress`` of the frame's blocks alone, re-packed beforehand."""
    import numcodecs.blosc

    from sdoml_sql.fetch import blosc
    from sdoml_sql.fetch.chunkbytes import chunk_key

    t = int(array.chunks[0])
    key = chunk_key(array, frame // t)
    raw = open(os.path.join(str(array.store_path.store.root), array.store_path.path, key), "rb").read()
    table = blosc.chunk_table(raw[:blosc.table_end(raw)], int(np.prod(array.chunks)) * 4)
    pack = blosc.BlockPack.plan(table, table.frame_blocks([frame % t], table.header.nbytes // t))
    packed = memoryview(bytearray(pack.cbytes))
    for view, (a, b) in zip(pack.views(packed), pack.ranges):
        view[:] = raw[a:b]
    pack.seal(table, packed)
    out = np.empty(pack.nbytes, np.uint8)
    return timed_median(lambda: numcodecs.blosc.decompress(packed, out), repeat)


# --- (b) ------------------------------------------------------------------------------------

HOURLY = ("SELECT year, channel, idx FROM aia WHERE year = 2010 AND minute(T_OBS) < 6 "
          "ORDER BY channel, T_OBS")


def hourly(catalog, repeat: int) -> None:
    selection = catalog.query(HOURLY)
    n = len(selection)
    per_channel = selection.to_pandas().groupby("channel").size()
    plan = selection.plan()
    new_pixels = selection.fetch().compute()
    with Today():
        old_pixels = selection.fetch().compute()
    assert np.array_equal(new_pixels, old_pixels)
    new, old = alternated(lambda: selection.fetch().compute(), lambda: selection.fetch().compute(), repeat)
    print(f"  (b) hourly cadence, 9 channels, {n} frames (~{per_channel.mean():.0f} per channel): "
          f"fetch().compute() {new:.2f} s vs today's {old:.2f} s ({old / new:.1f}x), pixels identical; "
          f"plan: {plan.whole_chunks} chunks whole, {plan.partial_frames} frames partially")


# --- (c) and (e) ------------------------------------------------------------------------------

_ARRAYS: dict = {}


def _array(root: str, path: str):
    import zarr

    if (root, path) not in _ARRAYS:
        _ARRAYS[root, path] = zarr.open_array(f"{root}/{path}", mode="r", zarr_format=2)
    return _ARRAYS[root, path]


def _peer_sample(frames) -> int:
    return int(np.stack([np.asarray(_array(root, path)[idx]) for root, path, idx in frames]).nbytes)


def _read_chunk(job) -> int:
    root, path, lo, hi = job
    return int(np.asarray(_array(root, path)[lo:hi]).nbytes)


def in_two_processes(function, jobs) -> float:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(abs, range(2))
        start = time.perf_counter()
        pool.map(function, jobs, chunksize=1)
        return time.perf_counter() - start


def sample_frames(ds, i: int):
    return [(ds.opener.source(ds.arrays[a].instrument).root, ds.arrays[a].path, int(idx))
            for a, idx in zip(ds.array_ids[i], ds.idx[i])]


def distinct_chunks(ds):
    jobs = set()
    for i in range(len(ds)):
        for a, idx in zip(ds.array_ids[i], ds.idx[i]):
            t = int(ds.chunk_frames[a])
            lo = int(idx) // t * t
            jobs.add((ds.opener.source(ds.arrays[a].instrument).root, ds.arrays[a].path, lo,
                      min(lo + t, ds.zarrays()[a].shape[0])))
    return sorted(jobs)


def epoch_rate(ds, shuffle, batch_size: int, workers: str = "auto") -> float:
    loader = ds.loader(batch_size, shuffle=shuffle, seed=0, epoch=0, num_workers=2, workers=workers)
    start = time.perf_counter()
    served = sum(len(batch["row"]) for batch in loader)
    assert served == len(ds), (served, len(ds))
    return served / (time.perf_counter() - start)


LOADERS = ("uniform", "processes", "block")


def rounds(ways: dict, repeat: int) -> dict[str, list[float]]:
    """``repeat`` rounds of every way (samples/s), the ways alternated within each round, after
    one untimed epoch of each loader (opening the stores, first-touching its batch arrays: a
    training run pays that once, not every epoch)."""
    for name in LOADERS:
        if name in ways:
            ways[name]()
    rates = {name: [] for name in ways}
    for _ in range(repeat):
        for name, way in ways.items():
            rates[name].append(way())
    return rates


def median_ratio(rates: dict, a: str, b: str) -> float:
    """The median over rounds of ``a / b`` measured in the same round."""
    return statistics.median(x / y for x, y in zip(rates[a], rates[b]))


def spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):.1f} ({min(rates):.1f}–{max(rates):.1f})"


def aligned_dataset(catalog, grid: str):
    """The 9 AIA channels aligned on a ``grid`` over the whole store (6-minute tolerance)."""
    start, stop = catalog.query("SELECT min(T_OBS)::DATE, max(T_OBS)::DATE + 1 FROM aia").to_pandas().iloc[0]
    channels = ", ".join(f"'{c}'" for c in AIA)
    return catalog.query(f"SELECT * FROM aligned([{channels}], '{start}', '{stop}', INTERVAL {grid}, "
                         "INTERVAL 6 minutes)").dataset()


def training(catalog, batch_size: int, peer_samples: int, repeat: int = 3) -> None:
    from sdoml_sql.datasets.shuffle import batch_time_spread

    ds = aligned_dataset(catalog, "12 minutes")
    n = len(ds)
    jobs = distinct_chunks(ds)
    order = np.random.default_rng(0).permutation(n)[:peer_samples]
    peer_jobs = [sample_frames(ds, int(i)) for i in order]
    rates = rounds({"uniform": lambda: epoch_rate(ds, "uniform", batch_size),
                    "bound": lambda: n / in_two_processes(_read_chunk, jobs),
                    "peers": lambda: len(peer_jobs) / in_two_processes(_peer_sample, peer_jobs),
                    "processes": lambda: epoch_rate(ds, "uniform", batch_size, "processes"),
                    "block": lambda: epoch_rate(ds, True, batch_size)}, repeat)
    spread_b = np.mean([batch_time_spread(ds.times, s.samples, batch_size) for s in ds.plan(num_workers=2).schedules])
    spread_u = np.mean([batch_time_spread(ds.times, s.samples, batch_size)
                        for s in ds.plan(shuffle="uniform", num_workers=2).schedules])
    print(f"  (c) {n} aligned 9-channel samples (12-minute grid), one epoch, 2 workers, {repeat} rounds, samples/s "
          f"median (range): uniform (threads) {spread(rates['uniform'])}, uniform in worker processes "
          f"{spread(rates['processes'])}, block shuffle {spread(rates['block'])}, chunk-decode bound "
          f"{spread(rates['bound'])}; median of the rounds' ratios: uniform = "
          f"{median_ratio(rates, 'uniform', 'bound'):.2f}x the bound, "
          f"{median_ratio(rates, 'uniform', 'block'):.2f}x blocks; batch spread {spread_u:.1f} h uniform "
          f"vs {spread_b:.1f} h blocks")
    print(f"  (e) the peers' per-sample zarr reads, 2 processes: {spread(rates['peers'])} samples/s; uniform loader "
          f"{median_ratio(rates, 'uniform', 'peers'):.1f}x")


def hourly_training(catalog, batch_size: int, repeat: int = 3) -> None:
    """(c) on an hourly grid (1 frame in 10 of the 6-minute store): uniform against the block
    shuffle, and the chunk-decode bound of the chunks the block shuffle decodes."""
    ds = aligned_dataset(catalog, "1 hour")
    n, jobs = len(ds), distinct_chunks(ds)
    rates = rounds({"uniform": lambda: epoch_rate(ds, "uniform", batch_size),
                    "block": lambda: epoch_rate(ds, True, batch_size),
                    "bound": lambda: n / in_two_processes(_read_chunk, jobs)}, repeat)
    days = (ds.times.max() - ds.times.min()) / np.timedelta64(1, "D")
    print(f"  (c) hourly grid, {n} aligned 9-channel samples over {days:.1f} days ({len(jobs)} distinct chunks), "
          f"one epoch, 2 workers, {repeat} rounds, samples/s median (range): uniform (threads) "
          f"{spread(rates['uniform'])}, block shuffle {spread(rates['block'])}, chunk-decode bound "
          f"{spread(rates['bound'])}; median of the rounds' ratios: uniform = "
          f"{median_ratio(rates, 'uniform', 'block'):.1f}x blocks, {median_ratio(rates, 'uniform', 'bound'):.1f}x "
          "the bound")


# --- (d) ------------------------------------------------------------------------------------

def s3_bytes(catalog_dir: Path, stores: Path) -> None:
    from emulators import FaultProxy, start_s3
    from sdoml_sql.fetch.frames import read_chunk_frames
    from sdoml_sql.stores.source import open_store

    store = stores / "sdomlv2_small.zarr"
    # a bucket per chunking: moto keeps its buckets for the whole process
    emulator = start_s3({"sdomlv2_small.zarr": store_subset(store, "171A")}, bucket=f"bench-frames-{stores.name}")
    proxy = FaultProxy(emulator.endpoint)
    os.environ["SDOML_S3_ENDPOINT"] = proxy.endpoint
    try:
        array = open_store(emulator.url("sdomlv2_small.zarr")).array("2010/171A")
        from sdoml_sql import Catalog

        frames = Catalog(catalog_dir).query(
            "SELECT idx FROM aia WHERE year = 2010 AND channel = '171A' AND minute(T_OBS) < 6 ORDER BY idx"
        ).to_pandas()["idx"].to_numpy()
        t = int(array.chunks[0])
        sent = {}
        for name, context in (("partial", Nothing()), ("whole", None)):
            proxy.clear()
            for chunk in np.unique(frames // t):
                wanted = frames[frames // t == chunk]
                lo, hi = int(wanted[0]), int(wanted[-1]) + 1
                offsets = tuple(int(w) - lo for w in wanted)
                if context is None:
                    today_read_chunk_frames(array, "", lo, hi, offsets, 1, "stride")
                else:
                    read_chunk_frames(array, "", lo, hi, offsets, 1, "stride")
            sent[name] = proxy.bytes_sent
        print(f"  (d) S3 emulator, hourly 171A ({len(frames)} frames): partial reads {sent['partial'] / MB:.2f} MB "
              f"vs whole chunks {sent['whole'] / MB:.2f} MB ({sent['partial'] / sent['whole']:.3f}x)")
    finally:
        proxy.stop()
        emulator.stop()
        os.environ.pop("SDOML_S3_ENDPOINT", None)


def store_subset(store: Path, channel: str) -> Path:
    """A copy of the store holding one channel (the emulator uploads every file it is given)."""
    import shutil

    subset = Path(tempfile.mkdtemp(prefix="bench-frames-s3-")) / "sdomlv2_small.zarr"
    subset.mkdir()
    for name in (".zgroup", ".zattrs", ".zmetadata"):
        if (store / name).exists():
            shutil.copy(store / name, subset / name)
    (subset / "2010").mkdir()
    shutil.copy(store / "2010" / ".zgroup", subset / "2010" / ".zgroup")
    source = store / "2010" / channel
    (subset / "2010" / channel).mkdir()
    for file in source.iterdir():
        if file.name != ".zattrs":
            shutil.copy(file, subset / "2010" / channel / file.name)
    return subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sdoml-bench-frames")
    parser.add_argument("--frames", type=int, default=480, help="AIA frames per channel")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--peer-samples", type=int, default=64, help="samples timed for (e)")
    parser.add_argument("--chunkings", default="15,120")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--hourly-frames", type=int, default=1440,
                        help="AIA frames per channel of the store of (c) hourly (1440: 6 days, ~160 samples)")
    parser.add_argument("--only", default="abcdeh", help="which of the targets to run (letters; h: (c) hourly)")
    args = parser.parse_args()

    from sdoml_sql import Catalog

    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for chunk_frames in (int(c) for c in args.chunkings.split(",")):
        catalog_dir = prepare(args.workdir, args.frames, chunk_frames)
        catalog = Catalog(catalog_dir)
        print(f"\n{chunk_frames}-frame chunks:", flush=True)
        if "a" in args.only:
            one_frame(catalog, args.repeat)
        if "b" in args.only:
            hourly(catalog, max(3, args.repeat // 2))
        if "c" in args.only or "e" in args.only:
            training(catalog, args.batch_size, args.peer_samples, max(1, args.repeat // 2))
        if "h" in args.only:
            hourly_catalog = Catalog(prepare(args.workdir, args.hourly_frames, chunk_frames, f"-{args.hourly_frames}"))
            hourly_training(hourly_catalog, args.batch_size, max(1, args.repeat // 2))
        if "d" in args.only and not args.skip_s3:
            s3_bytes(catalog_dir, args.workdir / f"stores-{chunk_frames}")
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
