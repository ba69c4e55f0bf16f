"""A fetch's dask array: the hand-built graph, and the direct read its ``compute()`` takes.

The graph stays small and reads each Zarr chunk once:

* every distinct Zarr chunk the selection touches is one *read* (only the frames needed
  from it are kept, already downsampled);
* the output is cut along its first axis into *segments*: maximal runs of consecutive rows
  that take their frames from one chunk per channel column.  One task per segment (and
  channel) assembles its block from the read;
* a read used by a single block is inlined into that block's task; a read shared by
  several blocks (rows of one chunk that are not contiguous in the selection's order) is
  its own task, computed once per ``compute()``.

The graph holds plain module-level functions and read-only ``zarr.Array`` objects, so it
pickles and runs unchanged on a ``dask.distributed`` cluster.

``FrameStack.compute()`` of the whole array, on the local threaded or synchronous scheduler
with no dask callbacks active, skips the graph: :func:`~sdoml_sql.fetch.assemble.read_frames`
reads the same chunk reads concurrently into one preallocated output.  Dask's own way would
give every block its own fresh array and then copy them all into a new one, which costs as
much as the reads on a 15-frame store (page faults of fresh memory).  Anything else (a slice,
``dask.compute``, xarray, a distributed client, ``scheduler=`` given) runs the graph.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from sdoml_sql.fetch.assemble import read_frames
from sdoml_sql.fetch.frames import read_chunk_frames

#: Schedulers (``dask.config`` ``scheduler``) under which ``compute()`` reads directly.
LOCAL_SCHEDULERS = (None, "threads", "threading", "sync", "synchronous", "single-threaded")


def assemble_block(frames: np.ndarray | None, positions: tuple[int, ...],
                   shape: tuple[int, ...]) -> np.ndarray:
    """One output block: ``frames[positions]`` with NaN frames where a position is -1.

    ``shape`` is the block's full shape; its leading axis is the row count, and a
    channel axis of length 1 is inserted for aligned blocks (``len(shape) == 4``).
    """
    positions_array = np.asarray(positions, dtype=np.int64)
    if frames is not None and (positions_array >= 0).all():
        if len(positions_array) == len(frames) and (positions_array == np.arange(len(frames))).all():
            block = frames
        else:
            block = frames[positions_array]
    else:
        block = np.full((len(positions_array), *shape[-2:]), np.nan, dtype=np.float32)
        present = positions_array >= 0
        if present.any():
            block[present] = frames[positions_array[present]]
    return block.reshape(shape)


def dask_array(grid, layout, factor: int, method: str, frame_size: tuple[int, int]):
    """The grid's frames as a :class:`FrameStack` (a dask array) of ``frame_size`` frames."""
    height, width = frame_size
    columns = grid.array_ids.shape[1]
    if not layout.segments:
        empty = (0, columns, height, width) if grid.aligned else (0, height, width)
        return da.zeros(empty, dtype=np.float32)
    name, read_name = _names(grid, layout, factor, method)
    consumers = pd.Series(list(layout.block_reads.values()), dtype=np.int64).value_counts()
    graph: dict[Any, Any] = {}

    def read_task(n: int):
        read = layout.reads[n]
        task = (read_chunk_frames, layout.zarrays[read.array_id], str(grid.arrays[read.array_id]),
                read.lo, read.hi, read.wanted, factor, method)
        if consumers.get(n, 0) > 1:
            graph.setdefault((read_name, n), task)
            return (read_name, n)
        return task

    for s, (start, stop) in enumerate(layout.segments):
        for c in range(columns):
            block_shape = (stop - start, 1, height, width) if grid.aligned else (stop - start, height, width)
            positions = _positions(grid, layout, s, c)
            n = layout.block_reads.get((s, c))
            source = read_task(n) if n is not None else None
            key = (name, s, c, 0, 0) if grid.aligned else (name, s, 0, 0)
            graph[key] = (assemble_block, source, positions, block_shape)
    row_chunks = tuple(stop - start for start, stop in layout.segments)
    if grid.aligned:
        chunks = (row_chunks, (1,) * columns, (height,), (width,))
    else:
        chunks = (row_chunks, (height,), (width,))
    array = FrameStack(graph, name, chunks, dtype=np.float32)
    if isinstance(array, FrameStack):  # (a dask array plugin may return another object)
        array.__dict__["_direct_read"] = (name, grid, layout, factor, method)
    return array


def _names(grid, layout, factor: int, method: str) -> tuple[str, str]:
    """The graph's key names: a token of what is read (arrays, frames, downsampling)."""
    from dask.base import tokenize

    stores = [(str(getattr(z.store_path, "store", "")), getattr(z.store_path, "path", "")) for z in layout.zarrays]
    token = tokenize([str(a) for a in grid.arrays], stores, grid.array_ids, grid.idx, factor, method)
    return f"sdoml-fetch-{token}", f"sdoml-read-{token}"


def _positions(grid, layout, s: int, c: int) -> tuple[int, ...]:
    """Where each row of block (segment s, column c) sits in its read's frames (-1: none)."""
    start, stop = layout.segments[s]
    n = layout.block_reads.get((s, c))
    if n is None:
        return (-1,) * (stop - start)
    read = layout.reads[n]
    wanted = np.asarray(read.wanted, dtype=np.int64) + read.lo
    idx = grid.idx[start:stop, c]
    where = np.searchsorted(wanted, idx)
    return tuple(int(p) if grid.array_ids[start + i, c] >= 0 else -1 for i, p in enumerate(where))


class FrameStack(da.Array):
    """The dask array :func:`~sdoml_sql.fetch.fetch` returns: a plain ``dask.array.Array``
    whose ``compute()`` of the whole array reads straight into one output (see the module
    docstring); every other operation is dask's."""

    __slots__ = ()

    def compute(self, **kwargs):
        direct = self.__dict__.get("_direct_read")
        if direct is None or direct[0] != self.name or kwargs or not _local_scheduler():
            return super().compute(**kwargs)
        _, grid, layout, factor, method = direct
        return read_frames(grid, layout, factor, method, self.shape)


def _local_scheduler() -> bool:
    """Whether a ``compute()`` now would run on this process's threads with no callbacks
    (progress bars, profilers) watching the graph."""
    import dask
    from dask.callbacks import Callback

    return dask.config.get("scheduler", None) in LOCAL_SCHEDULERS and not Callback.active
