"""PyTorch loaders: the only module of sdoml-sql that imports torch (imported on first ``.loader()``).

:func:`make_loader` wraps a :class:`~sdoml_sql.datasets.samples.FrameDataset` in an
``IterableDataset`` whose worker ``w`` serves shard ``w`` of an
:class:`~sdoml_sql.datasets.shuffle.EpochPlan`, and returns a plain
``torch.utils.data.DataLoader`` over it.  Each worker batches its own shard, so an epoch ends
with up to one partial batch per worker (``drop_last=True`` drops them).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sdoml_sql.datasets.shuffle import DEFAULT_MIX, epoch_plan
from sdoml_sql.exceptions import DatasetError


class EpochStream(IterableDataset):
    """One rank's epoch of a dataset; worker ``w`` yields the samples of shard ``w``."""

    def __init__(self, dataset, options: dict):
        self.dataset = dataset
        self.options = options
        self.plan = epoch_plan(dataset, **options)

    def set_epoch(self, epoch: int) -> None:
        """Plan another epoch (takes effect at the next ``iter(loader)``)."""
        self.options = {**self.options, "epoch": int(epoch)}
        self.plan = epoch_plan(self.dataset, **self.options)

    def __len__(self) -> int:
        return self.plan.samples

    def __iter__(self):
        info = get_worker_info()
        shard = info.id if info is not None else 0
        if info is not None and info.num_workers != len(self.plan.schedules):
            raise DatasetError(f"the plan has {len(self.plan.schedules)} shards for {info.num_workers} workers")
        if info is None and len(self.plan.schedules) > 1:
            for schedule in self.plan.schedules:  # iterated in-process: every shard, one after the other
                yield from self.dataset.run(schedule)
            return
        yield from self.dataset.run(self.plan.schedules[shard])


def make_loader(dataset, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, rank: int = 0, world_size: int = 1, mix: int = DEFAULT_MIX,
                cache_mb: float | None = None, drop_last: bool = False, pin_memory: bool = False,
                prefetch_factor: int | None = None) -> DataLoader:
    """A ``DataLoader`` over one epoch of ``dataset`` with chunk-aware shuffling.

    Every sample of the rank's shard appears once per epoch, in an order fixed by
    ``(seed, epoch)``.  ``num_workers`` processes each serve a run of neighbouring blocks
    (see :mod:`sdoml_sql.datasets.shuffle`), so an epoch decodes each chunk about once in all.
    ``rank``/``world_size`` give disjoint shards that together cover the epoch (for
    distributed data parallel).  ``mix`` blocks are open at a time in a worker; each worker's
    frame cache holds at most ``cache_mb`` MB (default 2048), plus the chunk being decoded.
    ``loader.dataset.plan`` says what the epoch will decode; ``loader.dataset.set_epoch(e)``
    plans epoch ``e`` for the next ``iter(loader)``.
    """
    _check_batch_size(batch_size)
    if not isinstance(num_workers, int) or num_workers < 0:
        raise DatasetError(f"num_workers={num_workers!r}: give 0 or a positive integer")
    options = {"shuffle": bool(shuffle), "seed": int(seed), "epoch": int(epoch), "shards": max(num_workers, 1),
               "rank": rank, "world_size": world_size, "mix": mix, "cache_mb": cache_mb}
    stream = EpochStream(dataset, options)
    extra = {"prefetch_factor": prefetch_factor} if prefetch_factor is not None and num_workers else {}
    return DataLoader(stream, batch_size=batch_size, num_workers=num_workers, drop_last=drop_last,
                      pin_memory=pin_memory and torch.cuda.is_available(), **extra)


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DatasetError(f"batch_size={batch_size!r}: give a positive integer")


def uniform_loader(dataset, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                   num_workers: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False) -> DataLoader:
    """A ``DataLoader`` over a map-style dataset with a uniform shuffle fixed by ``(seed, epoch)``;
    ``rank``/``world_size`` take every ``world_size``-th sample of the permutation."""
    import numpy as np

    _check_batch_size(batch_size)
    if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DatasetError(f"rank={rank!r}, world_size={world_size!r}: need 0 <= rank < world_size")
    order = np.random.default_rng([seed, epoch]).permutation(len(dataset)) if shuffle else np.arange(len(dataset))
    return DataLoader(dataset, batch_size=batch_size, sampler=order[rank::world_size].tolist(),
                      num_workers=num_workers, drop_last=drop_last)
