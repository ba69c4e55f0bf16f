"""The movie figure: WCS axes built once, colour scaling per channel, frames rendered by blitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.animation import FuncAnimation

from sdoml_sql.fetch.movie_encoders import jshtml

SCALINGS = ("fixed", "frame")
DEFAULT_PERCENTILES = (1.0, 99.9)
SAMPLE_PIXELS = 200_000


@dataclass
class Frames:
    """Pixels plus what the movie shows about each frame."""

    pixels: np.ndarray
    instruments: list[str]
    channels: list[str]
    times: list[pd.Timestamp | None]
    first_map: Any
    cmaps: dict[str, Any]
    units: dict[str, str] = field(default_factory=dict)


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
    """The animation: figure, axes, image and colour bar built once, then ``set_data`` per
    frame (a :class:`MovieAnimation`, a ``FuncAnimation`` whose frames can also be rendered
    fast by blitting: :meth:`MovieFigure.render`)."""
    import matplotlib.pyplot as plt

    movie = MovieFigure(frames, norms, figsize, dpi)
    animation = MovieAnimation(movie, fps)
    plt.close(movie.figure)
    return animation


class MovieFigure:
    """The movie's figure and the artists that change per frame.

    :meth:`update` sets frame ``i`` on the artists (what a full ``savefig`` then shows);
    :meth:`render` gives the same picture as an RGBA array without redrawing the figure:
    the static part (WCS axes, ticks, labels, colour bar) is drawn once and kept as a
    background; per frame only the image and the title (and the colour bar, when the
    colormap or range changes along the movie) are drawn onto it, then the axes' overlay
    (frame, inward ticks: everything drawn above the image) is composited back from two
    renders of the static part made with a black and a white axes background.
    """

    def __init__(self, frames: Frames, norms: list, figsize=(6, 6), dpi: int = 100):
        import matplotlib.pyplot as plt

        self.frames, self.norms = frames, norms
        figure = plt.figure(figsize=figsize, dpi=dpi)
        axes = figure.add_subplot(projection=frames.first_map.wcs)
        self.image = axes.imshow(frames.pixels[0], origin="lower", cmap=frames.cmaps[frames.channels[0]],
                                 norm=norms[0], interpolation="nearest")
        axes.coords[0].set_axislabel("Helioprojective longitude (Solar-X)")
        axes.coords[1].set_axislabel("Helioprojective latitude (Solar-Y)")
        self.title = axes.set_title(frame_title(frames, 0))
        self.colorbar = figure.colorbar(self.image, ax=axes, label=frames.units.get(frames.channels[0], ""),
                                        fraction=0.046, pad=0.04)
        _colorbar_ticks(self.colorbar, norms[0])
        figure.tight_layout()
        self.figure, self.axes = figure, axes
        self.state = {"channel": frames.channels[0], "norm": norms[0]}
        styles = {(c, id(n)) for c, n in zip(frames.channels, norms)}
        self.colorbar_changes = len(styles) > 1
        self._cache: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.frames.pixels)

    def update(self, i: int):
        """Put frame ``i`` on the artists; return the artists changed."""
        frames = self.frames
        self.image.set_data(frames.pixels[i])
        if frames.channels[i] != self.state["channel"]:
            self.image.set_cmap(frames.cmaps[frames.channels[i]])
            self.colorbar.set_label(frames.units.get(frames.channels[i], ""))
            self.state["channel"] = frames.channels[i]
        if self.norms[i] is not self.state["norm"]:
            self.image.set_norm(self.norms[i])
            _colorbar_ticks(self.colorbar, self.norms[i])
            self.state["norm"] = self.norms[i]
        self.title.set_text(frame_title(frames, i))
        return self.image, self.title

    # --- fast rendering ------------------------------------------------------------------

    def _canvas(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if not isinstance(self.figure.canvas, FigureCanvasAgg):
            FigureCanvasAgg(self.figure)
        return self.figure.canvas

    def _prepare(self) -> dict[str, Any]:
        """Draw the static figure and learn, from matplotlib itself, where the image lands.

        * ``background``: the figure without the moving artists (image, title, and the
          colour bar when it changes along the movie);
        * the image's pixel map: an index-coded RGBA image drawn through the same artist
          (nearest neighbour, so each screen pixel of the image shows one frame pixel) gives,
          for every screen pixel it covers, the frame pixel shown there;
        * the axes overlay (frame, inward ticks) over the image: renders of the static part
          with black and with white backgrounds give its premultiplied colour and its
          transparency per pixel.
        """
        key = (self.figure.dpi, tuple(float(s) for s in self.figure.get_size_inches()))
        if self._cache is not None and self._cache["key"] == key:
            return self._cache
        canvas = self._canvas()
        if self.frames.pixels[0].size > MAX_MAPPED_PIXELS:  # too big to index-code: full redraws
            self._cache = {"key": key, "canvas": canvas, "background": None}
            return self._cache
        moving = [self.image, self.title] + ([self.colorbar.ax] if self.colorbar_changes else [])
        patches = [self.figure.patch, self.axes.patch]
        faces = [(p.get_facecolor(), p.get_edgecolor()) for p in patches]
        data = self.image.get_array()
        try:
            for artist in moving:
                artist.set_animated(True)
            renders = []
            for colour in ((0, 0, 0, 1), (1, 1, 1, 1)):
                for p in patches:  # the axes patch's edge is under the image too
                    p.set_facecolor(colour)
                    p.set_edgecolor(colour)
                canvas.draw()
                renders.append(np.asarray(canvas.buffer_rgba())[..., :3].astype(np.int16))
            for p, (face, edge) in zip(patches, faces):
                p.set_facecolor(face)
                p.set_edgecolor(edge)
            canvas.draw()
            background = canvas.copy_from_bbox(self.figure.bbox)
            source = _pixel_map(self.image, canvas, background, data.shape)
        finally:
            for p, (face, edge) in zip(patches, faces):
                p.set_facecolor(face)
                p.set_edgecolor(edge)
            for artist in moving:
                artist.set_animated(False)
            self.image.set_data(data)
        black, white = renders
        footprint = np.flatnonzero(source >= 0)
        black = black.reshape(-1, 3)[footprint]
        white = white.reshape(-1, 3)[footprint]
        covered = np.flatnonzero((black != 0).any(axis=-1) | (white != 255).any(axis=-1))
        face = np.round(np.asarray(faces[1][0][:3]) * 255).astype(np.uint32)
        self._cache = {"key": key, "canvas": canvas, "background": background, "footprint": footprint,
                       "source": source[footprint], "covered": covered, "face": face,
                       "over": black[covered].astype(np.uint32),
                       "through": (white - black)[covered].clip(0, 255).astype(np.uint32)}
        return self._cache

    def render(self, i: int) -> np.ndarray:
        """Frame ``i`` as an ``(H, W, 4)`` uint8 RGBA array, the picture a full ``savefig``
        of the figure shows (a view of the canvas, valid until the next call)."""
        cache = self._prepare()
        canvas = cache["canvas"]
        if cache["background"] is None:
            self.update(i)
            canvas.draw()
            return np.asarray(canvas.buffer_rgba())
        canvas.restore_region(cache["background"])
        self.update(i)
        colours = self.image.to_rgba(self.frames.pixels[i], bytes=True).reshape(-1, 4)[cache["source"]]
        alpha = colours[:, 3]
        if (alpha != 255).any():  # NaN pixels (colormap "bad" colour) and the like: over the axes face
            a = alpha[:, None].astype(np.uint32)
            colours[:, :3] = (colours[:, :3] * a + cache["face"] * (255 - a) + 127) // 255
            colours[:, 3] = 255
        covered = cache["covered"]
        colours[covered, :3] = cache["over"] + (cache["through"] * colours[covered, :3] + 127) // 255
        pixels = np.asarray(canvas.buffer_rgba())
        pixels.reshape(-1, 4)[cache["footprint"]] = colours
        renderer = canvas.get_renderer()
        self.title.draw(renderer)
        if self.colorbar_changes:
            self.colorbar.ax.draw(renderer)
        return pixels

    def rgba_frames(self, progress=None):
        """Yield every frame as RGBA (views reused between frames: copy to keep)."""
        for i in range(len(self)):
            yield self.render(i)
            if progress is not None:
                progress(i)


def _colorbar_ticks(colorbar, norm, n: int = 6) -> None:
    """Ticks evenly spaced in the stretched (displayed) scale for non-linear (asinh) norms,
    rounded to two significant digits; matplotlib's linear-in-data ticks crowd at the top."""
    from astropy.visualization import LinearStretch

    stretch = getattr(norm, "stretch", None)
    if stretch is None or isinstance(stretch, LinearStretch) or not hasattr(norm, "inverse"):
        return
    values = np.asarray(norm.inverse(np.linspace(0, 1, n)), dtype=float).ravel()
    digits = np.floor(np.log10(np.maximum(np.abs(values), 1e-30)))
    scale = 10.0 ** (digits - 1)
    rounded = np.unique(np.round(values / scale) * scale)
    colorbar.set_ticks(rounded[(rounded >= norm.vmin) & (rounded <= norm.vmax)])


