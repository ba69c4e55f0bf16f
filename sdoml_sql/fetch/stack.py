"""Selected catalog rows → frames to read: the frame grid, its chunk layout, and the stack.

A selection's locators become a :class:`FrameGrid` (one row per output row or grid time, one
column per channel; rows without a frame raise, become NaN or are dropped).  Its frames are
grouped into chunk *reads* (every distinct Zarr chunk touched is read once, keeping only the
frames needed) and row *segments* (maximal runs of rows taking their frames from one chunk
per channel column): the :class:`Layout`.  :func:`build_stack` turns both into a lazy dask
array (:mod:`sdoml_sql.fetch.graph`); :func:`read_stack` reads them now into one array
(:mod:`sdoml_sql.fetch.assemble`); :mod:`sdoml_sql.fetch.plans` counts what they read.

Everything here is duck-typed: a *selection* is anything with ``.locators()`` (a pandas
DataFrame with ``instrument``, ``year``, ``channel``, ``idx`` and, for aligned selections,
``row`` and ``time``) and ``.catalog`` (with ``.source(instrument)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from sdoml_sql.catalog_builder.layout import LOCATOR_COLUMNS, Manifest, parse_partition_key
from sdoml_sql.exceptions import MAX_NAMED_ROWS, FetchError
from sdoml_sql.fetch.assemble import read_frames
from sdoml_sql.fetch.headers import channel_time_range, downsampled_size

MISSING_MODES = ("raise", "nan", "drop")
DOWNSAMPLE_METHODS = ("stride", "mean")


# --- locators → a (rows × columns) grid of frames ---------------------------------------

@dataclass(frozen=True)
class ArrayRef:
    """One source array: ``catalog.source(instrument).array(f"{year}/{channel}")``."""

    instrument: str
    year: int
    channel: str

    @property
    def path(self) -> str:
        return f"{self.year}/{self.channel}"

    def __str__(self) -> str:
        return f"{self.instrument} {self.path}"


@dataclass
class FrameGrid:
    """The frames to fetch as a grid: one row per output row (or grid time), one column per
    channel (a single column for plain frame selections).

    ``array_ids[r, c]`` indexes :attr:`arrays` (-1 where the row has no frame) and
    ``idx[r, c]`` is the frame's position in that array.  ``table`` holds the locator rows
    kept, in output order (long form for aligned grids).
    """

    arrays: list[ArrayRef]
    array_ids: np.ndarray
    idx: np.ndarray
    aligned: bool
    table: pd.DataFrame
    times: pd.Index | None = None
    columns: list[str] = field(default_factory=lambda: ["frame"])

    @property
    def missing(self) -> np.ndarray:
        return self.array_ids < 0


def selection_locators(selection) -> pd.DataFrame:
    """The selection's locators, checked for the columns the fetch layer needs."""
    locators = selection.locators() if hasattr(selection, "locators") else selection
    absent = [c for c in LOCATOR_COLUMNS if c not in locators.columns]
    if absent:
        raise FetchError(f"selection has no frame locators: columns {', '.join(absent)} missing "
                         "(select from aia/hmi frames, or an aligned grid)")
    locators = locators.reset_index(drop=True)
    if "time" not in locators.columns and hasattr(selection, "to_arrow"):
        table = selection.to_arrow()
        if "time" in table.column_names and table.num_rows == len(locators):
            # grid times name missing rows (the first "time": a joined table's comes later)
            locators["time"] = table.column(table.column_names.index("time")).to_pandas()
    return locators


def is_aligned(selection, locators: pd.DataFrame) -> bool:
    """Whether a selection is an aligned grid (long form with ``row`` and ``time``)."""
    kind = getattr(selection, "kind", None)
    return kind == "aligned" or (kind is None and {"row", "time"} <= set(locators.columns))


