"""FITS headers rebuilt from the catalog, and SunPy maps of selected frames.

A header is rebuilt from the frame's catalog row and the manifest's key info: keys in source
order, integers as ``int``, floats as ``float``, time keys as their original strings
(``<KEY>_STR``), and NULLs of keys marked ``nan_strings`` back to the string ``'nan'`` — the
same dict as the seed notebook's ``{k: v[i] for k, v in attrs.items()}``.

:func:`map_header` then fixes what SunPy needs for a good map: drops ``'nan'``/null values,
adds HMI's missing ``WAVEUNIT``, gives TAI time strings (HMI ``T_OBS``) as UTC ISO, and
rescales the WCS of downsampled frames.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch import _build, frame_headers, partition_key, selection_locators
from sdoml_sql.harvest import TIME_SUFFIX

HMI_CMAP = "hmimag"
HMI_PERCENTILE = 99.5
TIME_KEY_FOR_DATE = "T_OBS"


class FlatSelection:
    """A selection seen as a plain list of frames (aligned selections in long form)."""

    kind = "frames"

    def __init__(self, catalog, locators: pd.DataFrame):
        self.catalog = catalog
        self._locators = locators

    def locators(self) -> pd.DataFrame:
        return self._locators

    def __len__(self) -> int:
        return len(self._locators)


# --- headers -----------------------------------------------------------------------------

def partition_keys(catalog, instrument: str, year: int, channel: str) -> dict[str, dict[str, Any]]:
    """The manifest's ``keys`` info of one partition (source order)."""
    key = partition_key(instrument, year, channel)
    partition = (catalog.manifest.get("partitions") or {}).get(key)
    if partition is None:
        raise FetchError(f"catalog {catalog.directory} has no partition {key} in manifest.json")
    return partition.get("keys") or {}


