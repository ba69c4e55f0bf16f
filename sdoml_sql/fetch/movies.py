"""Movies of selected frames: one matplotlib figure with WCS axes, rendered by blitting.

The seed notebook animates with ``MapSequence.plot()``, which redraws a whole map figure
(WCS ticks and labels included) and encodes it per frame.  :func:`animate` builds the
figure once (WCS axes from the first frame, the channel's colormap, a colour bar, the time
in the title) as a :class:`MovieFigure`:

* :meth:`MovieFigure.update` puts frame ``i`` on the artists (``set_data``, colormap and
  normalisation when the channel changes, title text) — what a full ``savefig`` shows;
* :meth:`MovieFigure.render` gives the same picture without redrawing the figure: the
  static part is drawn once and kept as a background, the frame's colours are written
  through the pixel map matplotlib itself uses for the image, the axes' overlay (frame,
  inward ticks) is composited back, and only the title (and the colour bar, if it changes
  along the movie) is drawn.  Tests check it against a full ``savefig`` pixel by pixel.

:func:`animate` returns a :class:`MovieAnimation` (a ``FuncAnimation``): show it in
Jupyter with ``HTML(anim.to_jshtml())`` (same player as matplotlib's, frames rendered
fast) or write it with :func:`save`, which streams rendered frames to the encoder: MP4
(H.264) piped to the ffmpeg shipped by ``imageio-ffmpeg``, GIF with Pillow (one adaptive
palette), or HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.maps import load_frames, make_map, map_header
from sdoml_sql.fetch.movie_encoders import (
    ENCODE_WORKERS,
    FORMATS,
    GIF_PALETTE_SAMPLES,
    encoded,
    ffmpeg_path,
    jshtml,
    movie_suffix,
    save,
    save_frame,
    write_gif,
    write_mp4,
)
from sdoml_sql.fetch.movie_figure import (
    DEFAULT_PERCENTILES,
    MAX_MAPPED_PIXELS,
    SAMPLE_PIXELS,
    SCALINGS,
    Frames,
    MovieAnimation,
    MovieFigure,
    build_animation,
    channel_norm,
    frame_norms,
    frame_title,
)


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


def movie(selection, output: str | Path, downsample: int = 1, method: str = "stride", missing: str = "raise",
          fps: float = 10, scaling: str = "fixed", sortby: str | None = None, progress: bool = True,
          **animate_options) -> Path:
    """What ``sdoml-sql movie`` does: :func:`animate` the selection and :func:`save` it to
    ``output`` (``.mp4``, ``.gif`` or ``.html``, checked before anything is read).  Returns
    the path written."""
    movie_suffix(output)
    animation = animate(selection, downsample=downsample, method=method, missing=missing, fps=fps,
                        scaling=scaling, sortby=sortby, **animate_options)
    return save(animation, output, progress=progress)


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
    cmaps, units, first_map = {}, {}, None
    for position, i in enumerate(order):
        if channels[position] in cmaps:
            continue
        solar_map = make_map(pixels[i], map_header(raw[i], rows[i], keys[i], downsample, method), instruments[position],
                             channels[position])
        cmaps[channels[position]] = solar_map.plot_settings["cmap"]
        units[channels[position]] = solar_map.unit.to_string() if solar_map.unit is not None else ""
        first_map = first_map or solar_map
    return Frames(pixels[order] if len(order) else pixels, instruments, channels,
                  [times[i] for i in order], first_map, cmaps, units)


def _frame_time(row: dict[str, Any]) -> pd.Timestamp | None:
    for key in ("T_OBS", "DATE-OBS"):
        value = row.get(key)
        if value is not None and not pd.isna(value):
            return pd.Timestamp(value)
    return None


__all__ = [
    "DEFAULT_PERCENTILES", "ENCODE_WORKERS", "FORMATS", "Frames", "GIF_PALETTE_SAMPLES", "MAX_MAPPED_PIXELS",
    "MovieAnimation", "MovieFigure", "SAMPLE_PIXELS", "SCALINGS", "animate", "build_animation", "channel_norm",
    "encoded", "ffmpeg_path", "frame_norms", "frame_title", "jshtml", "movie", "movie_frames", "movie_suffix",
    "save", "save_frame", "write_gif", "write_mp4",
]