def frame_grid(selection, missing: str = "raise") -> FrameGrid:
    """Lay the selection's frames out as a :class:`FrameGrid` and apply the ``missing`` mode."""
    if missing not in MISSING_MODES:
        raise FetchError(f"missing={missing!r}: choose one of {', '.join(MISSING_MODES)}")
    locators = selection_locators(selection)
    grid = _aligned_grid(locators) if is_aligned(selection, locators) else _flat_grid(locators)
    if not grid.array_ids.shape[0] or (grid.missing.all() and missing != "nan"):
        raise FetchError(_nothing_message(selection, grid))
    return _apply_missing(grid, missing)


def _nothing_message(selection, grid: FrameGrid) -> str:
    """Why a selection gives no frame at all: no rows, or no row with a frame (naming the
    grid's time range and what the catalog covers of its channels)."""
    if not grid.array_ids.shape[0]:
        hints = "".join(f"; {h}" for h in getattr(selection, "hints", []))
        return f"nothing to fetch: the query selected no rows{hints}"
    table = grid.table
    what = "grid times" if grid.aligned or "time" in table.columns else "selection rows"
    span = ""
    if "time" in table.columns and table["time"].notna().any():
        times = pd.to_datetime(table["time"])
        span = f" from {times.min()} to {times.max()}"
    covered = [f"{instrument} {channel} {_time_span(selection.catalog, instrument, channel)}"
               for instrument, channel in dict.fromkeys(zip(table["instrument"], table["channel"]))]
    return (f"no frames: none of the {grid.array_ids.shape[0]} {what}{span} has a frame within tolerance; "
            f"the catalog has {'; '.join(covered)}")


def _time_span(catalog, instrument: str, channel: str) -> str:
    first, last = channel_time_range(catalog, str(instrument), str(channel))
    return f"from {first} to {last}" if first is not None else "no frames"


def _array_ids(locators: pd.DataFrame) -> tuple[list[ArrayRef], np.ndarray]:
    present = locators["idx"].notna().to_numpy()
    refs = [ArrayRef(str(i), int(y), str(c)) if ok else None
            for i, y, c, ok in zip(locators["instrument"], locators["year"], locators["channel"], present)]
    arrays = list(dict.fromkeys(r for r in refs if r is not None))
    number = {ref: n for n, ref in enumerate(arrays)}
    return arrays, np.array([number[r] if r is not None else -1 for r in refs], dtype=np.int64)


def _idx_values(locators: pd.DataFrame) -> np.ndarray:
    return locators["idx"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)


def _flat_grid(locators: pd.DataFrame) -> FrameGrid:
    arrays, ids = _array_ids(locators)
    return FrameGrid(arrays, ids[:, None], _idx_values(locators)[:, None], False, locators)


def _aligned_grid(locators: pd.DataFrame) -> FrameGrid:
    arrays, ids = _array_ids(locators)
    rows = pd.Index(pd.unique(locators["row"]))
    columns = list(dict.fromkeys(zip(locators["instrument"].astype(str), locators["channel"].astype(str))))
    r = rows.get_indexer(locators["row"])
    c = np.array([columns.index(key) for key in zip(locators["instrument"].astype(str),
                                                    locators["channel"].astype(str))], dtype=np.int64)
    if pd.Series(r * len(columns) + c).duplicated().any():
        raise FetchError("aligned selection has two frames for one (grid time, channel) cell")
    array_ids = np.full((len(rows), len(columns)), -1, dtype=np.int64)
    idx = np.full(array_ids.shape, -1, dtype=np.int64)
    array_ids[r, c], idx[r, c] = ids, _idx_values(locators)
    times = pd.Index(locators.groupby(r, sort=True)["time"].first().to_numpy(), name="time")
    return FrameGrid(arrays, array_ids, idx, True, locators, times, [ch for _, ch in columns])