def rebuild_header(row: dict[str, Any], keys: dict[str, dict[str, Any]],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A raw per-frame header (as in the store's attrs) from a catalog row and key info.

    ``extra`` adds per-frame keys kept in ``array_attrs`` (keys whose name collides with a
    catalog column, such as a key named ``IDX``).
    """
    header = {}
    for key, info in keys.items():
        kind = info.get("type")
        value = row.get(key + TIME_SUFFIX) if kind == "TIMESTAMP" else row.get(key)
        header[key] = _original_value(value, info)
    header.update(extra or {})
    return header


def per_frame_array_attrs(catalog, instrument: str, year: int, channel: str) -> dict[str, list]:
    """Keys of a partition kept whole in ``array_attrs`` that still have one value per frame
    (``{key: values}``); truly ragged keys (other lengths) are left out."""
    import pyarrow.dataset as ds

    partition = (catalog.manifest.get("partitions") or {}).get(partition_key(instrument, year, channel)) or {}
    if not partition.get("ragged_keys"):
        return {}
    directory = Path(catalog.directory) / "array_attrs" / f"instrument={instrument}" / f"year={int(year)}" / f"channel={channel}"
    files = sorted(str(p) for p in directory.glob("*.parquet"))
    if not files:
        return {}
    table = ds.dataset(files, format="parquet").to_table(columns=["key", "n_values", "values"]).to_pylist()
    rows = partition.get("rows")
    return {entry["key"]: json.loads(entry["values"]) for entry in table if entry["n_values"] == rows}


def _original_value(value: Any, info: dict[str, Any]) -> Any:
    if _is_null(value):
        return "nan" if info.get("nan_strings") else None
    kind = info.get("type")
    if kind == "BIGINT":
        return int(value)
    if kind == "DOUBLE":
        return float(value)
    if kind == "VARCHAR" and info.get("json"):
        return json.loads(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def headers(catalog, locators: pd.DataFrame) -> list[dict[str, Any] | None]:
    """Raw headers of the locators' frames, in order (``None`` for rows without a frame)."""
    return header_records(catalog, locators)[0]


def header_records(catalog, locators: pd.DataFrame):
    """``(raw headers, catalog rows, key infos)`` of the locators' frames, in order
    (``None`` entries for rows without a frame)."""
    table = frame_headers(catalog, locators)
    infos: dict[tuple, tuple[dict, dict]] = {}
    raw, rows, keys = [], [], []
    for position, locator in enumerate(locators.itertuples(index=False)):
        if pd.isna(locator.idx):
            raw.append(None), rows.append(None), keys.append(None)
            continue
        where = (locator.instrument, int(locator.year), locator.channel)
        if where not in infos:
            infos[where] = (partition_keys(catalog, *where), per_frame_array_attrs(catalog, *where))
        key_info, extra_lists = infos[where]
        row = table.iloc[position].to_dict()
        extra = {key: values[int(locator.idx)] for key, values in extra_lists.items()}
        raw.append(rebuild_header(row, key_info, extra))
        rows.append(row)
        keys.append(key_info)
    return raw, rows, keys


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

def map_header(raw: dict[str, Any], catalog_row: dict[str, Any] | None = None,
               keys: dict[str, dict[str, Any]] | None = None, downsample: int = 1,
               method: str = "stride") -> dict[str, Any]:
    """A copy of a raw header that SunPy reads correctly.

    Drops ``'nan'`` strings and nulls (FITS cannot hold them), sets ``BUNIT = G`` for
    ``PIXLUNIT = Gauss`` (HMI) and ``WAVEUNIT`` when
    ``WAVELNTH`` has none (HMI), replaces time strings in the TAI scale by UTC ISO strings
    from the catalog's converted timestamps, and rescales CRPIX/CDELT/NAXIS for
    downsampled frames.
    """
    meta = {k: v for k, v in raw.items() if not _is_nan_like(v)}
    if "WAVELNTH" in meta and "WAVEUNIT" not in meta:
        meta["WAVEUNIT"] = "Angstrom"
    if "BUNIT" not in meta and str(meta.get("PIXLUNIT", "")).lower() == "gauss":
        meta["BUNIT"] = "G"
    for key, info in (keys or {}).items():
        if info.get("type") == "TIMESTAMP" and info.get("scale") == "TAI" and catalog_row is not None:
            stamp = catalog_row.get(key)
            if not _is_null(stamp):
                meta[key] = pd.Timestamp(stamp).isoformat(timespec="milliseconds")
    if downsample > 1:
        meta = rescale_header(meta, downsample, method)
    return meta


def _is_nan_like(value: Any) -> bool:
    return _is_null(value) or (isinstance(value, str) and value.strip().lower() in ("nan", "-nan", "+nan"))


def rescale_header(meta: dict[str, Any], factor: int, method: str) -> dict[str, Any]:
    """The WCS keys of a frame downsampled by ``factor``.

    ``stride`` keeps original pixels 1, 1+f, …; ``mean`` averages f×f blocks whose centres
    sit (f-1)/2 pixels further on.
    """
    meta = dict(meta)
    first = 1.0 if method == "stride" else (factor + 1) / 2
    for axis in ("1", "2"):
        if f"CRPIX{axis}" in meta:
            meta[f"CRPIX{axis}"] = (float(meta[f"CRPIX{axis}"]) - first) / factor + 1
        if f"CDELT{axis}" in meta:
            meta[f"CDELT{axis}"] = float(meta[f"CDELT{axis}"]) * factor
        if f"NAXIS{axis}" in meta:
            size = int(float(meta[f"NAXIS{axis}"]))
            meta[f"NAXIS{axis}"] = -(-size // factor) if method == "stride" else size // factor
    return meta


# --- maps --------------------------------------------------------------------------------

def make_map(data: np.ndarray, meta: dict[str, Any], instrument: str):
    """One SunPy map with the channel's colormap (AIA ``sdoaiaNNN``, HMI ``hmimag``
    with a symmetric range)."""
    import sunpy.map

    solar_map = sunpy.map.Map((data, meta))
    if instrument == "hmi":
        style_hmi(solar_map)
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
                           table["instrument"].iloc[i])
                  for i in range(len(table))]
    return sunpy.map.MapSequence(solar_maps, sortby=sortby)


def load_frames(selection, downsample: int = 1, method: str = "stride", missing: str = "raise"):
    """Read the frames and their headers: ``(pixels, locators, raw headers, catalog rows,
    key infos)`` — pixels a numpy array in the (kept) row order."""
    flat = FlatSelection(selection.catalog, selection_locators(selection))
    array, grid, _ = _build(flat, downsample, method, missing)
    raw, catalog_rows, keys = header_records(selection.catalog, grid.table)
    return array.compute(), grid.table, raw, catalog_rows, keys


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
        figure.savefig(output, dpi=110, bbox_inches="tight")
    return figure
