"""Fetched frames written out: an xarray object, ``.npy``/``.zarr`` files with a header
table beside them, or one FITS file per frame.

Every file is written under a temporary name and renamed when complete, so a fetch that
fails part-way leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.headers import frame_headers, header_records, headers_table, map_header
from sdoml_sql.fetch.stack import FlatSelection, FrameGrid, build_stack, selection_locators
from sdoml_sql.files import written_atomically


def to_xarray(selection, downsample: int = 1, method: str = "stride", missing: str = "raise",
              headers: bool = True):
    """The fetch as a lazy ``xarray.DataArray`` named ``frames``, with coordinates.

    Frame selections: dims ``(frame, y, x)`` with ``instrument``, ``year``, ``channel``,
    ``idx`` (and the selection's ``time`` if any) along ``frame``.  Aligned selections:
    dims ``(time, channel, y, x)``.  Always: ``T_OBS`` and the pixel ``units`` (``DN/s``
    for AIA, ``G`` for HMI; the ``units`` attribute when all frames share one).  With
    ``headers=True`` every header column of the catalog becomes a coordinate along
    ``frame`` (or ``(time, channel)``), NaN/None where a row has no frame.
    """
    data, grid, _ = build_stack(selection, downsample, method, missing)
    table = frame_headers(selection.catalog, grid.table)
    return frames_data_array(data, grid, table if headers else essential_headers(table),
                             {"downsample": downsample, "method": method, "missing": missing})


def essential_headers(header_table: pd.DataFrame) -> pd.DataFrame:
    """The header columns every exported stack carries as coordinates: ``T_OBS`` and the
    pixel ``units`` (from ``PIXLUNIT``: ``DN/s`` for AIA, ``G`` for HMI)."""
    return pd.DataFrame({"T_OBS": header_table.get("T_OBS"), "units": _units(header_table)},
                        index=header_table.index)


def frames_data_array(data, grid: FrameGrid, header_table: pd.DataFrame, attrs: dict[str, Any]):
    """A stack (dask or numpy) and its frame grid as an ``xarray.DataArray`` named
    ``frames``: locators and ``header_table``'s columns (one row per locator) as
    coordinates, pixel units from ``PIXLUNIT``."""
    import xarray as xr

    if "units" not in header_table.columns:
        header_table = header_table.assign(units=_units(header_table))
    shared = header_table["units"].dropna().unique()
    if grid.aligned:
        coords = _aligned_coords(grid, header_table)
        dims = ("time", "channel", "y", "x")
    else:
        coords = _frame_coords(grid, header_table)
        dims = ("frame", "y", "x")
    if len(shared) == 1:
        coords.pop("units")
        attrs = {**attrs, "units": str(shared[0])}
    elif grid.aligned:  # one unit per channel (AIA DN/s, HMI G)
        per_channel = [pd.Series(column).dropna().unique() for column in coords["units"][1].T]
        if all(len(u) <= 1 for u in per_channel):
            coords["units"] = ("channel", np.array([u[0] if len(u) else None for u in per_channel], dtype=object))
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name="frames")


#: ``PIXLUNIT`` values → the units of the pixel values (HMI writes "Gauss").
UNIT_NAMES = {"gauss": "G"}


def _units(header_table: pd.DataFrame) -> pd.Series:
    if "PIXLUNIT" not in header_table.columns:
        return pd.Series([None] * len(header_table), index=header_table.index, dtype=object)
    units = header_table["PIXLUNIT"].astype(object)
    return units.map(lambda u: UNIT_NAMES.get(str(u).lower(), u) if isinstance(u, str) else None)


def write_zarr(data, path, progress: bool = False, rows_per_chunk: int = 16) -> Path:
    """Write an ``xarray.DataArray`` or ``Dataset`` (numpy- or dask-backed, e.g. from
    :func:`to_xarray` or :func:`frames_data_array`) as a Zarr v2 store that
    ``xarray.open_zarr(path)`` reads back as it was: dimension names, coordinates,
    attributes (``units``) and consolidated metadata, as xarray writes them.

    Variables are chunked ``rows_per_chunk`` along their first dimension and whole along
    the others (Blosc zstd + bitshuffle, like SDOML); dask-backed variables are computed
    in batches of about :data:`BATCH_BYTES` (a tqdm bar with ``progress``), so a fetch
    larger than memory streams to disk.  Written by the rule of :func:`written_atomically`.
    Returns ``path``.
    """
    path = Path(path)
    with written_atomically(path) as partial:
        _store_zarr(data, partial, progress, rows_per_chunk)
    return path


def _store_zarr(data, path: Path, progress: bool, rows_per_chunk: int) -> None:
    import dask.array as da
    import numcodecs
    import xarray as xr
    import zarr

    dataset = data.to_dataset() if isinstance(data, xr.DataArray) else data
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    lazy, encoding, template = [], {}, dataset.copy()
    for name, variable in dataset.data_vars.items():
        chunks = (min(max(variable.shape[0], 1), rows_per_chunk),) + tuple(variable.shape[1:]) if variable.ndim else ()
        encoding[name] = {"chunks": chunks, "compressors": (compressor,)}
        if variable.ndim and isinstance(variable.data, da.Array):
            lazy.append(name)  # its values are written below, in batches
            template[name] = variable.copy(data=da.zeros(variable.shape, dtype=variable.dtype, chunks=chunks))
    template.to_zarr(str(path), mode="w", zarr_format=2, compute=False, encoding=encoding, consolidated=True)
    group = zarr.open_group(str(path), mode="r+", zarr_format=2)
    for name in lazy:
        target = group[name]
        for start, values in compute_batches(dataset[name].data, progress=progress):
            target[start:start + len(values)] = values


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
        return np.datetime64("NaT", np.datetime_data(values.dtype)[0])  # a unit-less NaT is deprecated
    return None


OUTPUT_FORMATS = ("npy", "zarr", "fits")


BATCH_BYTES = 512 * 2**20


FITS_STRUCTURAL_KEYS = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "XTENSION",
                        "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM"}


def output_format(output, format: str | None = None, missing: str | None = None) -> str:
    """``npy``, ``zarr`` or ``fits`` from an explicit format or the output's suffix (checked
    against ``missing``: FITS cannot hold NaN frames).  Raises :class:`FetchError`."""
    kind = _output_kind(output, format)
    if kind == "fits" and missing == "nan":
        raise FetchError("FITS output writes one file per frame: use missing='drop' or 'raise'")
    return kind


def _output_kind(output, format: str | None) -> str:
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
    """Fetch and write the frames: ``.npy``, ``.zarr`` (what :func:`to_xarray` holds, by
    :func:`write_zarr`: ``xarray.open_zarr`` reads dims, coordinates and units), each
    with ``<name>.headers.parquet`` beside it (every selected row's locator and catalog
    header), or a directory of FITS files (one per frame, headers included).  Returns the
    paths written."""
    output = Path(output)
    kind = output_format(output, format, missing)
    if kind == "fits":
        with written_atomically(output) as partial:
            written = _write_fits(selection, partial, downsample, method, missing, progress)
        return [output / path.name for path in written]
    array, grid, _ = build_stack(selection, downsample, method, missing)
    sidecar = output.with_name(output.stem + ".headers.parquet")
    table = headers_table(selection.catalog, grid.table)
    with written_atomically(output) as partial, written_atomically(sidecar) as partial_sidecar:
        if kind == "zarr":
            attrs = {"downsample": downsample, "method": method, "missing": missing, "headers": sidecar.name}
            data = frames_data_array(array, grid, essential_headers(table), attrs)
            _store_zarr(data, partial, progress, ZARR_ROWS_PER_CHUNK)
        else:
            _write_npy(array, partial, progress)
        table.to_parquet(partial_sidecar, index=False)
    return [output, sidecar]


ZARR_ROWS_PER_CHUNK = 16


def _write_npy(array, path: Path, progress: bool) -> None:
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=array.shape)
    for start, values in compute_batches(array, progress=progress):
        target[start:start + len(values)] = values
    target.flush()
    del target


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


def _write_fits(selection, directory, downsample: int, method: str, missing: str, progress: bool) -> list:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for i, locator, frame, meta in fits_frames(selection, downsample, method, missing, progress):
        written.append(write_fits_file(directory / default_fits_name(i, locator, meta), frame, meta))
    return written


def fits_frames(selection, downsample: int = 1, method: str = "stride", missing: str = "raise",
                progress: bool = False):
    """Yield ``(row, locator, pixels, header)`` per selected frame, the header fit for SunPy
    (:func:`~sdoml_sql.fetch.headers.map_header`).  Frames are read chunk-aware in batches
    (:func:`compute_batches`): each chunk once for the whole selection."""
    if missing == "nan":
        raise FetchError("FITS output writes one file per frame: use missing='drop' or 'raise'")
    flat = FlatSelection(selection.catalog, selection_locators(selection))
    array, grid, _ = build_stack(flat, downsample, method, missing)
    raw, rows, keys = header_records(selection.catalog, grid.table)
    for start, values in compute_batches(array, progress=progress):
        for offset, frame in enumerate(values):
            i = start + offset
            locator = grid.table.iloc[i]
            meta = map_header(raw[i], rows[i], keys[i], downsample, method)
            if locator["instrument"] == "hmi" and str(meta.get("DETECTOR", "HMI")).strip().upper() == "HMI":
                # SunPy's map name: "HMI Bz magnetic", not "HMI magnetic"
                meta["DETECTOR"] = f"HMI {locator['channel']}"
            yield i, locator, frame, meta


def default_fits_name(i: int, locator, meta: dict[str, Any]) -> str:
    """``00003_aia_171A_20100827T000009.fits``: row, instrument, channel, T_OBS."""
    stamp = str(meta.get("T_OBS", "")).replace(":", "").replace("-", "")[:15] or "notime"
    return f"{i:05d}_{locator['instrument']}_{locator['channel']}_{stamp}.fits"


def fits_header(meta: dict[str, Any]):
    """An ``astropy.io.fits.Header`` of a header dict: structural keys left to astropy,
    COMMENT/HISTORY as cards, values FITS cannot hold (lists, None) left out."""
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
    return header


def write_fits_file(path, frame: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write one frame and its header to ``path`` (under a temporary name, renamed when
    complete); return ``path``."""
    path = Path(path)
    with written_atomically(path) as partial:
        write_fits(partial, frame, meta)
    return path


def write_fits(target, frame: np.ndarray, meta: dict[str, Any]) -> None:
    """Write one frame and its header as a FITS file to ``target``, a path or a binary file
    object (what :func:`write_fits_file` and the web server's FITS downloads write)."""
    import warnings

    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        # The cards were checked as they were made (fits_header); skip the second verify pass.
        fits.PrimaryHDU(frame, header=fits_header(meta)).writeto(target, output_verify="ignore")