MAX_MAPPED_PIXELS = 2**21  # 7 bits in each of R, G, B


def _pixel_map(image, canvas, background, shape: tuple[int, int]) -> np.ndarray:
    """For every canvas pixel, the flat index of the image pixel matplotlib draws there
    (-1 where the image does not cover the pixel).  Two index-coded images (7 bits per
    colour channel, stored as ``2 * code + 1`` so that matplotlib's float round trip cannot
    change a code) are drawn through ``image``; a pixel counts only if both decode to the
    same index.  Frames of at most :data:`MAX_MAPPED_PIXELS` pixels."""
    height, width = shape
    codes = np.arange(height * width, dtype=np.int64)
    decoded = []
    for flip in (False, True):
        value = codes[::-1] if flip else codes
        coded = np.empty((height * width, 4), dtype=np.uint8)
        for channel, shift in enumerate((14, 7, 0)):
            coded[:, channel] = ((value >> shift) & 127) * 2 + 1
        coded[:, 3] = 255
        canvas.restore_region(background)
        image.set_data(coded.reshape(height, width, 4))
        image.draw(canvas.get_renderer())
        drawn = np.asarray(canvas.buffer_rgba())[..., :3].reshape(-1, 3).astype(np.int64) // 2
        number = (drawn[:, 0] << 14) | (drawn[:, 1] << 7) | drawn[:, 2]
        decoded.append(height * width - 1 - number if flip else number)
    canvas.restore_region(background)
    agree = (decoded[0] == decoded[1]) & (decoded[0] < height * width)
    return np.where(agree, decoded[0], -1)


