"""SunPy maps of selected frames: pixels from the stack, headers from the catalog.

In: a selection (locators + catalog).  Out: ``sunpy.map`` maps, ``MapSequence`` and plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.headers import header_records, headers, map_header
from sdoml_sql.fetch.output import save_figure
from sdoml_sql.fetch.stack import FlatSelection, read_stack, selection_locators

HMI_CMAP = "hmimag"
HMI_PERCENTILE = 99.5
TIME_KEY_FOR_DATE = "T_OBS"


def header(selection, i: int) -> dict[str, Any]:
    """Row ``i``'s FITS header rebuilt from the catalog (every keyword, original types).

    Looked up by instrument/year/channel/idx, so it works whatever columns the query
    selected.  Raises :class:`FetchError` when the row has no frame.
    """
    locators = selection_locators(selection)
    if not -len(locators) <= i < len(locators):
        raise FetchError(f"row {i} is out of range: the selection has {len(locators)} rows")
    row = locators.iloc[[i]].reset_index(drop=True)
    if pd.isna(row["idx"].iloc[0]):
        raise FetchError(f"row {i} ({row['instrument'].iloc[0]} {row['channel'].iloc[0]}) has no frame")
    return headers(selection.catalog, row)[0]


# --- headers fit for SunPy -----------------------------------------------------------------


# --- maps --------------------------------------------------------------------------------

def make_map(data: np.ndarray, meta: dict[str, Any], instrument: str, channel: str | None = None):
    """One SunPy map with the channel's colormap (AIA ``sdoaiaNNN``, HMI ``hmimag``
    with a symmetric range).  An HMI map is named after its component (``channel``): the
    three share one header ``CONTENT``, so SunPy would title them all "HMI magnetic"."""
    import sunpy.map

    solar_map = sunpy.map.Map((data, meta))
    if instrument == "hmi":
        style_hmi(solar_map)
        if channel:
            solar_map.nickname = f"HMI {channel}"  # name and plot title: "HMI Bz magnetic <date>"
    return solar_map


def style_hmi(solar_map, vmax: float | None = None) -> None:
    """Give an HMI field map the magnetogram colormap and a range symmetric about 0 G."""
    from astropy.visualization import ImageNormalize

    if vmax is None:
        vmax = symmetric_limit(solar_map.data)
    solar_map.plot_settings["cmap"] = HMI_CMAP
    solar_map.plot_settings["norm"] = ImageNormalize(vmin=-vmax, vmax=vmax)


def symmetric_limit(data: np.ndarray, percentile: float = HMI_PERCENTILE) -> float:
    """A colour limit for signed data: the ``percentile`` of |data| (at least 1)."""
    finite = np.abs(data[np.isfinite(data)])
    return float(max(np.percentile(finite, percentile), 1.0)) if finite.size else 1.0


def maps(selection, sortby: str | None = None, downsample: int = 1, method: str = "stride",
         missing: str = "raise"):
    """The selected frames as a ``sunpy.map.MapSequence``, in row order.

    ``sortby="date"`` sorts by observation time instead.  Aligned selections give their
    frames in long form (grid time, then channel).  ``missing="drop"`` leaves out rows
    without a frame; the default raises :class:`FetchError` naming them.
    """
    import sunpy.map

    if missing not in ("raise", "drop"):
        raise FetchError(f"missing={missing!r}: maps need a frame per row; use 'raise' or 'drop'")
    frames, table, raw_headers, catalog_rows, keys = load_frames(selection, downsample, method, missing)
    solar_maps = [make_map(frames[i], map_header(raw_headers[i], catalog_rows[i], keys[i], downsample, method),
                           table["instrument"].iloc[i], table["channel"].iloc[i])
                  for i in range(len(table))]
    return sunpy.map.MapSequence(solar_maps, sortby=sortby)


def load_frames(selection, downsample: int = 1, method: str = "stride", missing: str = "raise"):
    """Read the frames and their headers: ``(pixels, locators, raw headers, catalog rows,
    key infos)`` — pixels a numpy array in the (kept) row order."""
    flat = FlatSelection(selection.catalog, selection_locators(selection))
    pixels, grid = read_stack(flat, downsample, method, missing)
    raw, catalog_rows, keys = header_records(selection.catalog, grid.table)
    return pixels, grid.table, raw, catalog_rows, keys


def plot_map(selection, i: int = 0, output=None, downsample: int = 1, method: str = "stride"):
    """Plot row ``i`` as a SunPy map (WCS axes, channel colormap, colour bar); save it to
    ``output`` if given.  Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    locators = selection_locators(selection)
    if not -len(locators) <= i < len(locators):
        raise FetchError(f"row {i} is out of range: the selection has {len(locators)} rows")
    one = FlatSelection(selection.catalog, locators.iloc[[i]].reset_index(drop=True))
    solar_map = maps(one, downsample=downsample, method=method)[0]
    figure = plt.figure(figsize=(7, 6))
    axes = figure.add_subplot(projection=solar_map)
    image = solar_map.plot(axes=axes)
    figure.colorbar(image, ax=axes, label=str(solar_map.unit or ""))
    if output is not None:
        save_figure(figure, output, dpi=110, bbox_inches="tight")
    return figure


def plot(selection, output, lines: list[str] | None = None, row: int = 0):
    """What ``sdoml-sql plot`` draws, saved to ``output`` (PNG, PDF, SVG …): an EVE selection
    (``selection.kind == "eve"``) as one panel per line (:func:`~sdoml_sql.fetch.eve.plot_eve`,
    ``lines`` to choose), any other as the map of frame ``row`` (:func:`plot_map`).  Returns
    the matplotlib Figure."""
    if getattr(selection, "kind", None) == "eve":
        from sdoml_sql.fetch.eve import plot_eve

        return plot_eve(selection, lines=lines, output=output)
    return plot_map(selection, row, output)
