"""A map-style dataset of aligned samples: ``ds[i]`` is a dict the default collate batches.

The dataset keeps only what locates its frames (array names, frame positions, times, the
stores' URLs), so it pickles small; it opens the stores lazily, again in each worker process,
and reads arrays through :meth:`Source.array`, which never downloads ``.zattrs``.  Frames are
read with the fetch stage's chunk reader (:func:`sdoml_sql.fetch.frames.read_chunk_frames`).

Two ways to read:

* ``ds[i]`` — random access.  Per channel column it keeps the frames of the last chunk it
  decoded (only the frames some sample of the dataset needs), so a pass in row order decodes
  each chunk once; a random ``ds[i]`` costs one chunk decode per channel.
* :meth:`FrameDataset.run` — executes a schedule made by :mod:`sdoml_sql.datasets.shuffle`
  (what a loader worker and an export do): chunks decoded when the schedule says, frames kept
  in a bounded cache and dropped when no later sample needs them.
"""

from __future__ import annotations

import os
import resource
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.catalog_builder.layout import Manifest, open_source
from sdoml_sql.datasets.chunkio import ChunkReader
from sdoml_sql.datasets.shuffle import DEFAULT_MIX, epoch_plan
from sdoml_sql.exceptions import DatasetError
from sdoml_sql.fetch.stack import (
    ArrayRef,
    check_downsample,
    check_frames,
    frame_grid,
    open_arrays,
    output_shape,
)

DATASET_MISSING = ("drop", "nan", "raise")