class MovieAnimation(FuncAnimation):
    """A ``FuncAnimation`` of a :class:`MovieFigure` whose ``to_jshtml`` renders by blitting."""

    def __init__(self, movie: MovieFigure, fps: float = 10):
        super().__init__(movie.figure, movie.update, frames=len(movie), interval=1000 / fps, blit=False)
        self.sdoml_movie = movie
        self.sdoml_fps = fps
        self.sdoml_frames = len(movie)
        # Frames are rendered by the MovieFigure, not matplotlib's draw loop: without this,
        # an animation whose save failed warns "deleted without rendering" under the error line.
        self._draw_was_started = True

    def to_jshtml(self, fps=None, embed_frames=True, default_mode=None):
        """The HTML/JavaScript player of ``Animation.to_jshtml`` (same template), frames
        rendered by :meth:`MovieFigure.render` instead of a ``savefig`` per frame."""
        if not embed_frames:
            return super().to_jshtml(fps=fps, embed_frames=embed_frames, default_mode=default_mode)
        if fps is None:
            fps = 1000 / self._interval
        if default_mode is None:
            default_mode = "loop" if getattr(self, "_repeat", False) else "once"
        if not hasattr(self, "_html_representation"):
            try:
                self._html_representation = jshtml(self.sdoml_movie, fps, default_mode)
            except ImportError:  # matplotlib moved its private player template: the slow way
                return super().to_jshtml(fps=fps, embed_frames=embed_frames, default_mode=default_mode)
        return self._html_representation
