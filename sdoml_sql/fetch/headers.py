"""FITS headers rebuilt from the catalog's Parquet rows.

A header is rebuilt from the frame's catalog row and the manifest's key info: keys in source
order, integers as ``int``, floats as ``float``, time keys as their original strings
(``<KEY>_STR``), and NULLs of keys marked ``nan_strings`` back to the string ``'nan'`` — the
same dict as the seed notebook's ``{k: v[i] for k, v in attrs.items()}``.

:func:`map_header` then fixes what SunPy needs for a good map: drops ``'nan'``/null values,
adds HMI's missing ``WAVEUNIT``, gives TAI time strings (HMI ``T_OBS``) as UTC ISO, and
rescales the WCS of downsampled frames.

In: a catalog (``.directory``, ``.manifest``) and locators.  Out: pandas rows and header dicts.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.catalog_builder.layout import (
    ARRAY_ATTRS,
    TIME_SUFFIX,
    Manifest,
    channel_glob,
    partition_file,
    partition_key,
    per_array_key,
)
from sdoml_sql.catalog_builder.location import location_of
from sdoml_sql.exceptions import MAX_NAMED_ROWS, FetchError


def frame_headers(catalog, locators: pd.DataFrame) -> pd.DataFrame:
    """The catalog rows of the given locators, in locator order (all header columns).

    Rows without a frame give a row of nulls.  Reads only the partitions involved, and
    only the rows whose ``idx`` is asked for.
    """
    locators = locators.reset_index(drop=True)
    pieces, orders = [], []
    # rows are placed by position, never by set_index/merge/drop: the header frames have ~200
    # nullable columns, one pandas block each, and every column deletion walks all of them
    for (instrument, year, channel), group in locators[locators["idx"].notna()].groupby(
            ["instrument", "year", "channel"], sort=False):
        wanted = group["idx"].astype("int64").to_numpy()
        rows = read_partition_rows(catalog, str(instrument), int(year), str(channel), wanted.tolist())
        at = pd.Index(rows["idx"].to_numpy()).get_indexer(wanted)
        pieces.append(rows.iloc[at, [i for i, name in enumerate(rows.columns) if name != "idx"]])
        orders.append(group.index.to_numpy())
    if not pieces:
        return pd.DataFrame(index=range(len(locators)))
    table = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0].reset_index(drop=True)
    order = np.concatenate(orders)
    if len(order) == len(locators) and (order == np.arange(len(order))).all():
        return table
    table.index = order
    return table.reindex(range(len(locators))).reset_index(drop=True)


def read_partition_rows(catalog, instrument: str, year: int, channel: str, idx: list[int]) -> pd.DataFrame:
    """Rows ``idx`` of one partition's Parquet file(s), as pandas (idx plus every header column)."""
    return partition_rows(catalog, instrument, year, channel, idx).to_pandas(types_mapper=_nullable_types)


def partition_rows(catalog, instrument: str, year: int, channel: str, idx: list[int]):
    """Rows ``idx`` of one partition's Parquet file(s), as an Arrow table (idx plus every
    header column, file order)."""
    import pyarrow.compute as pc

    location, relative, version = _partition_file(catalog, instrument, year, channel)
    wanted = sorted(set(idx))
    if len(wanted) <= FEW_ROWS:
        table = _rows_by_position(location, relative, _file_key(location, relative, version), wanted)
    else:
        table = location.parquet_dataset([relative]).to_table(filter=pc.field("idx").isin(wanted))
    _check_found(instrument, year, channel, wanted, table.column("idx").to_pylist())
    return table


def partition_row_dicts(catalog, instrument: str, year: int, channel: str, idx: list[int]) -> dict[int, dict]:
    """Rows ``idx`` of one partition as ``{idx: {column: value}}`` (every header column; each
    call gives fresh dicts).  A few rows are kept once converted: a map, a thumbnail or a frame
    page asks for the same rows again."""
    wanted = sorted(set(idx))
    if len(wanted) > FEW_ROWS:
        return _dicts_by_idx(partition_rows(catalog, instrument, year, channel, wanted))
    location, relative, version = _partition_file(catalog, instrument, year, channel)
    key = _file_key(location, relative, version)
    with _row_group_lock:
        found = {i: _row_dicts[key, i] for i in wanted if (key, i) in _row_dicts}
    missing = [i for i in wanted if i not in found]
    if missing:
        table = _rows_by_position(location, relative, key, missing)
        _check_found(instrument, year, channel, missing, table.column("idx").to_pylist())
        converted = _dicts_by_idx(table)
        with _row_group_lock:
            for i, row in converted.items():
                _row_dicts[key, i] = row
            while len(_row_dicts) > ROW_DICTS_KEPT:
                _row_dicts.popitem(last=False)
        found.update(converted)
    return {i: dict(found[i]) for i in wanted}