class StoreOpener:
    """Opens the catalog's source stores on first use, once per process.

    In the process that made the dataset it reuses the catalog's opened sources; after a
    fork or an unpickle it opens them again from the manifest's URLs.
    """

    def __init__(self, catalog):
        self.entries = Manifest.of(getattr(catalog, "manifest", None)).sources
        self._catalog, self._pid, self._opened = catalog, os.getpid(), {}

    def __getstate__(self) -> dict[str, Any]:
        return {"entries": self.entries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.entries, self._catalog, self._pid, self._opened = state["entries"], None, os.getpid(), {}

    def source(self, instrument: str):
        if self._pid != os.getpid():  # a forked worker: never share the parent's connections
            self._catalog, self._pid, self._opened = None, os.getpid(), {}
        if self._catalog is not None:
            return self._catalog.source(instrument)
        if instrument not in self._opened:
            self._opened[instrument] = open_source(instrument, self.entries.get(instrument))
        return self._opened[instrument]


@dataclass
class FrameDataset:
    """Samples of a selection: one per grid time (aligned) or per row (frame selections).

    ``ds[i]`` is ``{"image": float32 (C, H, W), "time": ISO string, "row": int,
    "year": int64 (C,), "idx": int64 (C,)}`` (``-1`` year/idx and NaN pixels for a channel
    without a frame when ``missing="nan"``), passed through ``transform`` if given.
    Make one with :func:`dataset` or ``Selection.dataset(...)``.
    """

    opener: StoreOpener
    arrays: list[ArrayRef]
    array_ids: np.ndarray
    idx: np.ndarray
    channels: list[str]
    times: np.ndarray
    rows: np.ndarray
    chunk_frames: np.ndarray
    frame_shape: tuple[int, int]
    downsample: int = 1
    method: str = "stride"
    normalizer: Any = None
    transform: Callable[[dict], Any] | None = None
    trace_dir: str | None = None
    _zarrays: list | None = field(default=None, repr=False)
    _last: dict = field(default_factory=dict, repr=False)
    _readers: threading.local = field(default_factory=threading.local, repr=False)
    #: the thread loader's batch arrays, kept from one epoch to the next (see :mod:`.loader`)
    batch_pool: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zarrays"], state["_last"], state["_readers"], state["batch_pool"] = None, {}, None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _readers=threading.local())

    @property
    def _reader(self) -> ChunkReader:
        """This thread's chunk reader (its whole-chunk buffers are not shared between threads)."""
        return ChunkReader.of_thread(self._readers)

    def __len__(self) -> int:
        return len(self.array_ids)

    def __repr__(self) -> str:
        return (f"<FrameDataset samples={len(self)} channels={self.channels} image={self.image_shape} "
                f"downsample={self.downsample}>")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of a sample's image."""
        return (self.array_ids.shape[1], *output_shape(self.frame_shape, self.downsample, self.method))

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame as served (float32, after downsampling)."""
        return int(np.prod(self.image_shape[1:])) * 4

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample's image."""
        return self.image_shape[0] * self.frame_bytes

    # --- reading --------------------------------------------------------------------------

    def zarrays(self) -> list:
        if self._zarrays is None:
            self._zarrays = open_arrays(self.opener, self.arrays)
        return self._zarrays

    def chunk_of(self, array_id: int, idx: int) -> int:
        return int(idx) // int(self.chunk_frames[array_id])

    def read_frames(self, array_id: int, lo: int, hi: int, offsets: tuple[int, ...],
                    copy: bool = True) -> list[np.ndarray]:
        """Frames ``lo + offsets`` of one chunk of array ``array_id``, downsampled float32; with
        ``copy=False`` they may be views of a buffer the next read overwrites."""
        frames = self._reader.read(self.zarrays()[array_id], str(self.arrays[array_id]), lo, hi, offsets,
                                   self.downsample, self.method, copy)
        if self.trace_dir:
            self._trace(array_id, lo)
        return frames

    def read_frames_into(self, read, place: Callable[[int], np.ndarray]) -> None:
        """Run one :class:`~sdoml_sql.datasets.shuffle.Read`: each frame goes into
        ``place(q)[column]`` for each of its targets; the first target's place gets it straight
        from the decoder where the reader can (see ``FrameReader.read_into``), the others a copy."""
        firsts = [place(q)[column] for (q, column), *_ in read.targets]
        self._reader.read_into(self.zarrays()[read.array_id], str(self.arrays[read.array_id]), read.lo, read.hi,
                               read.offsets, firsts, self.downsample, self.method)
        for first, (_, *others) in zip(firsts, read.targets):
            for q, column in others:
                place(q)[column] = first
        if self.trace_dir:
            self._trace(read.array_id, read.lo)

    def _trace(self, array_id: int, lo: int) -> None:
        """One line per chunk decode (for counting decodes and memory across worker processes)."""
        decoded = int(self.chunk_frames[array_id]) * int(np.prod(self.frame_shape)) * 4
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        line = f"{os.getpid()}\t{self.arrays[array_id]}\t{self.chunk_of(array_id, lo)}\t{decoded}\t{peak_kb}\n"
        with open(Path(self.trace_dir) / f"decodes-{os.getpid()}.tsv", "a", encoding="utf-8") as file:
            file.write(line)

    def chunk_wanted(self, array_id: int, chunk: int) -> np.ndarray:
        """The sorted frame positions of one chunk that some sample of the dataset uses."""
        t = int(self.chunk_frames[array_id])
        mask = (self.array_ids == array_id) & (self.idx // t == chunk)
        return np.unique(self.idx[mask])

    def _column_frame(self, column: int, array_id: int, idx: int) -> np.ndarray:
        chunk = self.chunk_of(array_id, idx)
        key, frames = self._last.get(column, (None, None))
        if key != (array_id, chunk):
            wanted = self.chunk_wanted(array_id, chunk)
            first = int(wanted[0])
            data = self.read_frames(array_id, first, int(wanted[-1]) + 1, tuple(int(w) - first for w in wanted))
            frames = dict(zip(wanted.tolist(), data))
            self._last[column] = ((array_id, chunk), frames)
        return frames[idx]

    def __getitem__(self, i: int) -> Any:
        i = self._index(i)
        frames = [self._column_frame(c, int(a), int(x)) if a >= 0 else None
                  for c, (a, x) in enumerate(zip(self.array_ids[i], self.idx[i]))]
        return self.sample(i, frames)

    def _index(self, i) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"sample {i!r} out of range: the dataset has {n} samples")
        return int(i) % n

    def sample(self, i: int, frames: list[np.ndarray | None]) -> Any:
        """The sample dict of sample ``i`` from its frames (None: no frame), normalised and transformed."""
        image = np.empty(self.image_shape, dtype=np.float32)
        for c, frame in enumerate(frames):
            if frame is not None:
                image[c] = frame
        return self.finish(i, image)

    def finish(self, i: int, image: np.ndarray) -> Any:
        """Sample ``i``'s dict around its filled ``image`` (changed in place: NaN where no frame, normalised)."""
        self.complete(i, image)
        item = {"image": image, "time": self.time_text(i), "row": int(self.rows[i]),
                "year": self.years(i), "idx": np.where(self.array_ids[i] >= 0, self.idx[i], -1).astype(np.int64)}
        return self.transform(item) if self.transform is not None else item

    def complete(self, i: int, image: np.ndarray) -> None:
        """NaN frames for channels without a frame, then the normalisation, in place."""
        for c in np.flatnonzero(self.array_ids[i] < 0):
            image[c] = np.nan
        if self.normalizer is not None:
            self.normalizer.apply(image, self.array_ids[i])

    def time_text(self, i: int) -> str:
        """Sample ``i``'s time as an ISO string ("" if unknown)."""
        return _iso(self.times[i])

    def years(self, i: int) -> np.ndarray:
        return np.array([self.arrays[a].year if a >= 0 else -1 for a in self.array_ids[i]], dtype=np.int64)

    def fill(self, schedule, new_unit: Callable[[int], Any]) -> Iterator[tuple[int, np.ndarray, Any]]:
        """Run a :class:`~sdoml_sql.datasets.shuffle.Schedule`: yield ``(position, image, unit)`` as
        each sample's frames are all in (not yet completed: see :meth:`complete`).

        Images live in units of ``schedule.group`` consecutive samples, arrays of
        ``(size, C, H, W)`` float32 (numpy, or anything ``np.asarray`` views without a copy)
        made by ``new_unit(size)``; each frame goes from its chunk straight into the samples
        waiting for it (decoded into the first where the reader can, see :meth:`read_frames_into`).
        """
        units: dict[int, tuple[Any, np.ndarray]] = {}
        group, count = schedule.group, len(schedule.steps)

        def place(q: int) -> np.ndarray:
            unit = q // group
            if unit not in units:
                made = new_unit(min(group, count - unit * group))
                units[unit] = (made, np.asarray(made))
            return units[unit][1][q % group]

        for step in schedule.steps:
            for unit in step.evict:
                units.pop(unit, None)
            for read in step.reads:
                self.read_frames_into(read, place)
            image = place(step.position)
            yield step.position, image, units[step.position // group][0]
            if step.position % group == group - 1:
                units.pop(step.position // group, None)

    def fill_unit(self, schedule, start: int, images: np.ndarray) -> None:
        """Fill ``images`` with the samples at positions ``start …`` of a schedule whose units
        are independent (a uniform plan: every read of a unit's steps goes into that unit), then
        complete them (NaN for absent channels, normalisation)."""
        stop = start + len(images)

        def place(q: int) -> np.ndarray:
            if not start <= q < stop:
                raise DatasetError(f"position {q} is outside the unit {start}..{stop - 1}: the plan's units "
                                   "are not independent")
            return images[q - start]

        for step in schedule.steps[start:stop]:
            for read in step.reads:
                self.read_frames_into(read, place)
        for step in schedule.steps[start:stop]:
            self.complete(step.sample, images[step.position - start])

    def run(self, schedule) -> Iterator[Any]:
        """Yield the sample dicts of a schedule in its order (see :meth:`fill`)."""
        for position, image, _ in self.fill(schedule, self.new_images):
            yield self.finish(schedule.steps[position].sample, image)

    def new_images(self, size: int) -> np.ndarray:
        return np.empty((size, *self.image_shape), dtype=np.float32)

    # --- subsets, splits, loaders ---------------------------------------------------------

    def subset(self, indices) -> FrameDataset:
        """A dataset of the samples ``indices`` (in that order), sharing this one's options."""
        indices = np.asarray(indices, dtype=np.int64)
        return FrameDataset(self.opener, self.arrays, self.array_ids[indices], self.idx[indices], self.channels,
                            self.times[indices], self.rows[indices], self.chunk_frames, self.frame_shape,
                            self.downsample, self.method, self.normalizer, self.transform, self.trace_dir)

    def split(self, val: float = 0.1, test: float = 0.1, seed: int = 0, gap="1 day",
              val_months=(), test_months=()) -> dict[str, FrameDataset]:
        """Train/val/test datasets from whole calendar months (see :func:`sdoml_sql.datasets.splits.split_labels`):
        ``{"train": …, "val": …, "test": …}``; samples within ``gap`` of a month edge whose
        neighbour month is in another split are left out of all three."""
        from sdoml_sql.datasets.splits import split_labels

        labels = split_labels(self.times, val=val, test=test, seed=seed, gap=gap,
                              val_months=val_months, test_months=test_months)
        splits = {name: self.subset(np.flatnonzero(labels == name)) for name in ("train", "val", "test")}
        asked = {"train": True, "val": bool(val or val_months), "test": bool(test or test_months)}
        empty = [name for name, part in splits.items() if asked[name] and not len(part)]
        if empty and len(self):
            months = sorted({str(m) for m in pd.DatetimeIndex(pd.to_datetime(self.times)).dropna().to_period("M")})
            shown = ", ".join(months[:6]) + (", …" if len(months) > 6 else "")
            warnings.warn(f"split {' and '.join(empty)} came out empty: splits are whole calendar months and the "
                          f"{len(self)} samples fall in {len(months)} month(s) ({shown}); select more months, or "
                          "name them with val_months=/test_months=", UserWarning, stacklevel=2)
        return splits

    def loader(self, batch_size: int, shuffle: bool | str = True, seed: int = 0, epoch: int = 0, num_workers: int = 0,
               rank: int = 0, world_size: int = 1, **options):
        """A ``torch.utils.data.DataLoader`` over one epoch with chunk-aware shuffling
        (see :func:`sdoml_sql.datasets.loader.make_loader` for the options)."""
        import inspect

        from sdoml_sql.datasets.loader import make_loader

        known = list(inspect.signature(make_loader).parameters)[1:]
        unknown = [name for name in options if name not in known]
        if unknown:
            raise DatasetError(f"unknown loader option {unknown[0]}: the options are {', '.join(known)}")
        return make_loader(self, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, num_workers=num_workers,
                           rank=rank, world_size=world_size, **options)

    def plan(self, shuffle: bool | str = True, seed: int = 0, epoch: int = 0, num_workers: int = 0,
             rank: int = 0, world_size: int = 1, mix: int = DEFAULT_MIX, cache_mb: float | None = None,
             batch_size: int = 1):
        """The epoch plan a loader with these options runs (chunk decodes, memory peak), without
        reading; ``batch_size`` > 1 plans as a loader whose workers build batches."""
        return epoch_plan(self, shuffle=shuffle, seed=seed, epoch=epoch, shards=max(num_workers, 1),
                          rank=rank, world_size=world_size, mix=mix, cache_mb=cache_mb, group=batch_size)


def _iso(value) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).isoformat()


def dataset(selection, downsample: int = 1, method: str = "stride", missing: str = "drop",
            normalize="none", transform: Callable[[dict], Any] | None = None) -> FrameDataset:
    """A map-style :class:`FrameDataset` over the selection's frames.

    An aligned selection gives one sample per grid time, channels in query order; a frame
    selection gives one single-channel sample per row.  ``downsample``/``method`` are as in
    :func:`sdoml_sql.fetch.fetch`; ``missing`` is ``"drop"`` (leave out a sample with a missing
    channel, the default), ``"nan"`` (NaN frame) or ``"raise"``.  ``normalize`` is ``"none"``,
    ``"sdoml"`` (AIA: log10 of max(x, floor), z-scored per channel; HMI: clipped to ±limit
    gauss, divided by limit) or a :class:`~sdoml_sql.datasets.normalize.Normalization` with
    other parameters; its statistics are computed once and stored beside the catalog.
    ``transform`` is a callable applied to each sample dict.
    """
    if missing not in DATASET_MISSING:
        raise DatasetError(f"missing={missing!r}: choose one of {', '.join(DATASET_MISSING)}")
    from sdoml_sql.datasets.normalize import normalization  # checks the name before any read

    rule = normalization(normalize)
    grid = frame_grid(selection, "raise" if missing == "raise" else "nan")  # "raise" names the rows without frames
    keep = ~grid.missing.any(axis=1) if missing == "drop" else np.ones(len(grid.missing), dtype=bool)
    if not keep.any() or not grid.arrays:
        raise DatasetError(f"the selection has no frames to make samples of ({len(keep)} rows, "
                           f"{int(grid.missing.all(axis=1).sum())} without any frame)")
    opener = StoreOpener(selection.catalog)
    zarrays = open_arrays(opener, grid.arrays)
    check_frames(grid, zarrays)
    frame_shape = tuple(int(s) for s in zarrays[0].shape[1:])
    check_downsample(frame_shape, downsample, method)
    times, rows = _times_and_rows(selection, grid)
    ds = FrameDataset(opener, grid.arrays, grid.array_ids[keep].astype(np.int32), grid.idx[keep],
                      list(grid.columns) if grid.aligned else _frame_column(grid),
                      times[keep], rows[keep], np.array([z.chunks[0] for z in zarrays], dtype=np.int64),
                      frame_shape, int(downsample), method, transform=transform)
    ds._zarrays = zarrays
    if rule is not None:
        from sdoml_sql.datasets.normalize import make_normalizer

        location = getattr(selection.catalog, "location", None)
        local = None if location is not None and location.remote else Path(selection.catalog.directory)
        ds.normalizer = make_normalizer(ds, rule, local)
    return ds


def _frame_column(grid) -> list[str]:
    channels = list(dict.fromkeys(ref.channel for ref in grid.arrays))
    return ["+".join(channels)] if channels else ["frame"]


def _times_and_rows(selection, grid) -> tuple[np.ndarray, np.ndarray]:
    if grid.aligned:
        rows = pd.unique(grid.table["row"]).astype(np.int64)
        return pd.to_datetime(grid.times).to_numpy("datetime64[ns]"), rows
    n = len(grid.table)
    table = selection.to_arrow() if hasattr(selection, "to_arrow") else None
    names = {c.lower(): c for c in table.column_names} if table is not None and table.num_rows == n else {}
    column = grid.table["time"] if "time" in grid.table.columns else (
        table.column(names["t_obs"]).to_pandas() if "t_obs" in names else pd.Series([pd.NaT] * n))
    return pd.to_datetime(column).to_numpy("datetime64[ns]"), np.arange(n, dtype=np.int64)
