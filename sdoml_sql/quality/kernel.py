"""The per-frame statistics kernel: one numba call per chunk of frames, exact results.

Pixels are handled as order-preserving integer keys of their float32 bits (NaN mapped above
every number), so extremes and ranks are integer work.  One pass reads each row once: a
vectorized loop over its three segments (off disk, on disk, off disk; no per-pixel branch)
for the NaN and zero counts, extremes and float64 sums, then a scalar loop adding its keys'
top 12 bits to a histogram and keeping the keys that fall in the bins the previous frame's
percentiles fell in (frames of one chunk look alike).  The histogram names the bins this
frame's order statistics are in; if the kept keys do not cover them, a second pass keeps them.
Radix steps over the few kept keys then narrow each order statistic down to its exact value,
and ``np.percentile``'s linear interpolation between two of them gives each percentile.
Measured per 512 x 512 frame (README, "How fast"): ~0.85 ms, against ~1.3 ms for the previous
per-frame kernel (sample-bounded candidates, then ``np.partition``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

PERCENTILES = np.array([1.0, 50.0, 99.0])
TOP_SHIFT = 20  # the first histogram: the keys' top 12 bits
NARROW_BINS = 1024  # bins of each later radix step
NAN_KEY = 0xFFFFFFFF
# reassociation lets the float64 sums vectorize; no-NaN flags stay off: NaN is tested on the bits
FAST = {"reassoc", "contract"}


@njit(nogil=True, cache=True, inline="always")
def _key(bits):
    """The order-preserving key of one float32's bits (as int64); NaN -> NAN_KEY.  The sign
    is handled without a branch: in a magnetogram it is as random as noise."""
    if (bits & 0x7FFFFFFF) > 0x7F800000:
        return NAN_KEY
    return bits ^ ((-(bits >> 31) & 0x7FFFFFFF) | 0x80000000)


@njit(nogil=True, cache=True, fastmath=FAST)
def _segment(values, bits, shift):
    """NaN and zero counts, smallest and largest key, sums of ``v - shift`` and of its
    square over a row segment (NaN left out)."""
    nan = zeros = 0
    low, high = NAN_KEY, 0
    total = squares = 0.0
    for x in range(values.size):  # from 0: no negative-index test, so it vectorizes
        b = np.int64(bits[x])
        key = _key(b)
        is_nan = key == NAN_KEY
        nan += is_nan
        zeros += (b & 0x7FFFFFFF) == 0
        low = min(low, key)
        high = max(high, 0 if is_nan else key)
        wide = 0.0 if is_nan else np.float64(values[x]) - shift
        total += wide
        squares += wide * wide
    return nan, zeros, low, high, total, squares


@njit(nogil=True, cache=True, inline="always")
def _keep_candidate(key, aim):
    """Appends ``key`` to the buffer of each percentile whose aimed key range holds it."""
    _, lows, highs, buffers, counts = aim
    for k in range(3):
        if lows[k] <= key <= highs[k]:
            buffers[k, counts[k]] = key
            counts[k] += 1


@njit(nogil=True, cache=True)
def _count_top_bits(bits, hist, aim):
    """Adds a row's keys to ``hist`` (4 interleaved histograms: repeats of one bin in
    neighbouring pixels would otherwise wait on each other), and those in an aimed bin to
    their percentile's candidates."""
    wanted = aim[0]
    for x in range(bits.size):
        key = _key(np.int64(bits[x]))
        hist[x & 3, key >> TOP_SHIFT] += 1
        if wanted[key >> TOP_SHIFT]:
            _keep_candidate(key, aim)


@njit(nogil=True, cache=True)
def _disk_columns(y, width, cx, cy, radius):
    """``[x0, x1)``: the columns of row ``y`` with ``(x - cx)² + (y - cy)² <= radius²``."""
    if not (np.isfinite(cx) and np.isfinite(cy) and radius >= 0) or (y - cy) ** 2 > radius * radius:
        return 0, 0
    half = np.sqrt(max(radius * radius - (y - cy) ** 2, 0.0))
    x0 = min(max(int(np.ceil(cx - half)), 0), width)
    x1 = min(max(int(np.floor(cx + half)) + 1, 0), width)
    return x0, max(x0, x1)


@njit(nogil=True, cache=True)
def _shift(values):
    """A value near the frame's mean (the finite pixels of every 32nd row), subtracted before
    the sums so that the variance does not cancel."""
    total, n = 0.0, 0
    for y in range(0, values.shape[0], 32):
        for v in values[y]:
            if abs(v) < np.inf:
                total += v
                n += 1
    return total / n if n else 0.0


@njit(nogil=True, cache=True, inline="always")
def _merge(a, b):
    """Two segments' ``_segment`` results as one."""
    return a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3]), a[4] + b[4], a[5] + b[5]