def _dicts_by_idx(table) -> dict[int, dict]:
    """A table of header rows as ``{idx: {column: value}}``."""
    return dict(zip(table.column("idx").to_pylist(), table.drop_columns(["idx"]).to_pylist()))


def _partition_file(catalog, instrument: str, year: int, channel: str):
    """A partition's catalog location, its Parquet file (relative) and its manifest identity."""
    entry = Manifest.of(catalog.manifest).partition(instrument, year, channel)
    if entry is None:
        raise FetchError(f"catalog {catalog.directory} has no rows for {instrument} {year}/{channel}")
    location = location_of(catalog)
    version = (location.path(), entry.get("fingerprint"), entry.get("built_at"), entry.get("schema"))
    return location, partition_file(partition_key(instrument, year, channel), entry), version


def _check_found(instrument: str, year: int, channel: str, wanted: list[int], found: list[int]) -> None:
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise FetchError(f"catalog has no row for {instrument} {year}/{channel} idx "
                         f"{', '.join(map(str, missing[:MAX_NAMED_ROWS]))}")


#: Up to this many rows, a partition's rows are found by their ``idx`` column first and only
#: their row groups decoded (a filter decodes every column of every row group: rows are in
#: T_OBS order, so ``idx`` statistics prune nothing). One frame of a 20,000-row partition:
#: ~80-230 ms instead of ~300-700 ms (load ~16).
FEW_ROWS = 64

#: Decoded row groups (and each file's ``idx`` column) kept for later look-ups, up to this
#: many bytes (Arrow sizes), least recently used dropped first.  Decoding a row group of ~180
#: columns costs ~25-40 ms for 480 rows and ~100-300 ms for 8,192 (load 3-5; long strings such
#: as ``COMMENT`` and ``CHECKSUM`` take most of it, whatever the number of rows wanted), and
#: maps, thumbnails and frame pages mostly ask for rows near those asked for before.
ROW_GROUP_CACHE_BYTES = 256 * 2**20
#: Rows kept as Python dicts (:func:`partition_row_dicts`), least recently stored dropped first.
ROW_DICTS_KEPT = 4096

_row_groups: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
_row_dicts: OrderedDict[tuple, dict] = OrderedDict()
_row_group_lock = threading.Lock()


def _file_key(location, relative: str, version: tuple) -> tuple:
    """The cache identity of a partition file: the manifest's, and a local file's own (a local
    file replaced under the same manifest is read anew; a remote catalog's frame files are never
    rewritten under one name)."""
    if location.remote:
        return version, relative, None
    path = str(location.directory / relative)
    return version, path, _file_identity(path)


