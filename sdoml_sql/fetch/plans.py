"""What a fetch will read, known before reading anything: :func:`plan` and its :class:`FetchPlan`
(chunks read whole or partially, and their bytes), and :func:`chunk_keys`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdoml_sql.fetch.chunkbytes import chunk_key
from sdoml_sql.fetch.frames import partial_read_bytes, uses_partial
from sdoml_sql.fetch.stack import ChunkRead, FrameGrid, build_stack, frame_grid, open_arrays, plan_layout


@dataclass
class FetchPlan:
    """What a fetch will read, known before reading anything.

    ``chunks`` counts every chunk touched: ``whole_chunks`` of them are read and decoded whole,
    the others give ``partial_frames`` frames through partial Blosc reads.  ``read_bytes`` is
    what is decoded (``whole_bytes`` + ``partial_bytes``); ``stored_bytes`` (asked for) is what
    is read from the store: whole chunks' sizes plus the header and block ranges of partial reads.
    """

    rows: int
    missing_rows: int
    arrays: list[str]
    chunks: int
    read_bytes: int
    output_shape: tuple[int, ...]
    output_bytes: int
    tasks: int
    stored_bytes: int | None = None
    per_array: dict[str, int] = field(default_factory=dict)
    whole_chunks: int = 0
    whole_bytes: int = 0
    partial_frames: int = 0
    partial_bytes: int = 0

    def __str__(self) -> str:
        stored = f", {_size(self.stored_bytes)} stored" if self.stored_bytes is not None else ""
        arrays = ", ".join(f"{a} ({n})" for a, n in self.per_array.items())
        partial = self.chunks - self.whole_chunks
        return (f"{self.rows} rows ({self.missing_rows} without frame) → output "
                f"{'×'.join(map(str, self.output_shape))} float32 {_size(self.output_bytes)}; reads "
                f"{self.chunks} chunks: {self.whole_chunks} whole = {_size(self.whole_bytes)} decoded, "
                f"{self.partial_frames} frames from {partial} chunks, partially = {_size(self.partial_bytes)} decoded"
                f"{stored} from {arrays or 'no array'}; {self.tasks} tasks")


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value} B"


def plan(selection, downsample: int = 1, method: str = "stride", missing: str = "raise",
         stored_sizes: bool = False) -> FetchPlan:
    """How many chunks and bytes a fetch of ``selection`` reads, without reading pixels.

    ``read_bytes`` counts decoded bytes: whole chunks, and the frames read partially (see
    :mod:`sdoml_sql.fetch.frames` for which path a chunk takes); ``stored_sizes=True`` also
    counts the bytes read from the store: the sizes of the chunks read whole (one batched
    listing; a HEAD per chunk on object stores) and, for partial reads, their header and
    blocks (one small ranged read per chunk).  ``missing`` works as in :func:`fetch` (same
    default, ``"raise"``); with ``"nan"`` rows without a frame are counted in ``missing_rows``.
    """
    array, grid, layout = build_stack(selection, downsample, method, missing)
    zarrays = layout.zarrays
    per_array: dict[str, int] = {}
    counts = {"whole_chunks": 0, "whole_bytes": 0, "partial_frames": 0, "partial_bytes": 0}
    whole_reads, partial_reads = [], []
    for read in layout.reads:
        label = str(grid.arrays[read.array_id])
        per_array[label] = per_array.get(label, 0) + 1
        zarray = zarrays[read.array_id]
        frame_bytes = int(np.prod(layout.chunk_shapes[read.array_id][1:])) * layout.itemsizes[read.array_id]
        if uses_partial(zarray, _in_chunk(read, zarray)):
            partial_reads.append(read)
            counts["partial_frames"] += len(read.wanted)
            counts["partial_bytes"] += len(read.wanted) * frame_bytes
        else:
            whole_reads.append(read)
            counts["whole_chunks"] += 1
            counts["whole_bytes"] += frame_bytes * int(layout.chunk_shapes[read.array_id][0])
    stored = None
    if stored_sizes:
        stored = _stored_bytes(selection.catalog, grid, whole_reads) + sum(
            partial_read_bytes(zarrays[r.array_id], chunk_key(zarrays[r.array_id], r.chunk),
                               _in_chunk(r, zarrays[r.array_id])) for r in partial_reads)
    return FetchPlan(rows=int(grid.array_ids.size), missing_rows=int(grid.missing.sum()),
                     arrays=[str(a) for a in grid.arrays], chunks=len(layout.reads),
                     read_bytes=counts["whole_bytes"] + counts["partial_bytes"],
                     output_shape=tuple(int(s) for s in array.shape), output_bytes=int(array.nbytes),
                     tasks=len(array.__dask_graph__()), stored_bytes=stored, per_array=per_array, **counts)


def _in_chunk(read: ChunkRead, zarray) -> list[int]:
    """The read's frames as positions inside their chunk."""
    first = read.lo - read.chunk * int(zarray.chunks[0])
    return [first + w for w in read.wanted]


def _stored_bytes(catalog, grid: FrameGrid, reads: list[ChunkRead]) -> int:
    total = 0
    for n, ref in enumerate(grid.arrays):
        source = catalog.source(ref.instrument)
        array = source.array(ref.path)
        paths = [source.path(f"{ref.path}/{chunk_key(array, r.chunk)}") for r in reads if r.array_id == n]
        if paths:
            total += sum(int(s or 0) for s in source.fs.sizes(paths))
    return total


def chunk_keys(selection) -> list[str]:
    """The store keys (``2010/171A/3.0.0``) of the chunks a fetch of ``selection`` reads."""
    grid = frame_grid(selection, "nan")
    zarrays = open_arrays(selection.catalog, grid.arrays)
    layout = plan_layout(grid, zarrays)
    keys = []
    for read in layout.reads:
        array = zarrays[read.array_id]
        keys.append(f"{grid.arrays[read.array_id].path}/{chunk_key(array, read.chunk)}")
    return keys