def _apply_missing(grid: FrameGrid, missing: str) -> FrameGrid:
    absent = grid.missing.any(axis=1)
    if not absent.any() or missing == "nan":
        return grid
    if missing == "raise":
        raise FetchError(_missing_message(grid, absent))
    keep = ~absent
    table = grid.table
    if grid.aligned:
        kept_rows = set(pd.unique(table["row"])[keep]) if len(table) else set()
        table = table[table["row"].isin(kept_rows)].reset_index(drop=True)
        times = grid.times[keep]
    else:
        table, times = table[keep].reset_index(drop=True), None
    return FrameGrid(grid.arrays, grid.array_ids[keep], grid.idx[keep], grid.aligned, table, times, grid.columns)


def _missing_message(grid: FrameGrid, absent: np.ndarray) -> str:
    rows = np.flatnonzero(absent)
    named = [_describe_missing_row(grid, r) for r in rows[:MAX_NAMED_ROWS]]
    more = f" and {len(rows) - MAX_NAMED_ROWS} more" if len(rows) > MAX_NAMED_ROWS else ""
    what = "grid times" if grid.aligned else "selection rows"
    what, verb = (what[:-1], "has") if len(rows) == 1 else (what, "have")
    return (f"{len(rows)} {what} {verb} no frame (no match from nearest): {'; '.join(named)}{more}; "
            "pass missing='nan' to fill NaN frames or missing='drop' to drop them")


def _describe_missing_row(grid: FrameGrid, r: int) -> str:
    if grid.aligned:
        channels = [grid.columns[c] for c in np.flatnonzero(grid.missing[r])]
        return f"{pd.Timestamp(grid.times[r])} ({', '.join(channels)})"
    row = grid.table.iloc[r]
    when = f" at {pd.Timestamp(row['time'])}" if "time" in grid.table.columns else ""
    return f"row {r} ({row['instrument']} {row['channel']}{when})"


# --- the chunk layout ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkRead:
    """The frames needed from one Zarr chunk: ``array[lo:hi][offsets]``."""

    array_id: int
    chunk: int
    lo: int
    hi: int
    wanted: tuple[int, ...]


@dataclass
class Layout:
    """How a grid maps onto chunk reads and output blocks (no data read)."""

    reads: list[ChunkRead]
    segments: list[tuple[int, int]]
    block_reads: dict[tuple[int, int], int]
    shape: tuple[int, int]
    chunk_shapes: list[tuple[int, ...]]
    itemsizes: list[int]
    zarrays: list[Any] = field(default_factory=list)  #: the opened arrays, as ``grid.arrays``


def open_arrays(catalog, arrays: list[ArrayRef]) -> list[Any]:
    """The Zarr arrays ``arrays`` names, opened through the catalog's stores (one line naming
    the array when one cannot be opened)."""
    opened = []
    for ref in arrays:
        try:
            opened.append(catalog.source(ref.instrument).array(ref.path))
        except Exception as error:  # named in one line below
            raise FetchError(f"cannot open array {ref}: {error}") from None
    return opened


def check_frames(grid: FrameGrid, zarrays: list[Any]) -> None:
    """Raise a one-line :class:`FetchError` when the grid asks for an idx past an array's end
    (naming the array and the idx) or its arrays' frames differ in size."""
    for n, (ref, array) in enumerate(zip(grid.arrays, zarrays)):
        sel = grid.array_ids == n
        bad = (grid.idx[sel] < 0) | (grid.idx[sel] >= array.shape[0])
        if bad.any():
            raise FetchError(f"{ref} has {array.shape[0]} frames; selection asks for idx "
                             f"{', '.join(map(str, grid.idx[sel][bad][:MAX_NAMED_ROWS]))}")
    shapes = {tuple(a.shape[1:]) for a in zarrays}
    if len(shapes) > 1:
        raise FetchError(f"frames of different sizes cannot be stacked: {sorted(shapes)} "
                         f"from {', '.join(map(str, grid.arrays))}")


