"""Epoch plans: which samples each loader worker serves, in which order, and when it decodes.

Where a frame can only be read with its whole Zarr chunk (non-Blosc stores; 15 or 120 frames
decoded per frame), a uniform shuffle decodes about one chunk per channel per sample.  The
block shuffle (``shuffle=True``) instead:

1. groups the samples into *blocks*: the samples whose widest-chunk channel (AIA in an
   AIA+HMI sample) shares one chunk;
2. lays the blocks in a line where neighbours share chunks (time order, in effect), rotates
   the line by a seeded offset each epoch, and cuts it into ``world_size × workers`` shards
   of about equal sample counts: a shard is a run of neighbouring blocks, so only chunks
   straddling the cuts are decoded by two shards;
3. orders each shard's samples: blocks in seeded random order, ``mix`` blocks open at a time,
   the next sample drawn at random from the open blocks (weighted by what they have left);
4. simulates the worker over that order: a chunk is decoded when the sample being served
   needs a frame of it, and its frames are written at once into every later sample of the
   shard that uses them (those samples are *pending*).  Pending samples are held in units
   (one sample, or one batch when the loader's workers build batches); above the cache
   size, a chunk's frames go only to the soonest units that fit, and when the sample being
   served needs room the unit served last is dropped (its frames are decoded again later).

The result is deterministic for ``(seed, epoch)``; every sample is in exactly one shard.
What this gives up against a uniform shuffle: a batch holds samples from at most ``mix``
blocks (about ``mix`` × 12 hours of a 6-minute AIA selection) instead of the whole range;
:func:`batch_time_spread` measures it.

``shuffle="uniform"`` (:func:`uniform_plan`) is a true uniform permutation: each sample reads
only its own frames, which partial Blosc reads make cheap (``sdoml_sql.fetch.frames``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from sdoml_sql.exceptions import DatasetError

DEFAULT_CACHE_MB = 2048.0
#: A frame's key in caches and schedules: ``array_id * FRAME_KEY + idx`` (a chunk's: ``… + chunk``).
FRAME_KEY = 1 << 40
DEFAULT_MIX = 1
UNIFORM = "uniform"
SHUFFLES = (True, False, UNIFORM)


@dataclass(frozen=True)
class Read:
    """Decode one chunk of array ``array_id``; frame ``lo + offsets[j]`` goes to the
    ``(position, column)`` places ``targets[j]`` of the samples waiting for it."""

    array_id: int
    lo: int
    hi: int
    offsets: tuple[int, ...]
    targets: tuple[tuple[tuple[int, int], ...], ...]


@dataclass(frozen=True)
class Step:
    """Serve the sample at ``position`` (dataset sample ``sample``): drop the pending units
    ``evict``, run ``reads``; the sample is then complete."""

    position: int
    sample: int
    evict: tuple[int, ...]
    reads: tuple[Read, ...]


@dataclass
class Schedule:
    """One worker's epoch: its steps in order, pending samples grouped in units of ``group``
    consecutive positions (1, or the batch size when the worker builds batches), and the cost."""

    steps: list[Step]
    group: int
    decodes: int
    peak_units: int

    @property
    def samples(self) -> list[int]:
        return [s.sample for s in self.steps]


@dataclass
class EpochPlan:
    """The shards of one rank for one epoch (one per loader worker, or one with no workers)."""

    schedules: list[Schedule]
    distinct_chunks: int
    cache_bytes: int
    sample_bytes: int
    blocks: int

    @property
    def samples(self) -> int:
        return sum(len(s.steps) for s in self.schedules)

    @property
    def decodes(self) -> int:
        return sum(s.decodes for s in self.schedules)

    @property
    def peak_cache_bytes(self) -> int:
        """The most memory any worker of the plan holds in samples waiting for frames."""
        return max((s.peak_units * s.group for s in self.schedules), default=0) * self.sample_bytes

    def __str__(self) -> str:
        return (f"{self.samples} samples in {len(self.schedules)} shard(s) from {self.blocks} blocks; "
                f"{self.decodes} chunk decodes for {self.distinct_chunks} distinct chunks "
                f"({self.decodes / max(self.distinct_chunks, 1):.3f}x); pending samples peak "
                f"{self.peak_cache_bytes / 1e6:.0f} MB of {self.cache_bytes / 1e6:.0f} MB per worker")


# --- blocks and shards ---------------------------------------------------------------------

def frame_keys(ds, samples) -> np.ndarray:
    """``(len(samples), C)`` frame keys (``array_id * FRAME_KEY + idx``; -1 where no frame)."""
    ids = ds.array_ids[samples].astype(np.int64)
    return np.where(ids >= 0, ids * FRAME_KEY + ds.idx[samples], -1)


def chunk_keys(ds, samples) -> np.ndarray:
    """``(len(samples), C)`` chunk keys (``array_id * FRAME_KEY + chunk``; -1 where no frame)."""
    ids = ds.array_ids[samples].astype(np.int64)
    t = ds.chunk_frames[np.maximum(ids, 0)]
    return np.where(ids >= 0, ids * FRAME_KEY + ds.idx[samples] // t, -1)


def sample_blocks(ds) -> list[np.ndarray]:
    """Samples grouped by the chunk of their widest-chunk channel, in order of first sample."""
    samples = np.arange(len(ds))
    chunks = chunk_keys(ds, samples)
    width = np.where(ds.array_ids >= 0, ds.chunk_frames[np.maximum(ds.array_ids, 0)], -1)
    primary = chunks[samples, np.argmax(width, axis=1)]
    _, first, inverse = np.unique(primary, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    groups = [[] for _ in first]
    for s, g in enumerate(inverse.ravel()):
        groups[g].append(s)
    return [np.asarray(groups[g], dtype=np.int64) for g in order]


def block_line(ds, blocks: list[np.ndarray]) -> list[int]:
    """Block numbers in a line where each block follows one it shares the most chunks with."""
    chunk_sets = [set(np.unique(chunk_keys(ds, b)).tolist()) - {-1} for b in blocks]
    holders = defaultdict(set)
    for b, chunks in enumerate(chunk_sets):
        for chunk in chunks:
            holders[chunk].add(b)
    line, seen, unvisited = [], set(), iter(range(len(blocks)))
    current = None
    while len(line) < len(blocks):
        neighbours = {n for c in chunk_sets[current] for n in holders[c]} - seen if current is not None else set()
        if neighbours:
            current = max(neighbours, key=lambda n: (len(chunk_sets[n] & chunk_sets[current]), -n))
        else:
            current = next(b for b in unvisited if b not in seen)
        line.append(current)
        seen.add(current)
    return line


def boundary_costs(ds, blocks: list[np.ndarray], line: list[int]) -> list[int]:
    """``costs[p]``: chunks shared by the blocks at line positions ``p - 1`` and ``p`` (circular)."""
    chunk_sets = [set(np.unique(chunk_keys(ds, blocks[b])).tolist()) - {-1} for b in line]
    return [len(chunk_sets[p - 1] & chunk_sets[p]) for p in range(len(line))]


def cut_line(sizes: list[int], pieces: int, costs: list[int] | None = None) -> list[list[int]]:
    """Cut positions 0..len(sizes)-1 into ``pieces`` contiguous runs of about equal total size.

    Each cut goes where the fewest chunks are shared (``costs[p]``: cutting before ``p``), among
    the positions within half the largest block of the equal-size point."""
    starts = np.concatenate([[0], np.cumsum(sizes)]) if sizes else np.zeros(1)
    total, slack = starts[-1], max(sizes, default=0) / 2
    cuts, previous = [], 0

    def cost(p):
        return costs[p] if costs is not None and 0 < p < len(sizes) else 0

    for k in range(1, pieces):
        target = total * k / pieces
        options = [p for p in range(previous, len(sizes) + 1) if abs(starts[p] - target) <= slack]
        options = options or [min(range(previous, len(sizes) + 1), key=lambda p: abs(starts[p] - target))]
        previous = min(options, key=lambda p: (cost(p), abs(starts[p] - target)))
        cuts.append(previous)
    edges = [0, *cuts, len(sizes)]
    return [list(range(edges[k], edges[k + 1])) for k in range(pieces)]


# --- order inside a shard ------------------------------------------------------------------

def mixed_order(blocks: list[np.ndarray], mix: int, rng: np.random.Generator) -> list[int]:
    """Blocks in random order, ``mix`` open at a time, each sample drawn from the open blocks."""
    pending = [list(rng.permutation(blocks[b])) for b in rng.permutation(len(blocks))]
    pending.reverse()
    open_blocks, order = [], []
    while open_blocks or pending:
        while len(open_blocks) < mix and pending:
            open_blocks.append(pending.pop())
        sizes = np.array([len(b) for b in open_blocks], dtype=np.float64)
        pick = int(np.searchsorted(np.cumsum(sizes), rng.random() * sizes.sum(), side="right"))
        pick = min(pick, len(open_blocks) - 1)
        order.append(int(open_blocks[pick].pop()))
        if not open_blocks[pick]:
            open_blocks.pop(pick)
    return order


# --- the pending samples ------------------------------------------------------------------

def schedule(ds, order, budget_units: int, group: int = 1) -> Schedule:
    """Simulate a worker serving ``order``, holding at most ``budget_units`` pending units.

    A chunk is decoded when the sample being served needs a frame of it; its frames are then
    written into every later sample of ``order`` that uses them (the sample is *pending*),
    soonest first, as long as the units pending stay within the budget.  A sample that did
    not fit gets its frames from a later decode.  When the sample being served needs room,
    the unit served last is dropped (its frames will be decoded again).
    """
    order = [int(s) for s in order]
    keys = frame_keys(ds, np.asarray(order, dtype=np.int64)).tolist() if order else []
    waiting: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # chunk -> (position, column, key)
    for position, row in enumerate(keys):
        for column, key in enumerate(row):
            if key >= 0:
                waiting[_chunk_key(ds, key)].append((position, column, key))
    filled: dict[int, set[int]] = defaultdict(set)  # position -> columns written
    pending: set[int] = set()
    steps, decodes, peak = [], 0, 0
    for position, (sample, row) in enumerate(zip(order, keys)):
        unit = position // group
        evict: list[int] = []
        reads = []
        missing = [key for column, key in enumerate(row) if key >= 0 and column not in filled[position]]
        for chunk in dict.fromkeys(_chunk_key(ds, key) for key in missing):
            if unit not in pending and len(pending) >= budget_units:
                victim = max(pending)
                pending.discard(victim)
                evict.append(victim)
                for q in range(victim * group, (victim + 1) * group):
                    filled.pop(q, None)
            targets = _targets(waiting[chunk], position, group, filled, pending, budget_units)
            reads.append(_read(ds, targets))
            decodes += 1
        peak = max(peak, len(pending))
        steps.append(Step(position, sample, tuple(evict), tuple(reads)))
        filled.pop(position, None)
        if position % group == group - 1 or position == len(order) - 1:
            pending.discard(unit)
    return Schedule(steps, group, decodes, peak)


def _targets(waiting, position: int, group: int, filled, pending: set[int], budget: int):
    """The (position, column, key) places a chunk decoded now fills: later samples lacking the
    frame whose unit is pending or, soonest first, fits in the budget."""
    targets = []
    for q, column, key in waiting:
        if q < position or column in filled[q]:
            continue
        unit = q // group
        if unit not in pending:
            if len(pending) >= budget:
                continue
            pending.add(unit)
        filled[q].add(column)
        targets.append((q, column, key))
    return targets


def _chunk_key(ds, key: int) -> int:
    array_id, idx = divmod(key, FRAME_KEY)
    return array_id * FRAME_KEY + idx // int(ds.chunk_frames[array_id])


def _read(ds, targets) -> Read:
    by_frame: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for q, column, key in targets:
        by_frame[key].append((q, column))
    frames = sorted(by_frame)
    array_id = frames[0] // FRAME_KEY
    idx = [k % FRAME_KEY for k in frames]
    return Read(array_id, idx[0], idx[-1] + 1, tuple(i - idx[0] for i in idx),
                tuple(tuple(by_frame[k]) for k in frames))


# --- the plan ------------------------------------------------------------------------------

def epoch_plan(ds, shuffle: bool | str = True, seed: int = 0, epoch: int = 0, shards: int = 1, rank: int = 0,
               world_size: int = 1, mix: int = DEFAULT_MIX, cache_mb: float | None = None,
               group: int = 1) -> EpochPlan:
    """The shards of ``rank`` (one per worker) for epoch ``epoch``: see the module docstring.

    ``shuffle`` is ``True`` (the block shuffle), ``False`` (storage order) or ``"uniform"``
    (:func:`uniform_plan`)."""
    _check_plan_options(ds, rank, world_size, mix, shards)
    if shuffle not in SHUFFLES:
        raise DatasetError(f"shuffle={shuffle!r}: choose True (blocks), False or 'uniform'")
    cache_bytes = int((DEFAULT_CACHE_MB if cache_mb is None else cache_mb) * 1e6)
    unit_bytes = group * ds.image_shape[0] * ds.frame_bytes
    budget = cache_bytes // unit_bytes
    if budget < 1:
        raise DatasetError(f"cache_mb={cache_bytes / 1e6:g} is less than one {'batch' if group > 1 else 'sample'} "
                           f"({unit_bytes / 1e6:.1f} MB)")
    if shuffle == UNIFORM:
        return uniform_plan(ds, seed, epoch, shards, rank, world_size, cache_bytes, group)
    blocks = sample_blocks(ds)
    line = block_line(ds, blocks)
    costs = boundary_costs(ds, blocks, line)
    if shuffle and line:  # start the line at a seeded one of the cheapest places to cut it
        cheapest = [p for p, cost in enumerate(costs) if cost == min(costs)]
        shift = cheapest[int(np.random.default_rng([seed, epoch]).integers(len(cheapest)))]
        line, costs = line[shift:] + line[:shift], costs[shift:] + costs[:shift]
    runs = cut_line([len(blocks[b]) for b in line], shards * world_size, costs)
    schedules = []
    for shard in range(rank * shards, (rank + 1) * shards):
        mine = [blocks[line[p]] for p in runs[shard]]
        if shuffle:
            order = mixed_order(mine, mix, np.random.default_rng([seed, epoch, shard]))
        else:
            order = sorted(int(s) for b in mine for s in b)
        schedules.append(schedule(ds, order, budget, group))
    return EpochPlan(schedules, _distinct_chunks(ds), cache_bytes, ds.image_shape[0] * ds.frame_bytes, len(blocks))


def uniform_plan(ds, seed: int, epoch: int, shards: int, rank: int, world_size: int, cache_bytes: int,
                 group: int) -> EpochPlan:
    """A uniform shuffle: one permutation of every sample fixed by ``(seed, epoch)``, cut into
    ``world_size × shards`` contiguous runs of about equal length (rank ``r`` takes runs
    ``r·shards …``).  Each sample (each batch, when workers build batches) reads only its own
    frames: a chunk read serves the samples of the unit being built and nothing later, so
    nothing is pending between units and partial Blosc reads (``sdoml_sql.fetch.frames``) keep
    the cost per frame small."""
    order = np.random.default_rng([seed, epoch]).permutation(len(ds))
    runs = np.array_split(order, world_size * shards)
    schedules = [schedule(ds, runs[shard], 1, group) for shard in range(rank * shards, (rank + 1) * shards)]
    return EpochPlan(schedules, _distinct_chunks(ds), cache_bytes, ds.image_shape[0] * ds.frame_bytes, len(ds))


def _distinct_chunks(ds) -> int:
    return len(np.unique(chunk_keys(ds, np.arange(len(ds))))) - int((ds.array_ids < 0).any())


def _check_plan_options(ds, rank: int, world_size: int, mix: int, shards: int) -> None:
    if not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise DatasetError(f"world_size={world_size!r}: give a positive integer")
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise DatasetError(f"rank={rank!r}: give an integer from 0 to world_size - 1 = {world_size - 1}")
    if not isinstance(mix, (int, np.integer)) or mix < 1:
        raise DatasetError(f"mix={mix!r}: give the number of blocks open at a time, at least 1")
    if len(ds) == 0:
        raise DatasetError("the dataset has no samples")


# --- what the shuffle gives up -------------------------------------------------------------

def batch_time_spread(times: np.ndarray, order, batch_size: int) -> float:
    """Mean absolute time between two samples of one batch (hours), batches cut from ``order``."""
    spreads = []
    t = times.astype("datetime64[s]").astype(np.int64)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        batch = np.sort(t[np.asarray(order[start:start + batch_size])])
        n = len(batch)
        weights = 2 * np.arange(n) - n + 1  # sum over pairs of |ti - tj| for sorted values
        spreads.append(float((weights * batch).sum()) / (n * (n - 1) / 2))
    return float(np.mean(spreads)) / 3600 if spreads else float("nan")
