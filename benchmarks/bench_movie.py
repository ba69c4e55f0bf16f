"""Movie rendering speed: ``animate`` (axes built once, ``set_data`` per frame) vs the seed
notebook's ``MapSequence(maps, sortby="date").plot()`` animation, both through
``to_jshtml`` (what Jupyter shows) on the same frames.

    .venv/bin/python benchmarks/bench_movie.py [--frames 40] [--workdir DIR]

Frames come from the default sample store (written once into DIR).  Prints frames/s of
each and the ratio.  Frame reading is excluded from both timings (maps and pixels are
loaded first).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def prepare(workdir: Path) -> Path:
    from sdoml_sql.build import build_catalog
    from sdoml_sql.sample import write_sample

    catalog = workdir / "catalog"
    if not (catalog / "manifest.json").exists():
        paths = write_sample(workdir / "stores")
        build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), eve=str(paths["eve"]), catalog=catalog,
                      progress=False)
    return catalog


def seed_way(sequence) -> float:
    """The notebook: ``MapSequence.plot()`` → ``to_jshtml``."""
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    animation = sequence.plot()
    animation.to_jshtml()
    plt.close("all")
    return time.perf_counter() - start


def our_way(frames, norms) -> float:
    from sdoml_sql.movies import build_animation

    start = time.perf_counter()
    animation = build_animation(frames, norms)
    animation.to_jshtml()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/movie"))
    args = parser.parse_args()

    from sdoml_sql.catalog import Catalog
    from sdoml_sql.movies import frame_norms, movie_frames

    catalog = Catalog(prepare(args.workdir))
    selection = catalog.query(f"SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 "
                              f"ORDER BY T_OBS LIMIT {args.frames}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequence = selection.maps(sortby="date")
        frames = movie_frames(selection, sortby="date")
        norms = frame_norms(frames, "fixed")
        n = len(frames.pixels)
        seed_s = seed_way(sequence)
        ours_s = our_way(frames, norms)
    print(f"{n} frames of 512×512 to_jshtml at 6×6 in, 100 dpi")
    print(f"seed MapSequence.plot(): {seed_s:6.2f} s  {n / seed_s:6.1f} frames/s")
    print(f"animate (set_data):      {ours_s:6.2f} s  {n / ours_s:6.1f} frames/s")
    print(f"ratio: {seed_s / ours_s:.2f}× faster")


if __name__ == "__main__":
    main()