@njit(nogil=True, cache=True)
def _first_pass(values, bits, cx, cy, radius, shift, hist, aim, counts, sums, keys):
    """Counts, extremes and sums of one frame into ``counts``/``sums``/``keys``; its keys' top
    bits into ``hist``; the keys in the bins ``aim`` names into its buffers."""
    height, width = values.shape
    frame = (0, 0, NAN_KEY, 0, 0.0, 0.0)
    disk_n, disk_total = 0, 0.0
    hist[:] = 0
    aim[4][:] = 0
    for y in range(height):
        x0, x1 = _disk_columns(y, width, cx, cy, radius)
        row, row_bits = values[y], bits[y]
        disk = _segment(row[x0:x1], row_bits[x0:x1], shift)
        off = _merge(_segment(row[:x0], row_bits[:x0], shift), _segment(row[x1:], row_bits[x1:], shift))
        frame = _merge(frame, _merge(disk, off))
        disk_n, disk_total = disk_n + x1 - x0 - disk[0], disk_total + disk[4]
        _count_top_bits(row_bits, hist, aim)
    nan, zeros, low, high, total, squares = frame
    counts[0], counts[1], counts[2], counts[3] = nan, zeros, height * width - nan, disk_n
    sums[0], sums[1], sums[2], sums[3] = shift, total, squares, disk_total
    keys[0], keys[1] = low, high


@njit(nogil=True, cache=True)
def _bin_of(cumulative, rank):
    """The bin holding the ``rank``-th key (0-based), and the count of keys below it."""
    b = np.searchsorted(cumulative, rank, side="right")
    return b, cumulative[b - 1] if b else 0


@njit(nogil=True, cache=True)
def _collect(bits, aim):
    """The second pass, when the first one aimed at other bins: the candidates again."""
    wanted, counts = aim[0], aim[4]
    counts[:] = 0
    for b in bits.ravel():
        key = _key(np.int64(b))
        if wanted[key >> TOP_SHIFT]:
            _keep_candidate(key, aim)


@njit(nogil=True, cache=True)
def _split(keys, shift, d_lo, d_hi):
    """The largest key whose digit ``key >> shift`` is ``d_lo``, the smallest whose is ``d_hi``."""
    low, high = 0, NAN_KEY
    for key in keys:
        if key >> shift == d_lo:
            low = max(low, key)
        if key >> shift == d_hi:
            high = min(high, key)
    return low, high


@njit(nogil=True, cache=True)
def _keep(keys, shift, digit):
    """Moves the keys whose digit ``key >> shift`` is ``digit`` to the front; returns their count."""
    n = 0
    for key in keys:
        if key >> shift == digit:
            keys[n] = key
            n += 1
    return n


@njit(nogil=True, cache=True)
def _narrow(keys, r_lo, r_hi, hist):
    """The keys of ranks ``r_lo`` and ``r_hi`` (``<= r_lo + 1``) among ``keys`` (reordered):
    radix steps of up to ``hist.shape[1]`` digits over the keys' span, each keeping the one
    digit both ranks fall in."""
    while True:
        low, high = keys.min(), keys.max()
        if low == high:
            return low, low
        shift = 0
        while (high - low) >> shift >= hist.shape[1] - 1:
            shift += 1
        base = low >> shift
        hist[:] = 0
        for i in range(keys.size):
            hist[i & 3, (keys[i] >> shift) - base] += 1
        cumulative = np.cumsum(hist.sum(axis=0))
        d_lo, below = _bin_of(cumulative, r_lo)
        d_hi, _ = _bin_of(cumulative, r_hi)
        if d_lo != d_hi:
            return _split(keys, shift, base + d_lo, base + d_hi)
        keys = keys[: _keep(keys, shift, base + d_lo)]
        r_lo, r_hi = r_lo - below, r_hi - below


@njit(nogil=True, cache=True)
def _aim(aim, lows, highs):
    """Points ``aim`` at the key ranges ``[lows[k], highs[k]]`` (whole top-bit bins)."""
    wanted, old_lows, old_highs = aim[0], aim[1], aim[2]
    for k in range(3):
        wanted[old_lows[k] >> TOP_SHIFT: (old_highs[k] >> TOP_SHIFT) + 1] = 0
    for k in range(3):
        wanted[lows[k] >> TOP_SHIFT: (highs[k] >> TOP_SHIFT) + 1] = 1
    old_lows[:], old_highs[:] = lows, highs