def _store_frame_shape(catalog, locators: pd.DataFrame) -> tuple[int, int]:
    """The (H, W) of the frames of the locators' channels, from one of their arrays."""
    arrays = [parse_partition_key(key) for key in Manifest.of(catalog.manifest).frame_partitions()]
    for instrument, channel in dict.fromkeys(zip(locators["instrument"].astype(str), locators["channel"].astype(str))):
        for found_instrument, year, found_channel in filter(None, arrays):
            if (found_instrument, found_channel) == (instrument, channel):
                ref = ArrayRef(instrument, year, channel)
                return tuple(open_arrays(catalog, [ref])[0].shape[1:])
    raise FetchError(f"catalog {catalog.directory} has no array of "
                     f"{', '.join(sorted(set(locators['channel'].astype(str))))}: the frame size is unknown")


def plan_layout(grid: FrameGrid, zarrays: list[Any]) -> Layout:
    """Group the grid's frames into chunk reads and row segments."""
    check_frames(grid, zarrays)
    chunk_t = np.array([a.chunks[0] for a in zarrays] or [1], dtype=np.int64)
    chunk_of = np.where(grid.missing, -1, grid.idx // chunk_t[np.maximum(grid.array_ids, 0)])
    segments = _segments(grid.array_ids, chunk_of)
    reads, read_number = _reads(grid, chunk_of, chunk_t)
    block_reads = {}
    for s, (start, stop) in enumerate(segments):
        for c in range(grid.array_ids.shape[1]):
            ids = grid.array_ids[start:stop, c]
            present = ids >= 0
            if present.any():
                first = np.flatnonzero(present)[0] + start
                block_reads[s, c] = read_number[grid.array_ids[first, c], chunk_of[first, c]]
    shape = tuple(zarrays[0].shape[1:]) if zarrays else (0, 0)
    return Layout(reads, segments, block_reads, shape,
                  [tuple(a.chunks) for a in zarrays], [a.dtype.itemsize for a in zarrays], list(zarrays))


def _segments(array_ids: np.ndarray, chunk_of: np.ndarray) -> list[tuple[int, int]]:
    """Maximal row runs in which each column takes its frames from a single chunk."""
    segments, start = [], 0
    current: list[tuple[int, int] | None] = [None] * array_ids.shape[1]
    for r in range(array_ids.shape[0]):
        row = [(int(a), int(k)) if a >= 0 else None for a, k in zip(array_ids[r], chunk_of[r])]
        clash = any(new is not None and old is not None and new != old for new, old in zip(row, current))
        if clash:
            segments.append((start, r))
            start, current = r, [None] * len(row)
        current = [new if new is not None else old for new, old in zip(row, current)]
    if array_ids.shape[0]:
        segments.append((start, array_ids.shape[0]))
    return segments


def _reads(grid: FrameGrid, chunk_of: np.ndarray, chunk_t: np.ndarray):
    present = ~grid.missing
    frames = np.unique(np.stack([grid.array_ids[present], chunk_of[present], grid.idx[present]], axis=1), axis=0)
    reads, number = [], {}
    starts = np.flatnonzero(np.r_[True, (np.diff(frames[:, :2], axis=0) != 0).any(axis=1)]) if len(frames) else []
    for start, stop in zip(list(starts), [*list(starts[1:]), len(frames)]):
        array_id, chunk, lo = (int(v) for v in frames[start])
        wanted = frames[start:stop, 2]
        number[array_id, chunk] = len(reads)
        reads.append(ChunkRead(array_id, chunk, lo, int(wanted[-1]) + 1, tuple((wanted - lo).tolist())))
    return reads, number


def output_shape(shape: tuple[int, int], downsample: int, method: str) -> tuple[int, int]:
    """The (H, W) of a frame of ``shape`` after downsampling."""
    return downsampled_size(shape[0], downsample, method), downsampled_size(shape[1], downsample, method)


def check_downsample(shape: tuple[int, int], downsample: int, method: str) -> None:
    """Refuse, in one line, a ``downsample`` factor or ``method`` that cannot apply to frames of ``shape``."""
    if method not in DOWNSAMPLE_METHODS:
        raise FetchError(f"method={method!r}: choose one of {', '.join(DOWNSAMPLE_METHODS)}")
    if not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise FetchError(f"downsample={downsample!r}: give a positive integer factor")
    if method == "mean" and (shape[0] % downsample or shape[1] % downsample):
        raise FetchError(f"downsample={downsample} with method='mean' needs frames whose size "
                         f"divides by it; frames are {shape[0]}x{shape[1]}")


# --- public API --------------------------------------------------------------------------

def fetch(selection, downsample: int = 1, method: str = "stride", missing: str = "raise"):
    """The selection's frames as a lazy float32 dask array, in the selection's row order.

    Frame selections give ``(n, H, W)``; aligned selections give ``(time, channel, H, W)``.
    ``downsample=f`` keeps every f-th pixel (``method="stride"``, as ``[::f, ::f]``) or
    averages f×f blocks (``method="mean"``).  Rows without a frame (misses of ``nearest``)
    raise :class:`FetchError` naming them (``missing="raise"``), become NaN frames
    (``"nan"``) or are dropped (``"drop"``; for aligned grids, the whole grid time).

    Each Zarr chunk touched is read once per ``compute()``; the graph has one task per run
    of rows sharing a chunk (plus one per chunk shared by separated runs).  ``compute()`` of
    the whole array on the local scheduler reads straight into one output instead of running
    the graph (same reads, same pixels; see :mod:`sdoml_sql.fetch.graph`).
    """
    return build_stack(selection, downsample, method, missing).array


class Stack(NamedTuple):
    """A selection made ready to read: what :func:`build_stack` returns."""

    array: Any  #: the lazy float32 dask array, in the selection's row order
    grid: FrameGrid  #: the frames as a (rows × channels) grid of arrays and ``idx``
    layout: Layout  #: the chunk reads and row segments the array's tasks perform


def build_stack(selection, downsample: int, method: str, missing: str) -> Stack:
    """The fetch stage's entry point: a selection's locators → frame grid → chunk layout →
    dask graph, checked before anything is read.

    Every reader of pixels starts here (:func:`fetch`, :func:`plan`, ``to_xarray``, files,
    maps, movies, FITS): ``missing`` decides rows without a frame (``raise``, ``nan``,
    ``drop``), ``downsample``/``method`` the output frame size.  Raises :class:`FetchError`
    naming the rows, arrays or argument at fault.  The :class:`Stack` is a named tuple, so
    ``array, grid, layout = build_stack(…)`` unpacks it."""
    from sdoml_sql.fetch.graph import dask_array

    grid, layout = prepare_stack(selection, downsample, method, missing)
    return Stack(dask_array(grid, layout, downsample, method, output_shape(layout.shape, downsample, method)),
                 grid, layout)


def prepare_stack(selection, downsample: int, method: str, missing: str) -> tuple[FrameGrid, Layout]:
    """What :func:`build_stack` checks and plans, without the dask graph: the frame grid and
    its chunk layout."""
    grid = frame_grid(selection, missing)
    zarrays = open_arrays(selection.catalog, grid.arrays)
    layout = plan_layout(grid, zarrays)
    if not zarrays:  # every row is a NaN frame: the frame size still comes from the store
        layout.shape = _store_frame_shape(selection.catalog, grid.table)
    check_downsample(layout.shape, downsample, method)
    return grid, layout


def read_stack(selection, downsample: int = 1, method: str = "stride",
               missing: str = "raise") -> tuple[np.ndarray, FrameGrid]:
    """The selection's frames read now, as ``fetch(…).compute()`` gives them (without building
    a graph), and their frame grid."""
    grid, layout = prepare_stack(selection, downsample, method, missing)
    height, width = output_shape(layout.shape, downsample, method)
    rows, columns = grid.array_ids.shape
    shape = (rows, columns, height, width) if grid.aligned else (rows, height, width)
    return read_frames(grid, layout, downsample, method, shape), grid


# --- selections seen as plain frame lists -------------------------------------------------

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
