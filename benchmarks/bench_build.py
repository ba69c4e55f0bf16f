"""Catalog build speed and memory on a large headers-only sample.

    python benchmarks/bench_build.py [--frames 80000] [--channels 9] [--workdir bench-output]

Writes a one-year AIA sample (image chunks left unwritten), then measures, each in a fresh
process so peak memory (max RSS) is its own:
  * the bound: plain ``json.loads`` of every ``.zattrs`` file, one after another;
  * the seed notebook's way to the same information: open each array with zarr and read
    every key of ``.attrs`` into numpy arrays;
  * ``sdoml_sql.build_catalog`` into a fresh catalog.
Prints frames/s, the ratio of build time to the json.loads bound (target ≤ 1.5×) and peak
memory against the largest ``.zattrs`` (target ≤ 4×).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# The child's own high-water mark: VmHWM restarts at exec, unlike ru_maxrss, which keeps the
# forked parent's peak.
PEAK = """
def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

JSON_BOUND = """
import json, sys, time, pathlib
started = time.perf_counter()
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/*/.zattrs")):
    attrs = json.loads(path.read_bytes())
    del attrs
print(time.perf_counter() - started, peak_kb())
"""

SEED_WAY = """
import sys, time, numpy as np, zarr
started = time.perf_counter()
root = zarr.open_group(sys.argv[1], mode="r", zarr_format=2)
for year in root.group_keys():
    for channel in root[year].array_keys():
        attrs = root[year][channel].attrs.asdict()
        columns = {k: np.array(v) for k, v in attrs.items()}
        del attrs, columns
print(time.perf_counter() - started, peak_kb())
"""

BUILD = """
import sys, time
from sdoml_sql.catalog_builder.build import build_catalog
started = time.perf_counter()
report = build_catalog(aia=sys.argv[1], catalog=sys.argv[2], progress=True, full=True)
print(time.perf_counter() - started, report.rows, peak_kb())
"""



def run(code: str, *args: str) -> tuple[list[str], float]:
    """Run ``code`` in a fresh Python; return its result words and its own peak RSS (MB)."""
    result = subprocess.run([sys.executable, "-c", PEAK + code, *args], stdout=subprocess.PIPE, text=True, check=True)
    *words, peak_kb = result.stdout.strip().splitlines()[-1].split()
    return words, int(peak_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=80_000, help="frames per channel")
    parser.add_argument("--channels", type=int, default=9)
    parser.add_argument("--workdir", type=Path, default=Path("bench-output/build"))
    args = parser.parse_args()

    from sdoml_sql.stores.sample import AIA_CHANNELS, write_sample

    store = args.workdir / "sdomlv2_small.zarr"
    if not store.exists():
        print(f"writing a headers-only sample: {args.channels} channels × {args.frames:,} frames …", flush=True)
        write_sample(args.workdir, aia_frames=args.frames, years=(2010,), channels=AIA_CHANNELS[: args.channels],
                     images=False, progress=True)
    zattrs = sorted(store.glob("*/*/.zattrs"))
    largest = max(p.stat().st_size for p in zattrs) / 1e6
    total = sum(p.stat().st_size for p in zattrs) / 1e6
    frames = sum(json.loads((p.parent / ".zarray").read_text())["shape"][0] for p in zattrs)
    print(f"source: {len(zattrs)} arrays, {frames:,} frames, .zattrs {total:,.0f} MB in all, largest {largest:,.0f} MB")

    (bound,), bound_peak = run(JSON_BOUND, str(store))
    catalog = args.workdir / "catalog"
    shutil.rmtree(catalog, ignore_errors=True)
    (build_s, rows), build_peak = run(BUILD, str(store), str(catalog))
    (seed,), seed_peak = run(SEED_WAY, str(store))
    bound, build_s, seed = float(bound), float(build_s), float(seed)

    print(f"json.loads of every .zattrs (bound): {bound:7.2f} s   peak {bound_peak:6.0f} MB")
    print(f"seed notebook (zarr .attrs → numpy): {seed:7.2f} s   peak {seed_peak:6.0f} MB")
    print(f"sdoml-sql build_catalog:             {build_s:7.2f} s   peak {build_peak:6.0f} MB"
          f"   {int(rows) / build_s:,.0f} frames/s")
    print(f"build / json.loads bound = {build_s / bound:.2f}×  (target ≤ 1.5×)")
    print(f"build / seed notebook    = {build_s / seed:.2f}×")
    print(f"build peak / largest .zattrs = {build_peak / largest:.1f}×  (target ≤ 4×)")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