@njit(nogil=True, cache=True)
def _order_statistics(bits, n, hist, aim, keys):
    """Into ``keys[2:8]``: per percentile, the keys of the two order statistics it lies between
    (ranks ``floor``/``ceil`` of ``(n - 1) q / 100``, as ``np.percentile``).  The candidates
    come from the first pass if it aimed at the right bins (the previous frame's: frames of
    one chunk look alike), else from a second pass; ``aim`` is left at this frame's bins."""
    cumulative = np.cumsum(hist.sum(axis=0))
    ranks, lows, highs = np.empty((3, 2), np.int64), np.empty(3, np.int64), np.empty(3, np.int64)
    for k in range(3):
        ranks[k, 0] = int(np.floor((n - 1) * PERCENTILES[k] / 100))
        ranks[k, 1] = min(ranks[k, 0] + 1, n - 1)
        lows[k] = _bin_of(cumulative, ranks[k, 0])[0] << TOP_SHIFT
        highs[k] = ((_bin_of(cumulative, ranks[k, 1])[0] + 1) << TOP_SHIFT) - 1
    if np.any(lows < aim[1]) or np.any(highs > aim[2]):
        _aim(aim, lows, highs)
        _collect(bits, aim)
    for k in range(3):
        first_bin = aim[1][k] >> TOP_SHIFT
        below = cumulative[first_bin - 1] if first_bin else 0
        keys[2 + 2 * k], keys[3 + 2 * k] = _narrow(
            aim[3][k, : aim[4][k]], ranks[k, 0] - below, ranks[k, 1] - below, hist[:, :NARROW_BINS])
    _aim(aim, lows, highs)


@njit(nogil=True, cache=True)
def chunk_kernel(frames, geometry):
    """Per frame of ``frames`` (n, H, W) float32, with ``geometry`` (n, 3) its disk centre x, y
    and radius: ``counts`` (nan, zeros, finite, on disk), ``sums`` (shift, and of
    ``v - shift``: all, squares, on disk) and ``keys`` (min, max, the percentiles' pairs)."""
    n_frames = frames.shape[0]
    counts = np.zeros((n_frames, 4), np.int64)
    sums = np.zeros((n_frames, 4), np.float64)
    keys = np.zeros((n_frames, 8), np.int64)
    hist = np.empty((4, (NAN_KEY >> TOP_SHIFT) + 1), np.int64)
    # which top-bit bins to keep, their key ranges per percentile, the candidates, their counts
    aim = (np.zeros((NAN_KEY >> TOP_SHIFT) + 1, np.uint8), np.full(3, NAN_KEY), np.zeros(3, np.int64),
           np.empty((3, frames[0].size if n_frames else 0), np.int64), np.zeros(3, np.int64))
    all_bits = frames.view(np.uint32)
    for i in range(n_frames):
        values, bits = frames[i], all_bits[i]
        cx, cy, radius = geometry[i, 0], geometry[i, 1], geometry[i, 2]
        _first_pass(values, bits, cx, cy, radius, _shift(values), hist, aim, counts[i], sums[i], keys[i])
        if counts[i, 2]:
            _order_statistics(bits, counts[i, 2], hist, aim, keys[i])
    return counts, sums, keys


def key_values(keys: np.ndarray) -> np.ndarray:
    """The float32 values of order-preserving keys (the inverse of ``_key``)."""
    keys = keys.astype(np.uint32)
    return np.where(keys >= 0x80000000, keys ^ np.uint32(0x80000000), ~keys).view(np.float32)


def chunk_columns(frames: np.ndarray, geometry: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of each frame of ``frames`` as columns (NaN where a value is undefined:
    all-NaN frames, an empty disk or off-disk region)."""
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    counts, sums, keys = chunk_kernel(frames, np.ascontiguousarray(geometry, dtype=np.float64))
    nan, zeros, n, disk_n = counts.T
    shift, total, squares, disk_total = sums.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        columns = {
            "nan_count": nan, "zero_count": zeros,
            "min": key_values(keys[:, 0]), "max": key_values(keys[:, 1]),
            "mean": shift + mean, "std": np.sqrt(np.maximum(squares / n - mean * mean, 0.0)),
            **{name: _interpolate(n, q, key_values(keys[:, 2 + 2 * k]), key_values(keys[:, 3 + 2 * k]))
               for k, (name, q) in enumerate(zip(("p01", "p50", "p99"), PERCENTILES))},
            "disk_mean": shift + disk_total / disk_n,
            "offdisk_mean": shift + (total - disk_total) / (n - disk_n),
        }
    empty = n == 0
    for name in ("min", "max", "p01", "p50", "p99"):
        columns[name][empty] = np.nan
    return columns


def _interpolate(n: np.ndarray, q: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.percentile``'s linear interpolation between the order statistics ``a`` and ``b``."""
    position = (n - 1) * q / 100
    t = position - np.floor(position)
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.where(t < 0.5, a + (b - a) * t, b - (b - a) * (1 - t)).astype(np.float32)