def _rows_by_position(location, relative: str, key: tuple, wanted: list[int]):
    """The rows whose ``idx`` is in ``wanted`` (sorted), in file order, decoding only the row
    groups that hold them (cached under ``key``, the file's :func:`_file_key`)."""
    import pyarrow as pa

    groups, schema, idx, starts = _cached(key + ("idx",), lambda: _file_index(location, relative))
    positions = np.flatnonzero(np.isin(idx, wanted))
    pieces = []
    for g in np.unique(np.searchsorted(starts, positions, side="right") - 1):
        rows = positions[(positions >= starts[g]) & (positions < starts[g + 1])] - starts[g]
        group = _cached(key + (int(g),), lambda g=g: groups[g].to_table(schema=schema))
        pieces.append(group.take(rows))
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def _file_identity(path: str) -> tuple[int, int, int] | None:
    """A local file's inode, size and modification time (None if it cannot be read)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _file_index(location, relative: str):
    """A partition file's row groups (as fragments), its schema, its ``idx`` column and the first
    row of each row group (plus its end)."""
    dataset = location.parquet_dataset([relative])
    fragment = next(iter(dataset.get_fragments()))
    groups = fragment.split_by_row_group()
    idx = fragment.to_table(columns=["idx"], schema=dataset.schema).column("idx").to_numpy(zero_copy_only=False)
    starts = np.cumsum([0] + [group.row_groups[0].num_rows for group in groups])
    return groups, dataset.schema, idx, starts


def _cached(key: tuple, make):
    """``make()``, kept under ``key`` in the row-group cache."""
    with _row_group_lock:
        if key in _row_groups:
            _row_groups.move_to_end(key)
            return _row_groups[key][0]
    value = make()
    size = sum(getattr(part, "nbytes", 0) for part in (value if isinstance(value, tuple) else (value,)))
    with _row_group_lock:
        _row_groups[key] = (value, size)
        while len(_row_groups) > 1 and sum(kept for _, kept in _row_groups.values()) > ROW_GROUP_CACHE_BYTES:
            _row_groups.popitem(last=False)
    return value


def clear_row_group_cache() -> None:
    """Forget every decoded row group (benchmarks time cold look-ups with it)."""
    with _row_group_lock:
        _row_groups.clear()
        _row_dicts.clear()


def channel_time_range(catalog, instrument: str, channel: str) -> tuple[Any, Any]:
    """The first and last ``T_OBS`` of a channel over every catalogued year (``None``s when
    the catalog has none)."""
    return column_range(catalog, f"{channel_glob(instrument, channel)}/*.parquet", "T_OBS")


def column_range(catalog, files: str, column: str) -> tuple[Any, Any]:
    """The smallest and largest value of ``column`` in the catalog's Parquet ``files`` (a
    glob under the catalog directory or URL); ``None``s when there are none."""
    import pyarrow.compute as pc

    location = location_of(catalog)
    paths = location.glob(files)
    if not paths:
        return None, None
    bounds = pc.min_max(location.parquet_dataset(paths).to_table(columns=[column]).column(column)).as_py()
    return bounds["min"], bounds["max"]


def _nullable_types(arrow_type):
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    return None


def headers_table(catalog, table: pd.DataFrame) -> pd.DataFrame:
    """Locators plus the catalog's header columns, one row per locator (Parquet-friendly)."""
    extra = frame_headers(catalog, table)
    extra = extra.drop(columns=[c for c in extra.columns if c in table.columns])
    combined = pd.concat([table.reset_index(drop=True), extra], axis=1)
    null_columns = [c for c in combined.columns if combined[c].isna().all() and combined[c].dtype == object]
    return combined.astype({c: "string" for c in null_columns})


def partition_keys(catalog, instrument: str, year: int, channel: str) -> dict[str, dict[str, Any]]:
    """The manifest's ``keys`` info of one partition (source order)."""
    partition = Manifest.of(catalog.manifest).partition(instrument, year, channel)
    if partition is None:
        raise FetchError(f"catalog {catalog.directory} has no partition {partition_key(instrument, year, channel)} "
                         "in manifest.json")
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
    partition = Manifest.of(catalog.manifest).partition(instrument, year, channel) or {}
    if not partition.get("ragged_keys"):
        return {}
    location = location_of(catalog)
    files = location.glob(f"{per_array_key(ARRAY_ATTRS, instrument, year, channel)}/*.parquet")
    if not files:
        return {}
    table = location.parquet_dataset(files).to_table(columns=["key", "n_values", "values"]).to_pylist()
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
    (``None`` entries for rows without a frame).

    Catalog rows are plain dicts straight from Arrow (no pandas frame: a one-frame map would
    spend most of its time converting ~180 columns).
    """
    located = list(zip(locators["instrument"], locators["year"], locators["channel"], locators["idx"]))
    wanted: dict[tuple, list[int]] = {}
    for instrument, year, channel, idx in located:
        if not pd.isna(idx):
            wanted.setdefault((str(instrument), int(year), str(channel)), []).append(int(idx))
    found: dict[tuple, tuple[dict, dict, dict]] = {}
    for where, idx in wanted.items():
        found[where] = (partition_row_dicts(catalog, *where, idx), partition_keys(catalog, *where),
                        per_frame_array_attrs(catalog, *where))
    raw, rows, keys = [], [], []
    for instrument, year, channel, idx in located:
        if pd.isna(idx):
            raw.append(None), rows.append(None), keys.append(None)
            continue
        by_idx, key_info, extra_lists = found[(str(instrument), int(year), str(channel))]
        row = by_idx[int(idx)]
        extra = {key: values[int(idx)] for key, values in extra_lists.items()}
        raw.append(rebuild_header(row, key_info, extra))
        rows.append(row)
        keys.append(key_info)
    return raw, rows, keys


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


def downsampled_size(size: int, factor: int, method: str) -> int:
    """The length of an image axis of ``size`` pixels downsampled by ``factor``: ``stride``
    keeps pixels 0, f, 2f … (rounding up), ``mean`` whole f-pixel blocks (rounding down)."""
    return -(-size // factor) if method == "stride" else size // factor


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
            meta[f"NAXIS{axis}"] = downsampled_size(size, factor, method)
    return meta
