"""PyTorch loaders: the only module of sdoml-sql that imports torch (imported on first ``.loader()``).

:func:`make_loader` wraps a :class:`~sdoml_sql.datasets.samples.FrameDataset` in an
``IterableDataset`` whose worker ``w`` serves shard ``w`` of an
:class:`~sdoml_sql.datasets.shuffle.EpochPlan`, and returns a plain
``torch.utils.data.DataLoader`` over it.  The workers are torch's processes, or, for a uniform
shuffle, threads of the calling process that build the same batches (no start-up, frames
decoded straight into reused batch arrays).  :func:`uniform_loader` is the plain uniform
shuffle an export's one-sample chunks allow.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sdoml_sql.datasets.shuffle import DEFAULT_MIX, UNIFORM, epoch_plan
from sdoml_sql.exceptions import DatasetError


class EpochStream(IterableDataset):
    """One rank's epoch of a dataset; worker ``w`` serves shard ``w`` of the plan.

    Without a ``transform`` a worker builds whole batches (``options["group"]`` samples) in
    shared memory, each frame copied once from its decoded chunk into its batch, which the
    DataLoader then hands to the main process without another copy; with a ``transform`` it
    yields samples and the DataLoader batches them.  With ``threads`` (not None) the DataLoader
    has no workers: ``threads`` threads of this process build the batches (see :meth:`_threaded`).
    """

    def __init__(self, dataset, options: dict, drop_last: bool = False, threads: int | None = None,
                 ahead: int = 2):
        self.dataset = dataset
        self.options = options
        self.drop_last = drop_last
        self.threads = threads
        self.ahead = ahead
        self.plan = epoch_plan(dataset, **options)

    def set_epoch(self, epoch: int) -> None:
        """Plan another epoch (takes effect at the next ``iter(loader)``)."""
        self.options = {**self.options, "epoch": int(epoch)}
        self.plan = epoch_plan(self.dataset, **self.options)

    def __len__(self) -> int:
        return self.plan.samples

    def batches(self, batch_size: int, drop_last: bool) -> int:
        """Batches of ``batch_size`` an epoch of this rank yields: each worker batches its own
        shard, so each may end with a partial batch (dropped with ``drop_last``)."""
        sizes = [len(schedule.steps) for schedule in self.plan.schedules]
        return sum(n // batch_size if drop_last else -(-n // batch_size) for n in sizes)

    def __iter__(self):
        if self.threads is not None:
            yield from self._threaded()
            return
        info = get_worker_info()
        if info is not None and info.num_workers != len(self.plan.schedules):
            raise DatasetError(f"the plan has {len(self.plan.schedules)} shards for {info.num_workers} workers")
        schedules = self.plan.schedules if info is None else [self.plan.schedules[info.id]]
        for schedule in schedules:  # in-process: every shard, one after the other
            if schedule.group > 1:
                yield from self._batches(schedule, shared=info is not None)
            else:
                yield from self.dataset.run(schedule)

    def _batches(self, schedule, shared: bool):
        ds = self.dataset
        shape = ds.image_shape

        def new_unit(size: int):
            if not shared:
                return torch.empty((size, *shape), dtype=torch.float32)
            storage = torch.UntypedStorage._new_shared(size * int(np.prod(shape)) * 4)  # as default_collate does
            return torch.empty(0, dtype=torch.float32).set_(storage).view(size, *shape)

        samples: list[int] = []
        for position, image, unit in ds.fill(schedule, new_unit):
            i = schedule.steps[position].sample
            ds.complete(i, image)
            samples.append(i)
            if len(samples) == len(unit):
                if not (self.drop_last and len(unit) < schedule.group):
                    yield _batch(ds, unit, samples)
                samples = []


    def units(self) -> list[tuple[object, int, int]]:
        """``(schedule, start, size)`` of each batch the epoch yields, in the order a DataLoader
        takes them from its workers: round robin over the shards, skipping those that ran out."""
        per_shard = []
        for schedule in self.plan.schedules:
            n, group = len(schedule.steps), schedule.group
            sizes = [(start, min(group, n - start)) for start in range(0, n, group)]
            per_shard.append([(schedule, start, size) for start, size in sizes
                              if not (self.drop_last and size < group)])
        return [unit for turn in range(max(map(len, per_shard), default=0))
                for units in per_shard if turn < len(units) for unit in [units[turn]]]

    def _threaded(self):
        """The epoch's batches built by ``self.threads`` threads of this process (none: in the
        caller's thread), each decoding frames straight into a batch array reused once no batch
        handed out holds it (:class:`BatchBuffers`); in the order processes would yield them.
        Off the main thread numcodecs decodes in a Blosc context of the call's own, so the
        threads decode in parallel (its shared context would take them one at a time: 1.4-1.5x
        fewer samples/s with two threads, measured alternated)."""
        ds = self.dataset
        ds.zarrays()  # opened once, before the threads share them
        buffers = BatchBuffers.of(ds, keep=max(self.threads, 1) * self.ahead + 2)

        def build(unit):
            schedule, start, size = unit
            images = buffers.take(size)
            ds.fill_unit(schedule, start, images)
            return _batch(ds, torch.from_numpy(images), [step.sample for step in schedule.steps[start:start + size]])

        if not self.threads:
            yield from map(build, self.units())
            return
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sdoml-loader")
        pending: deque = deque()
        try:
            for unit in self.units():
                pending.append(pool.submit(build, unit))
                if len(pending) > self.threads * self.ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)


class BatchBuffers:
    """Arrays to build batches in, each reused once nothing outside holds it.

    A batch is handed out as ``torch.from_numpy(array)``: the tensor, and every view of it (a
    slice, ``.numpy()``), keeps a reference to the array for as long as it lives.  An array is
    filled again only when its reference count is back to what this pool alone holds, so a
    batch a consumer kept is never overwritten: when every pooled array is held, a new one is
    made (and pooled, up to ``keep``, in place of a free array too small for it).  A shorter
    batch is built in the front of a pooled array.  Reused arrays spare the page faults (and
    zeroing) of fresh memory.
    """

    def __init__(self, shape: tuple[int, ...], keep: int):
        self.shape, self.keep = tuple(shape), keep
        self._pool: list[np.ndarray] = []
        self._idle = 0  # the reference count of a pooled array nobody else holds
        self._lock = threading.Lock()

    @classmethod
    def of(cls, dataset, keep: int) -> BatchBuffers:
        """The pool ``dataset`` keeps for its batches, holding at least ``keep`` arrays: kept
        between epochs (a new loader per epoch would otherwise fault in, and zero, fresh
        memory for every array, ~1 GB an epoch for 9 channels of 512² in batches of 16)."""
        pool = dataset.batch_pool
        if pool is None or pool.shape != tuple(dataset.image_shape):
            pool = dataset.batch_pool = cls(dataset.image_shape, keep)
        pool.keep = max(pool.keep, keep)
        return pool

    def take(self, size: int) -> np.ndarray:
        """A ``(size, *shape)`` float32 array nobody else holds (contents undefined)."""
        with self._lock:
            free = [n for n in range(len(self._pool)) if sys.getrefcount(self._pool[n]) == self._idle]
            for n in free:  # a short last batch takes the front of a pooled array
                if len(self._pool[n]) >= size:
                    return self._pool[n] if len(self._pool[n]) == size else self._pool[n][:size]
            array = np.empty((size, *self.shape), dtype=np.float32)
            if len(self._pool) < self.keep:
                self._pool.append(array)
            elif free:  # only smaller arrays are free (a loader of smaller batches ran before)
                self._pool[free[0]] = array
            else:
                return array
            self._idle = sys.getrefcount(array) - 1  # less this function's own name for it
            return array


def _batch(ds, images, samples: list[int]) -> dict:
    """A batch as the default collate makes it from the samples' dicts."""
    index = np.asarray(samples)
    return {"image": images, "time": [ds.time_text(i) for i in samples],
            "row": torch.as_tensor(ds.rows[index], dtype=torch.int64),
            "year": torch.as_tensor(np.stack([ds.years(i) for i in samples])),
            "idx": torch.as_tensor(np.where(ds.array_ids[index] >= 0, ds.idx[index], -1).astype(np.int64))}


class ChunkLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` over an :class:`EpochStream` whose ``len()`` is the
    number of batches an epoch of this rank yields (``drop_last`` and ``rank``/``world_size``
    applied) and whose ``batch_size`` is the batch size, also when the workers build the
    batches themselves (tqdm totals, ``OneCycleLR(steps_per_epoch=len(loader))``, Lightning)."""

    def __init__(self, stream: EpochStream, batches_of: int, drop_partial: bool, **options):
        super().__init__(stream, **options)
        object.__setattr__(self, "batch_size", batches_of)  # DataLoader refuses to set it after __init__
        object.__setattr__(self, "drop_last", drop_partial)

    def __len__(self) -> int:
        length = self.dataset.batches(self.batch_size, self.drop_last)
        self._IterableDataset_len_called = length  # torch warns if an epoch yields more than this
        return length


def make_loader(dataset, batch_size: int, shuffle: bool | str = True, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, rank: int = 0, world_size: int = 1, mix: int = DEFAULT_MIX,
                cache_mb: float | None = None, drop_last: bool = False, pin_memory: bool = False,
                prefetch_factor: int | None = None, persistent_workers: bool = False,
                multiprocessing_context=None, workers: str = "auto") -> DataLoader:
    """A ``DataLoader`` over one epoch of ``dataset`` with chunk-aware shuffling.

    Every sample of the rank's shard appears once per epoch, in an order fixed by
    ``(seed, epoch)``.  ``num_workers`` processes each serve a run of neighbouring blocks
    (see :mod:`sdoml_sql.datasets.shuffle`), so an epoch decodes each chunk about once in all.
    ``shuffle="uniform"`` draws a uniform permutation instead, each sample reading only its own
    frames (partial Blosc reads: see :func:`sdoml_sql.datasets.shuffle.uniform_plan`).
    ``rank``/``world_size`` give disjoint shards that together cover the epoch (for
    distributed data parallel).  ``mix`` blocks are open at a time in a worker.  A worker
    holds at most ``cache_mb`` MB (default 2048) of samples waiting for their frames, in whole
    batches, plus one decoded chunk (126 MB for 120 AIA frames of 512²).  Each worker batches
    its own shard, so an epoch ends with up to one partial batch per worker (``drop_last``
    drops them); ``len(loader)`` counts the batches.  ``loader.dataset.plan`` says what the
    epoch will decode; ``loader.dataset.set_epoch(e)`` plans epoch ``e`` for the next
    ``iter(loader)``.  Workers start with ``multiprocessing_context`` (default
    ``"forkserver"``: forking a process that runs threads may deadlock, and Python 3.14 no longer
    forks by default; ``"spawn"`` and ``"fork"`` work too); ``persistent_workers`` keeps them
    between epochs, as in torch.

    ``workers`` says what the ``num_workers`` are: ``"processes"`` (torch's worker processes,
    batches in shared memory), ``"threads"`` (threads of this process: no start-up, frames
    decoded straight into batch arrays that are reused once no batch handed out holds them;
    for ``shuffle="uniform"`` without a ``transform``) or ``"auto"`` (the default: threads
    where they can serve — a uniform shuffle, no transform, every array read partially — else
    processes).  Threads give the same batches in the same order as processes.
    """
    _check_batch_size(batch_size)
    if not isinstance(num_workers, int) or num_workers < 0:
        raise DatasetError(f"num_workers={num_workers!r}: give 0 or a positive integer")
    batches_in_worker = dataset.transform is None
    options = {"shuffle": UNIFORM if shuffle == UNIFORM else bool(shuffle), "seed": int(seed), "epoch": int(epoch),
               "shards": max(num_workers, 1), "rank": rank, "world_size": world_size, "mix": mix, "cache_mb": cache_mb,
               "group": batch_size if batches_in_worker else 1}
    if _use_threads(dataset, options["shuffle"], workers):
        stream = EpochStream(dataset, options, drop_last, threads=num_workers, ahead=prefetch_factor or 2)
        return ChunkLoader(stream, batch_size, drop_last, batch_size=None, num_workers=0,
                           pin_memory=pin_memory and torch.cuda.is_available())
    stream = EpochStream(dataset, options, drop_last)
    extra = {"prefetch_factor": prefetch_factor} if prefetch_factor is not None and num_workers else {}
    if num_workers:
        extra.update(persistent_workers=bool(persistent_workers),
                     multiprocessing_context=multiprocessing_context or default_context())
    return ChunkLoader(stream, batch_size, drop_last, batch_size=None if batches_in_worker else batch_size,
                       num_workers=num_workers, drop_last=False if batches_in_worker else drop_last,
                       pin_memory=pin_memory and torch.cuda.is_available(), **extra)


WORKERS = ("auto", "threads", "processes")


def _use_threads(dataset, shuffle, workers: str) -> bool:
    """Whether the loader's workers are threads (see :func:`make_loader`'s ``workers``)."""
    from sdoml_sql.fetch.frames import partial_reads

    if workers not in WORKERS:
        raise DatasetError(f"workers={workers!r}: choose one of {', '.join(map(repr, WORKERS))}")
    can = shuffle == UNIFORM and dataset.transform is None
    if workers == "threads" and not can:
        raise DatasetError("workers='threads' needs shuffle='uniform' and no transform (each batch built alone, "
                           "frames decoded straight into it); use workers='processes'")
    return workers == "threads" or (workers == "auto" and can and all(map(partial_reads, dataset.zarrays())))


def default_context() -> str | None:
    """The start method of loader workers: ``forkserver`` where there is one (Linux, macOS),
    so that no worker is forked from a process running threads (DuckDB's, dask's, zarr's)."""
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DatasetError(f"batch_size={batch_size!r}: give a positive integer")


def uniform_loader(dataset, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                   num_workers: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False) -> DataLoader:
    """A ``DataLoader`` over a map-style dataset with a uniform shuffle fixed by ``(seed, epoch)``;
    ``rank``/``world_size`` take every ``world_size``-th sample of the permutation."""
    _check_batch_size(batch_size)
    if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DatasetError(f"rank={rank!r}, world_size={world_size!r}: need 0 <= rank < world_size")
    order = np.random.default_rng([seed, epoch]).permutation(len(dataset)) if shuffle else np.arange(len(dataset))
    extra = {"multiprocessing_context": default_context()} if num_workers else {}
    return DataLoader(dataset, batch_size=batch_size, sampler=order[rank::world_size].tolist(),
                      num_workers=num_workers, drop_last=drop_last, **extra)
