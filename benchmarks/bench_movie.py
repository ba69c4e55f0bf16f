"""Movie rendering speed: the seed notebook's ``MapSequence(maps, sortby="date").plot()``
animation vs ``animate`` on the same frames, for each output: HTML (``to_jshtml``, what
Jupyter shows), MP4 and GIF.

    .venv/bin/python benchmarks/bench_movie.py [--frames 40] [--repeat 3] [--workdir DIR]

* seed: ``sequence.plot()`` then ``to_jshtml()`` / ``anim.save(FFMpegWriter)`` /
  ``anim.save(PillowWriter)`` (a full figure redraw + ``savefig`` per frame);
* set_data: ``animate``'s figure through matplotlib's own writers (``FuncAnimation.to_jshtml``)
  — the previous version of ``animate``;
* fast: ``animate(...).to_jshtml()`` and ``movies.save`` (static figure drawn once, the
  image mapped to the canvas with matplotlib's own pixel map, frames streamed to the
  encoder).

Frames come from the default sample store (written once into DIR).  Frame reading is
excluded (maps and pixels are loaded first).  Prints the median of ``--repeat`` runs in
frames/s and the ratios to the seed way.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def prepare(workdir: Path) -> Path:
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    catalog = workdir / "catalog"
    if not (catalog / "manifest.json").exists():
        paths = write_sample(workdir / "stores")
        build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), eve=str(paths["eve"]), catalog=catalog,
                      progress=False)
    return catalog


def seed_way(sequence, kind: str, out: Path) -> float:
    """The notebook: ``MapSequence.plot()`` → ``to_jshtml`` / ``save``."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FFMpegWriter, PillowWriter

    from sdoml_sql.fetch.movies import ffmpeg_path

    start = time.perf_counter()
    animation = sequence.plot()
    if kind == "html":
        animation.to_jshtml()
    elif kind == "mp4":
        ffmpeg_path()
        animation.save(str(out / "seed.mp4"), writer=FFMpegWriter(fps=10, codec="libx264",
                                                                   extra_args=["-pix_fmt", "yuv420p"]))
    else:
        animation.save(str(out / "seed.gif"), writer=PillowWriter(fps=10))
    plt.close("all")
    return time.perf_counter() - start


def set_data_way(frames, norms) -> float:
    """``animate``'s figure through ``FuncAnimation.to_jshtml`` (savefig per frame)."""
    from matplotlib.animation import FuncAnimation

    from sdoml_sql.fetch.movies import build_animation

    start = time.perf_counter()
    FuncAnimation.to_jshtml(build_animation(frames, norms))
    return time.perf_counter() - start


def fast_way(frames, norms, kind: str, out: Path) -> float:
    from sdoml_sql.fetch.movies import build_animation, save

    start = time.perf_counter()
    animation = build_animation(frames, norms)
    if kind == "html":
        animation.to_jshtml()
    else:
        save(animation, out / f"fast.{kind}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/movie"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from sdoml_sql.fetch.movies import frame_norms, movie_frames
    from sdoml_sql.query.catalog import Catalog

    catalog = Catalog(prepare(args.workdir))
    selection = catalog.query(f"SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 "
                              f"ORDER BY T_OBS LIMIT {args.frames}")
    out = args.workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequence = selection.maps(sortby="date")
        frames = movie_frames(selection, sortby="date")
        norms = frame_norms(frames, "fixed")
        n = len(frames.pixels)
        print(f"{n} frames of 512×512 at 6×6 in, 100 dpi; median of {args.repeat} runs")
        print(f"{'output':<8}{'seed f/s':>10}{'set_data f/s':>14}{'fast f/s':>10}{'fast/seed':>11}")
        for kind in ("html", "mp4", "gif"):
            seed = statistics.median(seed_way(sequence, kind, out) for _ in range(args.repeat))
            fast = statistics.median(fast_way(frames, norms, kind, out) for _ in range(args.repeat))
            middle = (f"{n / statistics.median(set_data_way(frames, norms) for _ in range(args.repeat)):>14.1f}"
                      if kind == "html" else f"{'':>14}")
            print(f"{kind:<8}{n / seed:>10.1f}{middle}{n / fast:>10.1f}{seed / fast:>10.2f}×", flush=True)


if __name__ == "__main__":
    main()
