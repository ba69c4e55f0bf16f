"""Movies of selected frames: one matplotlib figure with WCS axes, updated in place.

The seed notebook animates with ``MapSequence.plot()``, which redraws a map per frame.
:func:`animate` builds the axes once (from the first frame's WCS) and per frame only swaps
the image data (``set_data``), the colormap/normalisation when the channel changes, and the
title text.  The result is a ``matplotlib.animation.FuncAnimation``: show it in Jupyter with
``HTML(anim.to_jshtml())`` or write it with :func:`save` (MP4 through the ffmpeg shipped by
``imageio-ffmpeg``, GIF through Pillow, or HTML).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.maps import load_frames, make_map, map_header

SCALINGS = ("fixed", "frame")
DEFAULT_PERCENTILES = (1.0, 99.9)
SAMPLE_PIXELS = 200_000
FORMATS = (".mp4", ".gif", ".html")


@dataclass
class Frames:
    """Pixels plus what the movie shows about each frame."""

    pixels: np.ndarray
    instruments: list[str]
    channels: list[str]
    times: list[pd.Timestamp | None]
    first_map: Any
    cmaps: dict[str, Any]


def animate(selection, downsample: int = 1, method: str = "stride", scaling: str = "fixed",
            percentiles: tuple[float, float] = DEFAULT_PERCENTILES, vmin: float | None = None,
            vmax: float | None = None, fps: float = 10, figsize: tuple[float, float] = (6, 6),
            dpi: int = 100, sortby: str | None = None, missing: str = "raise"):
    """A matplotlib animation of the selected frames (WCS axes, channel colormap, time title).

    ``scaling="fixed"`` uses one colour range per channel for the whole movie (``vmin`` /
    ``vmax`` if given, else ``percentiles`` of that channel's pixels); ``"frame"`` rescales
    each frame to its own percentiles.  HMI ranges are symmetric about 0 G.  ``sortby="date"``
    orders frames by time (default: selection row order).  ``missing="drop"`` skips rows
    without a frame.  The figure is closed (not shown twice in Jupyter); the animation can
    still be shown or saved.
    """
    if scaling not in SCALINGS:
        raise FetchError(f"scaling={scaling!r}: choose one of {', '.join(SCALINGS)}")
    frames = movie_frames(selection, downsample, method, missing, sortby)
    if not len(frames.pixels):
        raise FetchError("nothing to animate: the selection has no frames")
    norms = frame_norms(frames, scaling, percentiles, vmin, vmax)
    return build_animation(frames, norms, fps, figsize, dpi)


def movie_frames(selection, downsample: int = 1, method: str = "stride", missing: str = "raise",
                 sortby: str | None = None) -> Frames:
    """Read the frames and what the movie needs about them (channel, time, colormap, WCS)."""
    if missing not in ("raise", "drop"):
        raise FetchError(f"missing={missing!r}: a movie needs a frame per row; use 'raise' or 'drop'")
    pixels, table, raw, rows, keys = load_frames(selection, downsample, method, missing)
    times = [_frame_time(row) for row in rows]
    order = np.arange(len(table))
    if sortby == "date":
        order = np.argsort(np.array([t.value if t is not None else np.iinfo(np.int64).max for t in times]),
                           kind="stable")
    elif sortby is not None:
        raise FetchError(f"sortby={sortby!r}: use None (row order) or 'date'")
    instruments = [str(table["instrument"].iloc[i]) for i in order]
    channels = [str(table["channel"].iloc[i]) for i in order]
    cmaps, first_map = {}, None
    for position, i in enumerate(order):
        if channels[position] in cmaps:
            continue
        solar_map = make_map(pixels[i], map_header(raw[i], rows[i], keys[i], downsample, method), instruments[position])
        cmaps[channels[position]] = solar_map.plot_settings["cmap"]
        first_map = first_map or solar_map
    return Frames(pixels[order] if len(order) else pixels, instruments, channels,
                  [times[i] for i in order], first_map, cmaps)


def _frame_time(row: dict[str, Any]) -> pd.Timestamp | None:
    for key in ("T_OBS", "DATE-OBS"):
        value = row.get(key)
        if value is not None and not pd.isna(value):
            return pd.Timestamp(value)
    return None


def frame_norms(frames: Frames, scaling: str, percentiles=DEFAULT_PERCENTILES, vmin=None, vmax=None) -> list:
    """One ``ImageNormalize`` per frame: shared per channel (``fixed``) or per frame."""
    norms: list = []
    shared: dict[str, Any] = {}
    for i, (instrument, channel) in enumerate(zip(frames.instruments, frames.channels)):
        if scaling == "frame":
            norms.append(channel_norm(frames.pixels[i:i + 1], instrument, percentiles, vmin, vmax))
            continue
        if channel not in shared:
            members = [j for j, c in enumerate(frames.channels) if c == channel]
            shared[channel] = channel_norm(frames.pixels[members], instrument, percentiles, vmin, vmax)
        norms.append(shared[channel])
    return norms


def channel_norm(pixels: np.ndarray, instrument: str, percentiles=DEFAULT_PERCENTILES, vmin=None, vmax=None):
    """The normalisation of a channel: asinh stretch for AIA, linear symmetric for HMI."""
    from astropy.visualization import AsinhStretch, ImageNormalize

    sample = _pixel_sample(pixels)
    if instrument == "hmi":
        limit = vmax if vmax is not None else _percentile(np.abs(sample), percentiles[1], 1.0)
        return ImageNormalize(vmin=-limit if vmin is None else vmin, vmax=limit)
    low = vmin if vmin is not None else _percentile(sample, percentiles[0], 0.0)
    high = vmax if vmax is not None else _percentile(sample, percentiles[1], low + 1.0)
    return ImageNormalize(vmin=low, vmax=max(high, low + 1e-6), stretch=AsinhStretch(0.01), clip=True)


def _pixel_sample(pixels: np.ndarray) -> np.ndarray:
    step = max(1, int(np.sqrt(pixels.size / SAMPLE_PIXELS)))
    sample = pixels[:, ::step, ::step]
    return sample[np.isfinite(sample)]


def _percentile(values: np.ndarray, q: float, default: float) -> float:
    return float(np.percentile(values, q)) if values.size else default


def frame_title(frames: Frames, i: int) -> str:
    """``AIA 171A  2010-08-27 15:00:08 UTC`` for frame i."""
    when = frames.times[i]
    stamp = when.strftime("%Y-%m-%d %H:%M:%S UTC") if when is not None else "time unknown"
    return f"{frames.instruments[i].upper()} {frames.channels[i]}  {stamp}"


def build_animation(frames: Frames, norms: list, fps: float = 10, figsize=(6, 6), dpi: int = 100):
    """The ``FuncAnimation``: axes and image built once, then ``set_data`` per frame."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    figure = plt.figure(figsize=figsize, dpi=dpi)
    axes = figure.add_subplot(projection=frames.first_map.wcs)
    image = axes.imshow(frames.pixels[0], origin="lower", cmap=frames.cmaps[frames.channels[0]],
                        norm=norms[0], interpolation="nearest")
    axes.coords[0].set_axislabel("Helioprojective longitude (Solar-X)")
    axes.coords[1].set_axislabel("Helioprojective latitude (Solar-Y)")
    title = axes.set_title(frame_title(frames, 0))
    figure.tight_layout()
    state = {"channel": frames.channels[0], "norm": norms[0]}

    def update(i: int):
        image.set_data(frames.pixels[i])
        if frames.channels[i] != state["channel"]:
            image.set_cmap(frames.cmaps[frames.channels[i]])
            state["channel"] = frames.channels[i]
        if norms[i] is not state["norm"]:
            image.set_norm(norms[i])
            state["norm"] = norms[i]
        title.set_text(frame_title(frames, i))
        return image, title

    animation = FuncAnimation(figure, update, frames=len(frames.pixels), interval=1000 / fps, blit=False)
    animation.sdoml_fps = fps
    animation.sdoml_frames = len(frames.pixels)
    plt.close(figure)
    return animation


def ffmpeg_path() -> str:
    """Point matplotlib at the ffmpeg binary shipped by ``imageio-ffmpeg``; return its path."""
    import imageio_ffmpeg
    import matplotlib

    path = imageio_ffmpeg.get_ffmpeg_exe()
    matplotlib.rcParams["animation.ffmpeg_path"] = path
    return path


def save(animation, path: str | Path, fps: float | None = None, progress: bool = False, dpi: int | None = None) -> Path:
    """Write an animation as ``.mp4`` (H.264), ``.gif`` or ``.html`` (``to_jshtml``).

    ``progress=True`` shows a tqdm bar on stderr.
    """
    from matplotlib.animation import FFMpegWriter, PillowWriter

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FetchError(f"cannot write a movie as {path.name}: use {', '.join(FORMATS)}")
    fps = fps or getattr(animation, "sdoml_fps", 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = getattr(animation, "sdoml_frames", None)
    with _progress(total, progress, f"rendering {path.name}") as callback:
        if suffix == ".html":
            path.write_text(animation.to_jshtml(fps=fps), encoding="utf-8")
            callback(total - 1 if total else 0, total)
            return path
        if suffix == ".mp4":
            ffmpeg_path()
            writer = FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])
        else:
            writer = PillowWriter(fps=fps)
        animation.save(str(path), writer=writer, dpi=dpi, progress_callback=callback)
    return path


class _progress:
    """A context giving a matplotlib ``progress_callback`` that drives a tqdm bar."""

    def __init__(self, total: int | None, enabled: bool, label: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="frame")

    def __enter__(self):
        def callback(i: int, n: int | None) -> None:
            if self.bar is not None:
                self.bar.update(i + 1 - self.bar.n)

        return callback

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


def save_frame(animation, i: int, path: str | Path, dpi: int | None = None) -> Path:
    """Draw frame ``i`` of an animation and save the figure as an image (PNG …)."""
    animation._init_draw()
    animation._draw_frame(i)
    path = Path(path)
    animation._fig.savefig(path, dpi=dpi)
    return path
