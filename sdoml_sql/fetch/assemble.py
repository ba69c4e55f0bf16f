"""A fetch read straight into one preallocated output (what ``fetch().compute()`` and maps use).

The chunk reads of a layout (see :mod:`sdoml_sql.fetch.stack`) run on a few threads; each
puts its frames into their rows of one ``np.empty`` output.  Partial reads decode straight
into those rows; whole chunks decode into a buffer each thread keeps for the call and are
copied, so the only fresh memory is the output itself: dask's way gives every block a fresh array and
then copies them all into another (two passes of page faults over the result, as costly as
the reads on a 15-frame store).
"""

from __future__ import annotations

import mmap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sdoml_sql.fetch.frames import FrameReader

SYNCHRONOUS = ("sync", "synchronous", "single-threaded")
#: Outputs at least this big get all their pages at once (Linux ``MAP_POPULATE``): measured here,
#: 480 MB took 1.3–2.5 s that way against 4.3–5.8 s faulted in page by page (load ~12).
POPULATE_BYTES = 64 * 2**20


def read_frames(grid, layout, factor: int, method: str, shape: tuple[int, ...]) -> np.ndarray:
    """The frames of ``grid`` (laid out as ``layout``) as one float32 array of ``shape``:
    ``(rows, H, W)``, or ``(rows, channels, H, W)`` for aligned grids; NaN where a cell has no
    frame.  Pixels are those of the dask graph's blocks (the same reads, the same reader)."""
    out = _output(shape)
    cells = out.reshape(-1, *shape[-2:])
    absent = grid.array_ids.reshape(-1) < 0
    if absent.any():
        cells[absent] = np.nan
    jobs = _jobs(grid, layout)
    local = threading.local()

    def fill(job) -> None:
        read, rows, positions = job
        reader = FrameReader.of_thread(local)
        first = dict(zip(positions[::-1], rows[::-1]))  # each frame's first cell, where it is decoded
        reader.read_into(layout.zarrays[read.array_id], str(grid.arrays[read.array_id]), read.lo, read.hi,
                         read.wanted, [cells[first[p]] for p in range(len(read.wanted))], factor, method)
        for row, position in zip(rows, positions):
            if row != first[position]:  # a frame asked for again
                cells[row] = cells[first[position]]

    workers = min(len(jobs), _threads())
    if workers <= 1:
        for job in jobs:
            fill(job)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="sdoml-fetch") as pool:
            for _ in pool.map(fill, jobs):
                pass
    return out


def _output(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array of ``shape``; a big one with its pages already mapped."""
    nbytes = int(np.prod(shape)) * np.dtype(np.float32).itemsize
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes < POPULATE_BYTES or not populate:
        return np.empty(shape, dtype=np.float32)
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | populate), np.float32).reshape(shape)


def _jobs(grid, layout) -> list[tuple]:
    """Per chunk read: the read, the output cells (flat ``row * channels + column``) its frames
    go to, and each cell's position among the read's frames."""
    ids, idx = grid.array_ids.reshape(-1), grid.idx.reshape(-1)
    present = np.flatnonzero(ids >= 0)
    chunk_frames = np.array([s[0] for s in layout.chunk_shapes] or [1], dtype=np.int64)
    chunks = idx[present] // chunk_frames[ids[present]]
    number = {(read.array_id, read.chunk): n for n, read in enumerate(layout.reads)}
    cells: dict[int, list[int]] = {}
    for cell, array_id, chunk in zip(present.tolist(), ids[present].tolist(), chunks.tolist()):
        cells.setdefault(number[array_id, chunk], []).append(cell)
    jobs = []
    for n, rows in cells.items():
        read = layout.reads[n]
        wanted = np.asarray(read.wanted, dtype=np.int64) + read.lo
        jobs.append((read, rows, np.searchsorted(wanted, idx[rows]).tolist()))
    return jobs


def _threads() -> int:
    """Threads for the reads: dask's setting (``num_workers``, a synchronous scheduler) or one
    per core, as dask's threaded scheduler would use."""
    import dask
    from dask.system import CPU_COUNT

    if dask.config.get("scheduler", None) in SYNCHRONOUS:
        return 1
    return int(dask.config.get("num_workers", None) or CPU_COUNT)
