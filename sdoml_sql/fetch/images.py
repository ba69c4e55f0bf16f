"""Frames as pictures: each map's pixels in the colours ``maps()`` plots them with, as PNG.

A frame's picture is its SunPy map (:func:`~sdoml_sql.fetch.maps.maps`: the channel's colour
map, ``sdoaiaNNN`` or ``hmimag``, and the map's own normalisation — AIA's asinh stretch over
the frame's range, HMI's range symmetric about 0 G) applied pixel for pixel, the way
matplotlib's ``imshow`` colours an image: NaN pixels in the colour map's "bad" colour, the
first row at the bottom (``origin="lower"``).  No axes and no resampling: one PNG pixel per
map pixel.  Thumbnails are maps of frames downsampled by the mean of 4×4 blocks (128×128).

One frame's picture (:func:`frame_png`, :func:`thumbnail_png`, what the explorer serves) is
drawn without building its map: its colours depend on its header only through the map's
source (SunPy picks the map class and colour map from ``INSTRUME``/``TELESCOP``/``WAVELNTH``,
one per channel), so a channel's colour map and normalisation are taken once from one of its
frames' map (kept per partition version) and each frame then costs its pixels alone: one
frame read from its chunk, downsampled, coloured, PNG-encoded (~4 ms of CPU instead of ~50 ms for
a map whose header decodes a catalog row group).  HMI's range still comes from each frame's
own pixels (:func:`~sdoml_sql.fetch.maps.style_hmi`), AIA's from its finite range.

In: a selection (locators + catalog).  Out: RGBA arrays and PNG bytes.
"""

from __future__ import annotations

import copy
import functools
import io
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.frames import read_chunk_frames
from sdoml_sql.fetch.maps import maps, style_hmi
from sdoml_sql.fetch.stack import LOCATOR_COLUMNS, ArrayRef, FlatSelection, check_downsample, open_arrays

#: A thumbnail keeps the mean of 4×4 pixel blocks: 512×512 frames give 128×128 pictures.
THUMBNAIL_DOWNSAMPLE = 4
THUMBNAIL_METHOD = "mean"
#: zlib level of the PNGs: 1 is ~3× faster to write than 6 and ~10 % larger for these images.
PNG_COMPRESS_LEVEL = 1


def map_rgba(solar_map) -> np.ndarray:
    """The map's pixels as ``(H, W, 4)`` uint8 colours, top row first, as ``map.plot()`` colours
    them: its ``plot_settings`` colour map and normalisation (limits taken from the finite
    pixels where the normalisation has none), NaN pixels in the colour map's bad colour."""
    return coloured(solar_map.data, solar_map.plot_settings)


def coloured(pixels: np.ndarray, plot_settings: dict) -> np.ndarray:
    """``pixels`` as :func:`map_rgba` colours a map of them with these ``plot_settings``."""
    from matplotlib.cm import ScalarMappable

    data = np.ma.masked_invalid(np.asarray(pixels, dtype=np.float64))
    norm = copy.deepcopy(plot_settings.get("norm"))
    mappable = ScalarMappable(norm=norm, cmap=colour_map(plot_settings.get("cmap")))
    mappable.set_array(data)
    mappable.autoscale_None()
    return mappable.to_rgba(data, bytes=True)[::-1]


