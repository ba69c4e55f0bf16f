"""The main job end to end on generated sample stores: ``python -m sdoml_sql.demo OUTDIR``.

1. write sample AIA, HMI and EVE stores shaped like SDOML v2 (``sample.write_sample``);
2. build the Parquet catalog of every per-frame header (``build.build_catalog``);
3. query the short 171 Å exposures of one day (EXPTIME < 2 s: the automatic exposure
   control shortens exposures during a flare), then resample that day at 12 minutes with
   the ``nearest`` macro;
4. plan and fetch the resampled frames as a dask array (grid times without a frame dropped);
5. save a PNG of the map of the first short exposure, an MP4 movie of the day (GIF if ffmpeg
   is unusable) and an EVE line plot;
6. print where everything is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

CHANNEL = "171A"
SHORT_EXPOSURE_S = 2.0
CADENCE = "12 minutes"
TOLERANCE = "6 minutes"
EVE_LINES = ["Fe XX_2", "He II", "Fe IX"]


def step(message: str) -> float:
    """Print a numbered progress line; return the start time."""
    print(f"» {message}", flush=True)
    return time.perf_counter()


def done(start: float, detail: str = "") -> None:
    print(f"  done in {time.perf_counter() - start:.1f} s{': ' + detail if detail else ''}", flush=True)


def short_exposures_sql(day: str) -> str:
    """The 171 Å frames of one day exposed for less than 2 s."""
    return f"""
SELECT year, channel, idx, T_OBS, EXPTIME FROM aia
WHERE channel = '{CHANNEL}' AND EXPTIME < {SHORT_EXPOSURE_S}
  AND T_OBS >= TIMESTAMP '{day}' AND T_OBS < TIMESTAMP '{day}' + INTERVAL 1 DAY
ORDER BY T_OBS"""


def resampled_sql(day: str) -> str:
    """One day of 171 Å on a 12-minute grid: the nearest frame within 6 minutes."""
    return f"""
SELECT n.*, a.EXPTIME
FROM nearest('aia', '{CHANNEL}', TIMESTAMP '{day}', TIMESTAMP '{day}' + INTERVAL 1 DAY, '{CADENCE}', '{TOLERANCE}') n
LEFT JOIN aia a USING (year, channel, idx)
ORDER BY n.row"""


def show_sql(sql: str) -> None:
    print("\n".join("    " + line for line in sql.strip().splitlines()))


def run(outdir: str | Path) -> dict[str, Path]:
    """Run the demo into ``outdir``; return the paths of its outputs."""
    from dask.diagnostics import ProgressBar

    from sdoml_sql.fetch import plan
    from sdoml_sql.fetch.eve import plot_eve
    from sdoml_sql.fetch.maps import plot_map
    from sdoml_sql.fetch.movies import animate, save
    from sdoml_sql.query.catalog import Catalog
    from sdoml_sql.stores.sample import write_sample
    from sdoml_sql.workflows import build_catalog

    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Path] = {}

    start = step(f"writing sample stores into {outdir / 'stores'}")
    stores = write_sample(outdir / "stores", progress=True)
    done(start, ", ".join(p.name for p in stores.values()))

    start = step(f"building the catalog in {outdir / 'catalog'}")
    report = build_catalog(aia=str(stores["aia"]), hmi=str(stores["hmi"]), eve=str(stores["eve"]),
                           catalog=outdir / "catalog", progress=True)
    done(start, report.summary())
    outputs["catalog"] = outdir / "catalog"

    catalog = Catalog(outdir / "catalog")
    day = str(catalog.sql(  # the first day with short exposures, else the first day
        f"SELECT coalesce(min(T_OBS) FILTER (WHERE EXPTIME < {SHORT_EXPOSURE_S}), min(T_OBS))::DATE "
        f"FROM aia WHERE channel = '{CHANNEL}'").fetchall()[0][0])
    start = step(f"query: short {CHANNEL} exposures (EXPTIME < {SHORT_EXPOSURE_S} s) on {day}")
    show_sql(short_exposures_sql(day))
    short = catalog.query(short_exposures_sql(day))
    print(short.to_pandas().to_string(index=False))
    done(start, f"{len(short)} short exposures")

    start = step(f"query: {day} resampled every {CADENCE} (nearest frame within {TOLERANCE})")
    show_sql(resampled_sql(day))
    selection = catalog.query(resampled_sql(day))
    misses = int(selection.locators()["idx"].isna().sum())
    done(start, f"{len(selection)} grid times, {misses} without a frame within {TOLERANCE}")

    start = step("plan and fetch (downsample 2 → 256×256; grid times without a frame dropped)")
    print(f"  plan: {plan(selection, downsample=2, missing='drop')}")
    with ProgressBar(minimum=0.5):
        cube = selection.fetch(downsample=2, missing="drop").compute()
    done(start, f"array {cube.shape} {cube.dtype}, mean {cube.mean():.1f} DN/s")

    start = step("saving a PNG of the map of the first short exposure")
    outputs["map"] = outdir / "map.png"
    plot_map(short if len(short) else selection, 0, outputs["map"])
    done(start, str(outputs["map"]))

    start = step("rendering the movie")
    animation = animate(selection, downsample=2, fps=8, missing="drop")
    try:
        outputs["movie"] = save(animation, outdir / "movie.mp4", progress=True)
    except Exception as error:  # fall back to GIF when ffmpeg cannot run here
        print(f"  MP4 failed ({type(error).__name__}: {error}); writing a GIF instead")
        outputs["movie"] = save(animation, outdir / "movie.gif", progress=True)
    done(start, str(outputs["movie"]))

    start = step(f"plotting EVE lines {', '.join(EVE_LINES)}")
    eve = catalog.query(f"SELECT time, {', '.join(chr(34) + n + chr(34) for n in EVE_LINES)} FROM eve ORDER BY time")
    outputs["eve"] = outdir / "eve.png"
    plot_eve(eve, output=outputs["eve"])
    done(start, f"{len(eve)} samples → {outputs['eve']}")

    print("\noutputs:")
    for name, path in outputs.items():
        print(f"  {name:<8} {path}")
    return outputs


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m sdoml_sql.demo [OUTDIR]`` (default ``demo-output``)."""
    import argparse

    import matplotlib

    parser = argparse.ArgumentParser(prog="python -m sdoml_sql.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", default="demo-output", help="where to write (default: demo-output)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    matplotlib.use("Agg")
    run(args.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
