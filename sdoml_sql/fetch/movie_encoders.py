"""Movie files: frames encoded as MP4 (ffmpeg), GIF (Pillow) or an HTML player, written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.animation import FuncAnimation

from sdoml_sql.exceptions import FetchError
from sdoml_sql.files import written_atomically

FORMATS = (".mp4", ".gif", ".html")


def _png_base64(rgb: np.ndarray) -> str:
    import base64
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.fromarray(rgb).save(out, format="png", compress_level=3)  # about the size of savefig PNGs
    return base64.encodebytes(out.getvalue()).decode("ascii")


ENCODE_WORKERS = max(1, min(4, os.cpu_count() or 1))


def encoded(function, frames, workers: int = ENCODE_WORKERS):
    """``function(copy of frame)`` for each frame, in order, computed in a few threads while
    the next frames render (Pillow encoders release the GIL); at most ``2 * workers``
    frames in flight."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for frame in frames:
            pending.append(pool.submit(function, np.array(frame[..., :3])))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def jshtml(movie, fps: float, default_mode: str = "loop", progress=None) -> str:
    """The self-contained HTML player of ``Animation.to_jshtml`` (same template, base64 PNG
    frames) of a :class:`MovieFigure`, with frames from :meth:`MovieFigure.render`."""
    import uuid

    import matplotlib
    from matplotlib._animation_data import DISPLAY_TEMPLATE, JS_INCLUDE, STYLE_INCLUDE

    limit = matplotlib.rcParams["animation.embed_limit"] * 1024 * 1024
    frames, total = [], 0
    for data in encoded(_png_base64, movie.rgba_frames(progress)):
        total += len(data)
        if total >= limit:
            import logging

            logging.getLogger(__name__).warning(
                "Animation size has reached %s bytes, exceeding the limit of %s (animation.embed_limit); "
                "further frames are dropped.", total, limit)
            break
        frames.append(data)
    fill = "\n" + "".join('  frames[{}] = "data:image/png;base64,{}"\n'.format(i, data.replace("\n", "\\\n"))
                          for i, data in enumerate(frames))
    modes = {"once_checked": "", "loop_checked": "", "reflect_checked": ""}
    modes[f"{default_mode}_checked"] = "checked"
    return JS_INCLUDE + STYLE_INCLUDE + DISPLAY_TEMPLATE.format(
        id=uuid.uuid4().hex, Nframes=len(frames), fill_frames=fill, interval=int(1000 // fps), **modes)


def ffmpeg_path() -> str:
    """Point matplotlib at the ffmpeg binary shipped by ``imageio-ffmpeg``; return its path."""
    import imageio_ffmpeg
    import matplotlib

    path = imageio_ffmpeg.get_ffmpeg_exe()
    matplotlib.rcParams["animation.ffmpeg_path"] = path
    return path


def save(animation, path: str | Path, fps: float | None = None, progress: bool = False, dpi: int | None = None) -> Path:
    """Write an animation as ``.mp4`` (H.264), ``.gif`` or ``.html`` (the ``to_jshtml`` player).

    Animations from :func:`animate` are rendered by blitting (:meth:`MovieFigure.render`)
    and streamed to the encoder: RGBA frames piped to the ffmpeg of ``imageio-ffmpeg``,
    one adaptive palette for the whole GIF (Pillow), PNG frames for HTML.  Other matplotlib
    animations go through ``Animation.save``.  ``progress=True`` shows a tqdm bar on stderr.
    """
    path = Path(path)
    suffix = movie_suffix(path)
    fps = fps or getattr(animation, "sdoml_fps", 10)
    with written_atomically(path) as partial:
        _save_to(animation, partial, suffix, fps, progress, dpi)
    return path


def movie_suffix(path: str | Path) -> str:
    """The movie format of ``path`` (``.mp4``, ``.gif`` or ``.html``); raises
    :class:`FetchError` for anything else, before any frame is read."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise FetchError(f"cannot write a movie as {Path(path).name}: use {', '.join(FORMATS)}")
    return suffix


def _save_to(animation, path: Path, suffix: str, fps: float, progress: bool, dpi: int | None) -> Path:
    movie = getattr(animation, "sdoml_movie", None)
    if movie is None:
        return _save_slow(animation, path, suffix, fps, progress, dpi)
    figure = movie.figure
    saved_dpi = figure.dpi
    if dpi is not None:
        figure.set_dpi(dpi)
    try:
        with _progress(len(movie), progress, f"rendering {path.name}") as callback:
            def step(i, callback=callback):
                return callback(i, len(movie))

            if suffix == ".html":
                try:
                    text = jshtml(movie, fps, "loop", progress=step)
                except ImportError:  # matplotlib moved its private player template
                    text = FuncAnimation.to_jshtml(animation, fps=fps)
                path.write_text(text, encoding="utf-8")
            elif suffix == ".mp4":
                write_mp4(movie.rgba_frames(step), path, fps)
            else:
                write_gif(movie.rgba_frames(step), path, fps)
    finally:
        if dpi is not None:
            figure.set_dpi(saved_dpi)
    return path


def write_mp4(frames, path: str | Path, fps: float) -> Path:
    """Pipe RGBA frames (``(H, W, 4)`` uint8, all one size) to ffmpeg as H.264/yuv420p MP4
    (an odd width or height loses its last column or row: yuv420p needs even sizes)."""
    import imageio_ffmpeg

    writer = None
    try:
        for rgba in frames:
            if writer is None:
                height, width = (rgba.shape[0] // 2) * 2, (rgba.shape[1] // 2) * 2
                writer = imageio_ffmpeg.write_frames(
                    str(path), (width, height), pix_fmt_in="rgba", pix_fmt_out="yuv420p", fps=fps,
                    codec="libx264", quality=None, macro_block_size=1, ffmpeg_log_level="error")
                writer.send(None)
            writer.send(np.ascontiguousarray(rgba[:height, :width]))
    finally:
        if writer is not None:
            writer.close()
    return Path(path)


GIF_PALETTE_SAMPLES = 8


def write_gif(frames, path: str | Path, fps: float) -> Path:
    """Write RGBA frames as a looping GIF: one adaptive palette (from a few frames spread
    over the movie), every frame mapped to it without dithering."""
    from PIL import Image

    images = [Image.fromarray(rgb) for rgb in (np.array(rgba[..., :3]) for rgba in frames)]
    if not images:
        raise FetchError("nothing to write: the movie has no frames")
    picks = np.unique(np.linspace(0, len(images) - 1, min(GIF_PALETTE_SAMPLES, len(images))).round().astype(int))
    width, height = images[0].size
    montage = Image.new("RGB", (width, height * len(picks)))
    for n, i in enumerate(picks):
        montage.paste(images[i], (0, n * height))
    palette = montage.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=ENCODE_WORKERS) as pool:
        indexed = list(pool.map(lambda image: image.quantize(palette=palette, dither=Image.Dither.NONE), images))
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=1000 / fps, loop=0)
    return Path(path)


def _save_slow(animation, path: Path, suffix: str, fps: float, progress: bool, dpi: int | None) -> Path:
    """Any matplotlib animation through ``Animation.save`` / ``to_jshtml``."""
    from matplotlib.animation import FFMpegWriter, PillowWriter

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