@functools.lru_cache(maxsize=64)
def _named_colour_map(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def colour_map(cmap):
    """A colour map given by name or object; named ones are looked up once (matplotlib hands
    out a fresh copy per look-up, whose colour table is then rebuilt at first use)."""
    return _named_colour_map(cmap) if isinstance(cmap, str) else cmap


def png_bytes(rgba: np.ndarray) -> bytes:
    """An ``(H, W, 4)`` uint8 array as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buffer, format="PNG",
                                                             compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def frame_pngs(selection, downsample: int = 1, method: str = "stride", missing: str = "drop") -> list[bytes]:
    """One PNG per selected frame (rows without a frame left out with ``missing="drop"``), in
    row order: the pictures of :func:`~sdoml_sql.fetch.maps.maps` with the same arguments."""
    return [png_bytes(map_rgba(solar_map))
            for solar_map in maps(selection, downsample=downsample, method=method, missing=missing)]


def frame_png(catalog, instrument: str, year: int, channel: str, idx: int, downsample: int = 1,
              method: str = "stride") -> bytes:
    """The PNG of one frame, located by instrument, year, channel and idx: the picture of
    :func:`frame_pngs`, drawn from the frame's pixels and its channel's style."""
    return png_bytes(frame_rgba(catalog, instrument, year, channel, idx, downsample, method))


def frame_rgba(catalog, instrument: str, year: int, channel: str, idx: int, downsample: int = 1,
               method: str = "stride") -> np.ndarray:
    """One frame as :func:`map_rgba` colours its map (``maps()`` with the same arguments),
    from its pixels and its channel's style, without rebuilding its header."""
    pixels = frame_pixels(catalog, instrument, year, channel, idx, downsample, method)
    settings = dict(channel_style(catalog, instrument, year, channel, idx))
    if instrument == "hmi":  # as make_map styles an HMI map: its range from its own pixels
        style_hmi(SimpleNamespace(data=pixels, plot_settings=settings))
    return coloured(pixels, settings)


def frame_pixels(catalog, instrument: str, year: int, channel: str, idx: int, downsample: int = 1,
                 method: str = "stride") -> np.ndarray:
    """One frame's ``(H, W)`` float32 pixels as ``fetch()`` gives them, read from its chunk."""
    ref = ArrayRef(instrument, int(year), channel)
    zarray = open_arrays(catalog, [ref])[0]
    check_downsample(tuple(zarray.shape[1:]), downsample, method)
    if not 0 <= idx < zarray.shape[0]:
        raise FetchError(f"{ref} has {zarray.shape[0]} frames; no frame idx {idx}")
    return read_chunk_frames(zarray, str(ref), idx, idx + 1, (0,), downsample, method)[0]


#: Each channel's colour map and normalisation (a map's ``plot_settings``), by partition version.
_styles: dict[tuple, dict] = {}
_styles_lock = threading.Lock()


def channel_style(catalog, instrument: str, year: int, channel: str, idx: int) -> dict:
    """The ``cmap`` and ``norm`` SunPy gives the maps of a channel, from the map of frame
    ``idx`` the first time (kept per partition version: catalog, fingerprint, build time)."""
    entry = catalog.manifest.partition(instrument, int(year), channel) or {}
    key = (str(catalog.directory), instrument, int(year), channel, entry.get("fingerprint"), entry.get("built_at"))
    with _styles_lock:
        style = _styles.get(key)
    if style is None:
        solar_map = maps(one_frame(catalog, instrument, year, channel, idx))[0]
        style = {"cmap": solar_map.plot_settings.get("cmap"), "norm": solar_map.plot_settings.get("norm")}
        with _styles_lock:
            _styles[key] = style
    return style


def thumbnail_png(catalog, instrument: str, year: int, channel: str, idx: int) -> bytes:
    """The 128×128 thumbnail PNG of one frame (:data:`THUMBNAIL_DOWNSAMPLE`, block means)."""
    return frame_png(catalog, instrument, year, channel, idx, THUMBNAIL_DOWNSAMPLE, THUMBNAIL_METHOD)


def one_frame(catalog, instrument: str, year: int, channel: str, idx: int) -> FlatSelection:
    """A selection of the single frame ``(instrument, year, channel, idx)``."""
    locators = pd.DataFrame({"instrument": [instrument], "year": pd.array([year], dtype="Int64"),
                             "channel": [channel], "idx": pd.array([idx], dtype="Int64")},
                            columns=list(LOCATOR_COLUMNS))
    return FlatSelection(catalog, locators)
