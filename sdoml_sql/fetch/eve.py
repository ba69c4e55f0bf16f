"""EVE irradiance: time series from an ``eve`` selection and line plots titled from
``eve_lines`` (ion, wavelength, log T).

Missing samples are gaps, never spikes: catalog NULLs (negative source values) become NaN,
any negative value left is masked too, and a time step much longer than the cadence
breaks the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.catalog_builder.location import location_of
from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.headers import column_range
from sdoml_sql.fetch.output import save_figure

GAP_FACTOR = 5.0
NOT_LINES = {"idx", "time", "row", "eve_time", "offset_s", "eve_idx", "eve_offset_s", "group", "instrument"}


def eve_lines(catalog) -> pd.DataFrame:
    """The ``eve_lines`` table (name, ion, wavelength nm, logT) indexed by line name."""
    location = location_of(catalog)
    files = location.glob("eve_lines/*/*.parquet")
    if not files:
        raise FetchError(f"catalog {catalog.directory} has no eve_lines table: build it with an EVE store")
    table = location.parquet_dataset(files).to_table(columns=["name", "ion", "wavelength", "logT"])
    return table.to_pandas().drop_duplicates("name").set_index("name")


def eve_coverage(catalog) -> str:
    """``the catalog has EVE samples from … to …`` (or says it has none)."""
    first, last = column_range(catalog, "eve/*/*.parquet", "time") if catalog is not None else (None, None)
    return f"the catalog has EVE samples from {first} to {last}" if first else "the catalog has no EVE samples"


def eve_series(selection_or_frame) -> pd.DataFrame:
    """The selection's EVE samples as a float DataFrame indexed by UTC time, NaN where missing."""
    frame = selection_or_frame.to_pandas() if hasattr(selection_or_frame, "to_pandas") else selection_or_frame
    time_column = "time" if "time" in frame.columns else "eve_time" if "eve_time" in frame.columns else None
    if time_column is None:
        raise FetchError("not an EVE selection: no time column (select from eve, or nearest_eve joined to eve)")
    values = frame.drop(columns=[c for c in frame.columns if c in NOT_LINES])
    values = values.apply(pd.to_numeric, errors="coerce").astype("float64")
    values = values.mask(values < 0)
    values.index = pd.DatetimeIndex(pd.to_datetime(frame[time_column]), name="time")
    return values.sort_index()


def with_gaps(series: pd.DataFrame, factor: float = GAP_FACTOR) -> pd.DataFrame:
    """Insert a NaN row after every time step longer than ``factor`` × the median step, so a
    plotted line breaks there instead of bridging the gap."""
    if len(series) < 3:
        return series
    steps = series.index.to_series().diff()
    limit = steps.median() * factor
    breaks = series.index[1:][(steps.iloc[1:] > limit).to_numpy()]
    if not len(breaks):
        return series
    previous = series.index[series.index.get_indexer(breaks) - 1]
    gap_rows = pd.DataFrame(np.nan, index=previous + (breaks - previous) / 2, columns=series.columns)
    return pd.concat([series, gap_rows]).sort_index()


def line_title(name: str, lines: pd.DataFrame) -> str:
    """``Fe XX_2 — Fe XX 13.285 nm, log T 6.8`` (from ``eve_lines``)."""
    if name not in lines.index:
        return name
    info = lines.loc[name]
    parts = [str(info["ion"])] if _known(info["ion"]) else []
    if _known(info["wavelength"]):
        parts.append(f"{float(info['wavelength']):.3f} nm")
    detail = " ".join(parts)
    if _known(info["logT"]):
        detail += f", log T {float(info['logT']):g}"
    return f"{name} — {detail}" if detail else name


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def plot_eve(selection, lines: Iterable[str] | None = None, catalog=None, output: str | Path | None = None,
             gap_factor: float = GAP_FACTOR, figsize: tuple[float, float] | None = None):
    """Plot EVE lines of a selection over ``eve``, one panel per line, as a matplotlib Figure.

    ``lines`` picks line columns (default: every line column the query selected).  Titles
    give ion, wavelength and log T from ``eve_lines``.  Missing values are gaps.  With
    ``output`` the figure is also saved (PNG, PDF, SVG …).  ``selection`` may be a pandas
    DataFrame with a ``time`` column when ``catalog`` is given.
    """
    import matplotlib.pyplot as plt

    catalog = catalog or getattr(selection, "catalog", None)
    series = eve_series(selection)
    names = _chosen_lines(series, lines)
    if not series[names].notna().any().any():
        raise FetchError(f"nothing to plot: the selection has {len(series)} EVE samples"
                         f"{' and every value is missing' if len(series) else ''}; {eve_coverage(catalog)}")
    info = eve_lines(catalog) if catalog is not None else pd.DataFrame(columns=["ion", "wavelength", "logT"])
    data = with_gaps(series[names], gap_factor)
    figure, axes = plt.subplots(len(names), 1, sharex=True, squeeze=False,
                                figsize=figsize or (9, 2.2 * len(names) + 0.6))
    for axis, name in zip(axes[:, 0], names):
        axis.plot(data.index, data[name], lw=0.8)
        axis.set_title(line_title(name, info), fontsize=10)
        axis.set_ylabel("W m$^{-2}$")
        axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes[-1, 0].set_xlabel("time (UTC)")
    figure.autofmt_xdate()
    figure.tight_layout()
    if output is not None:
        save_figure(figure, output, dpi=120)
    return figure


def _chosen_lines(series: pd.DataFrame, lines: Iterable[str] | None) -> list[str]:
    if lines is None:
        names = list(series.columns)
    else:
        names = [lines] if isinstance(lines, str) else list(lines)
    unknown = [n for n in names if n not in series.columns]
    if unknown:
        raise FetchError(f"EVE line {unknown[0]!r} is not in the selection: choose from "
                         f"{', '.join(series.columns) or 'no line columns (select some)'}")
    if not names:
        raise FetchError("the selection has no EVE line columns to plot")
    return names
