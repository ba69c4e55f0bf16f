"""Fetched frames written out: an xarray object, ``.npy``/``.zarr`` files with a header
table beside them, or one FITS file per frame.

Every file is written under a temporary name and renamed when complete, so a fetch that
fails part-way leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.headers import frame_headers, header_records, headers_table, map_header
from sdoml_sql.fetch.stack import FlatSelection, FrameGrid, build_stack, selection_locators


def to_xarray(selection, downsample: int = 1, method: str = "stride", missing: str = "raise",
              headers: bool = True):
    """The fetch as a lazy ``xarray.DataArray`` with coordinates.

    Frame selections: dims ``(frame, y, x)`` with ``instrument``, ``year``, ``channel``,
    ``idx`` (and the selection's ``time`` if any) along ``frame``.  Aligned selections:
    dims ``(time, channel, y, x)``.  With ``headers=True`` every header column of the
    catalog becomes a coordinate along ``frame`` (or ``(time, channel)``), NaN/None where a
    row has no frame.
    """
    import xarray as xr

    data, grid, _ = build_stack(selection, downsample, method, missing)
    header_table = frame_headers(selection.catalog, grid.table) if headers else None
    if grid.aligned:
        coords = _aligned_coords(grid, header_table)
        dims = ("time", "channel", "y", "x")
    else:
        coords = _frame_coords(grid, header_table)
        dims = ("frame", "y", "x")
    attrs = {"downsample": downsample, "method": method, "missing": missing}
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name="frames")


def _frame_coords(grid: FrameGrid, header_table: pd.DataFrame | None) -> dict[str, Any]:
    table = grid.table
    coords: dict[str, Any] = {"frame": np.arange(len(table))}
    for column in table.columns:
        coords[column] = ("frame", _coord_values(table[column]))
    if header_table is not None:
        for column in header_table.columns:
            if column not in coords:
                coords[column] = ("frame", _coord_values(header_table[column]))
    return coords


def _aligned_coords(grid: FrameGrid, header_table: pd.DataFrame | None) -> dict[str, Any]:
    coords: dict[str, Any] = {"time": grid.times.to_numpy(), "channel": np.array(grid.columns, dtype=object)}
    if header_table is None:
        return coords
    table = grid.table
    r = pd.Index(pd.unique(table["row"])).get_indexer(table["row"])
    c = pd.Index(grid.columns).get_indexer(table["channel"].astype(str))
    shape = (len(grid.times), len(grid.columns))
    for column in ["instrument", "year", "idx", *header_table.columns]:
        if column in coords or column in ("channel", "row", "time"):
            continue
        source = table[column] if column in table.columns else header_table[column]
        values = _coord_values(source)
        grid_values = np.full(shape, _blank(values), dtype=values.dtype if values.dtype.kind in "fMO" else object)
        grid_values[r, c] = values
        coords[column] = (("time", "channel"), grid_values)
    return coords


def _coord_values(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.to_numpy(dtype="datetime64[ns]")
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64").to_numpy(na_value=np.nan) if series.isna().any() else series.to_numpy()
    return series.astype(object).where(series.notna(), None).to_numpy(dtype=object)


def _blank(values: np.ndarray):
    if values.dtype.kind == "f":
        return np.nan
    if values.dtype.kind == "M":
        return np.datetime64("NaT")
    return None


OUTPUT_FORMATS = ("npy", "zarr", "fits")


BATCH_BYTES = 512 * 2**20


FITS_STRUCTURAL_KEYS = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "XTENSION",
                        "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM"}


def output_format(output, format: str | None = None) -> str:
    """``npy``, ``zarr`` or ``fits`` from an explicit format or the output's suffix."""
    if format:
        if format not in OUTPUT_FORMATS:
            raise FetchError(f"format {format!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
        return format
    suffix = Path(output).suffix.lower()
    if suffix in (".npy", ".zarr"):
        return suffix[1:]
    if suffix in ("", ".fits"):
        return "fits"
    raise FetchError(f"cannot tell the output format of {output}: use .npy, .zarr or a directory for FITS")


def compute_batches(array, budget: int = BATCH_BYTES, progress: bool = False):
    """Compute ``array`` in groups of consecutive blocks along axis 0 of about ``budget``
    bytes; yield ``(start_row, values)``.  Reads shared inside a group happen once."""
    from tqdm import tqdm

    bar = tqdm(total=array.shape[0], unit="frame", desc="fetching", disable=not progress)
    starts = np.concatenate([[0], np.cumsum(array.chunks[0])])
    row_bytes = array.nbytes // max(array.shape[0], 1)
    first = 0
    try:
        while first < len(array.chunks[0]):
            last = first + 1
            while last < len(array.chunks[0]) and (starts[last + 1] - starts[first]) * row_bytes <= budget:
                last += 1
            values = array[starts[first]:starts[last]].compute()
            bar.update(len(values))
            yield int(starts[first]), values
            first = last
    finally:
        bar.close()


def write_frames(selection, output, format: str | None = None, downsample: int = 1, method: str = "stride",
                 missing: str = "raise", progress: bool = False) -> list:
    """Fetch and write the frames: ``.npy`` or ``.zarr`` (plus ``<name>.headers.parquet``
    with every selected row's locator and catalog header) or a directory of FITS files
    (one per frame, headers included).  Returns the paths written."""
    output = Path(output)
    kind = output_format(output, format)
    output.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fits":
        with written_atomically(output) as partial:
            written = _write_fits(selection, partial, downsample, method, missing, progress)
        return [output / path.name for path in written]
    array, grid, _ = build_stack(selection, downsample, method, missing)
    sidecar = output.with_name(output.stem + ".headers.parquet")
    with written_atomically(output) as partial, written_atomically(sidecar) as partial_sidecar:
        target = _open_target(partial, kind, array)
        for start, values in compute_batches(array, progress=progress):
            target[start:start + len(values)] = values
        if kind == "npy":
            target.flush()
            del target
        headers_table(selection.catalog, grid.table).to_parquet(partial_sidecar, index=False)
    return [output, sidecar]


@contextlib.contextmanager
def written_atomically(path):
    """Yield a temporary sibling of ``path`` (a :class:`~pathlib.Path`), moved onto ``path``
    only if the block succeeds, so a write that fails part-way leaves nothing behind.

    The one rule of every command that writes: missing parent directories are created, the
    output appears complete or not at all, an existing output is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the suffix stays last: ffmpeg and matplotlib choose the format from it
    partial = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(partial, path)


def save_figure(figure, output, **savefig_options) -> Path:
    """Save a matplotlib figure to ``output`` (PNG, PDF, SVG … from the suffix) by the
    write rule of :func:`written_atomically`; an unknown suffix is a one-line
    :class:`FetchError` listing the formats matplotlib can write."""
    output = Path(output)
    formats = figure.canvas.get_supported_filetypes()
    if output.suffix.lower().lstrip(".") not in formats:
        raise FetchError(f"cannot save a plot as {output.name}: use one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    with written_atomically(output) as partial:
        figure.savefig(partial, **savefig_options)
    return output


def _remove(path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _open_target(output, kind: str, array):
    if kind == "npy":
        return np.lib.format.open_memmap(output, mode="w+", dtype=np.float32, shape=array.shape)
    import zarr

    chunks = (min(max(array.shape[0], 1), 16),) + tuple(array.shape[1:])
    return zarr.create_array(str(output), shape=array.shape, chunks=chunks, dtype=np.float32,
                             fill_value=np.nan, zarr_format=2, overwrite=True)


def _write_fits(selection, directory, downsample: int, method: str, missing: str, progress: bool) -> list:
    if missing == "nan":
        raise FetchError("FITS output writes one file per frame: use missing='drop' or 'raise'")
    flat = FlatSelection(selection.catalog, selection_locators(selection))
    array, grid, _ = build_stack(flat, downsample, method, missing)
    raw, rows, keys = header_records(selection.catalog, grid.table)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for start, values in compute_batches(array, progress=progress):
        for offset, frame in enumerate(values):
            i = start + offset
            meta = map_header(raw[i], rows[i], keys[i], downsample, method)
            written.append(_write_fits_frame(directory, i, grid.table.iloc[i], frame, meta))
    return written


def _write_fits_frame(directory, i: int, locator, frame: np.ndarray, meta: dict[str, Any]):
    import warnings

    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for key, value in meta.items():
            if key.upper() in FITS_STRUCTURAL_KEYS or not isinstance(value, (str, int, float, bool)):
                continue
            if key.upper() in ("COMMENT", "HISTORY"):
                if value:
                    header.add_comment(value) if key.upper() == "COMMENT" else header.add_history(value)
                continue
            header[key] = value
        stamp = str(meta.get("T_OBS", "")).replace(":", "").replace("-", "")[:15] or "notime"
        path = directory / f"{i:05d}_{locator['instrument']}_{locator['channel']}_{stamp}.fits"
        fits.PrimaryHDU(frame, header=header).writeto(path, overwrite=True)
    return path
