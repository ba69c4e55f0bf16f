"""Frames as pictures: each map's pixels in the colours ``maps()`` plots them with, as PNG.

A frame's picture is its SunPy map (:func:`~sdoml_sql.fetch.maps.maps`: the channel's colour
map, ``sdoaiaNNN`` or ``hmimag``, and the map's own normalisation — AIA's asinh stretch over
the frame's range, HMI's range symmetric about 0 G) applied pixel for pixel, the way
matplotlib's ``imshow`` colours an image: NaN pixels in the colour map's "bad" colour, the
first row at the bottom (``origin="lower"``).  No axes and no resampling: one PNG pixel per
map pixel.  Thumbnails are maps of frames downsampled by the mean of 4×4 blocks (128×128).

In: a selection (locators + catalog).  Out: RGBA arrays and PNG bytes.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pandas as pd

from sdoml_sql.fetch.maps import maps
from sdoml_sql.fetch.stack import LOCATOR_COLUMNS, FlatSelection

#: A thumbnail keeps the mean of 4×4 pixel blocks: 512×512 frames give 128×128 pictures.
THUMBNAIL_DOWNSAMPLE = 4
THUMBNAIL_METHOD = "mean"
#: zlib level of the PNGs: 1 is ~3× faster to write than 6 and ~10 % larger for these images.
PNG_COMPRESS_LEVEL = 1


def map_rgba(solar_map) -> np.ndarray:
    """The map's pixels as ``(H, W, 4)`` uint8 colours, top row first, as ``map.plot()`` colours
    them: its ``plot_settings`` colour map and normalisation (limits taken from the finite
    pixels where the normalisation has none), NaN pixels in the colour map's bad colour."""
    from matplotlib.cm import ScalarMappable

    data = np.ma.masked_invalid(np.asarray(solar_map.data, dtype=np.float64))
    norm = copy.deepcopy(solar_map.plot_settings.get("norm"))
    mappable = ScalarMappable(norm=norm, cmap=solar_map.plot_settings.get("cmap"))
    mappable.set_array(data)
    mappable.autoscale_None()
    return mappable.to_rgba(data, bytes=True)[::-1]


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
    """The PNG of one frame, located by instrument, year, channel and idx."""
    return frame_pngs(one_frame(catalog, instrument, year, channel, idx), downsample, method, "raise")[0]


def thumbnail_png(catalog, instrument: str, year: int, channel: str, idx: int) -> bytes:
    """The 128×128 thumbnail PNG of one frame (:data:`THUMBNAIL_DOWNSAMPLE`, block means)."""
    return frame_png(catalog, instrument, year, channel, idx, THUMBNAIL_DOWNSAMPLE, THUMBNAIL_METHOD)


def one_frame(catalog, instrument: str, year: int, channel: str, idx: int) -> FlatSelection:
    """A selection of the single frame ``(instrument, year, channel, idx)``."""
    locators = pd.DataFrame({"instrument": [instrument], "year": pd.array([year], dtype="Int64"),
                             "channel": [channel], "idx": pd.array([idx], dtype="Int64")},
                            columns=list(LOCATOR_COLUMNS))
    return FlatSelection(catalog, locators)
