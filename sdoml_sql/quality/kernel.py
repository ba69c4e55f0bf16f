"""The per-frame statistics kernel: one numba call per chunk of frames, exact results.

Pixels are handled as order-preserving integer keys of their float32 bits (NaN mapped above
every number), so extremes and ranks are integer work.  One pass reads each row once: a
vectorized loop over its three segments (off disk, on disk, off disk; no per-pixel branch)
for the NaN and zero counts, extremes and float64 sums, then a vectorized loop counting the
row's keys below twelve cuts guessed from the previous frame (frames of one chunk look
alike): per percentile, with ``a <= b`` its two order statistics there, ``a`` and ``b + 1``
and ``REACH`` keys (about 6 % of the value) beyond each.  Both loops compare keys as int32
(AVX2 has no int64 min/max; the counts take 8 pixels per instruction).  The counts name the
range between two cuts that holds each order statistic.  If it is one key (the common case:
these images have few distinct values, so an order statistic mostly repeats the previous
frame's) it is the answer; if it holds few keys (at most 1/8), they are gathered from the rows
that hold some.  Otherwise (the first frame of a chunk, a frame unlike the previous one) a
second pass adds each key's top 12 bits to a histogram, which names the bins holding the order
statistics, and keeps the keys in the previous frame's bins (a third pass if those were
others).  Radix steps over the kept keys narrow each order statistic down to its exact value,
and ``np.percentile``'s linear interpolation between two of them gives each percentile.
Measured per 512 x 512 frame on one thread (README, "How fast"), on the benchmark's AIA
chunks: ~0.33 ms (the segment loop ~0.15 ms, the cut counts ~0.12 ms, the rest ~0.05 ms),
against ~0.9 ms for the previous kernel (a histogram of every frame, a scalar loop of ~0.5 ms).
A frame that falls back costs about as much as before (~1.2 ms with the third pass), and so
does noisy, continuous-valued data (~0.73 ms).
"""

from __future__ import annotations

import numpy as np
from numba import njit

PERCENTILES = np.array([1.0, 50.0, 99.0])
TOP_SHIFT = 20  # the first histogram: the keys' top 12 bits
NARROW_BINS = 1024  # bins of each later radix step
NAN_KEY = 0xFFFFFFFF
INF_KEY = 0xFF800000  # +inf
REACH = 1 << 19  # a guessed range's reach on each side, in keys (about 6 % of a value)
# reassociation lets the float64 sums vectorize; no-NaN flags stay off: NaN is tested on the bits
FAST = {"reassoc", "contract"}


@njit(nogil=True, cache=True, inline="always")
def _key(bits):
    """The order-preserving key of one float32's bits (as int64); NaN -> NAN_KEY.  The sign
    is handled without a branch: in a magnetogram it is as random as noise."""
    if (bits & 0x7FFFFFFF) > 0x7F800000:
        return NAN_KEY
    return bits ^ ((-(bits >> 31) & 0x7FFFFFFF) | 0x80000000)


@njit(nogil=True, cache=True, inline="always")
def _signed_key(i):
    """``_key`` of a float32's bits ``i`` (int32) minus 2**31, as int32 (NaN -> the largest,
    which no number reaches), for loops that compare 8 keys per AVX2 instruction: the
    explicit casts keep numba from widening to int64 (AVX2 has no int64 min/max)."""
    mask = np.int32(0x7FFFFFFF)
    return np.int32(mask if (i & mask) > np.int32(0x7F800000) else np.int32(i ^ np.int32((i >> np.int32(31)) & mask)))


@njit(nogil=True, cache=True, fastmath=FAST)
def _segment(values, signed, shift):
    """NaN and zero counts, smallest and largest key, sums of ``v - shift`` and of its
    square over a row segment (NaN left out; ``signed``: its bits as int32, compared as
    ``_signed_key``s)."""
    mask, smallest = np.int32(0x7FFFFFFF), np.int32(-0x80000000)
    nan = zeros = np.int32(0)
    low, high = mask, smallest
    total = squares = 0.0
    for x in range(values.size):  # from 0: no negative-index test, so it vectorizes
        i = signed[x]
        magnitude = np.int32(i & mask)
        is_nan = magnitude > np.int32(0x7F800000)
        key = _signed_key(i)
        nan = np.int32(nan + is_nan)
        zeros = np.int32(zeros + (magnitude == np.int32(0)))
        low = np.int32(min(low, key))
        high = np.int32(max(high, smallest if is_nan else key))
        wide = np.float64(values[x]) - shift  # loaded for NaN too: a masked load is ~10 % slower
        wide = 0.0 if is_nan else wide
        total += wide
        squares += wide * wide
    return np.int64(nan), np.int64(zeros), low + np.int64(0x80000000), high + np.int64(0x80000000), total, squares


@njit(nogil=True, cache=True, fastmath=FAST)
def _count_below(bits, cuts, below):
    """Into ``below[j]``: how many keys of a row (``bits`` as int32) are below ``cuts[j]``
    (12 ``_signed_key``s; NaN above all)."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 = cuts[0], cuts[1], cuts[2], cuts[3], cuts[4], \
        cuts[5], cuts[6], cuts[7], cuts[8], cuts[9], cuts[10], cuts[11]
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = b8 = b9 = b10 = b11 = np.int32(0)
    for x in range(bits.size):
        key = _signed_key(bits[x])
        b0, b1, b2 = np.int32(b0 + (key < c0)), np.int32(b1 + (key < c1)), np.int32(b2 + (key < c2))
        b3, b4, b5 = np.int32(b3 + (key < c3)), np.int32(b4 + (key < c4)), np.int32(b5 + (key < c5))
        b6, b7, b8 = np.int32(b6 + (key < c6)), np.int32(b7 + (key < c7)), np.int32(b8 + (key < c8))
        b9, b10, b11 = np.int32(b9 + (key < c9)), np.int32(b10 + (key < c10)), np.int32(b11 + (key < c11))
    below[0], below[1], below[2], below[3], below[4], below[5] = b0, b1, b2, b3, b4, b5
    below[6], below[7], below[8], below[9], below[10], below[11] = b6, b7, b8, b9, b10, b11


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
def _first_pass(values, signed, cx, cy, radius, shift, cuts, rows, counts, sums, keys):
    """Counts, extremes and sums of one frame into ``counts``/``sums``/``keys``; per row ``y``,
    its finite count into ``rows[y, 12]`` and, if ``cuts`` (signed keys) is given, its keys
    below each cut into ``rows[y, :12]``."""
    height, width = values.shape
    frame = (0, 0, NAN_KEY, 0, 0.0, 0.0)
    disk_n, disk_total = 0, 0.0
    for y in range(height):
        x0, x1 = _disk_columns(y, width, cx, cy, radius)
        row, row_bits = values[y], signed[y]
        disk = _segment(row[x0:x1], row_bits[x0:x1], shift)
        off = _merge(_segment(row[:x0], row_bits[:x0], shift), _segment(row[x1:], row_bits[x1:], shift))
        frame = _merge(frame, _merge(disk, off))
        disk_n, disk_total = disk_n + x1 - x0 - disk[0], disk_total + disk[4]
        rows[y, 12] = width - disk[0] - off[0]
        if cuts.size:
            _count_below(signed[y], cuts, rows[y])
    nan, zeros, low, high, total, squares = frame
    counts[0], counts[1], counts[2], counts[3] = nan, zeros, height * width - nan, disk_n
    sums[0], sums[1], sums[2], sums[3] = shift, total, squares, disk_total
    keys[0], keys[1] = low, high


@njit(nogil=True, cache=True)
def _histogram_pass(bits, hist, aim):
    """The frame's keys' top bits into ``hist``; the keys in the bins ``aim`` names into its
    buffers."""
    hist[:] = 0
    aim[4][:] = 0
    for y in range(bits.shape[0]):
        _count_top_bits(bits[y], hist, aim)


@njit(nogil=True, cache=True)
def _ranks(n):
    """Per percentile, the ranks (0-based) of the two order statistics ``np.percentile``
    interpolates between among ``n`` keys: ``floor``/``ceil`` of ``(n - 1) q / 100``."""
    ranks = np.empty((3, 2), np.int64)
    for k in range(3):
        ranks[k, 0] = int(np.floor((n - 1) * PERCENTILES[k] / 100))
        ranks[k, 1] = min(ranks[k, 0] + 1, n - 1)
    return ranks


@njit(nogil=True, cache=True)
def _bracket(cuts, rows, ranks):
    """The key range ``[start, end)`` between two of one percentile's four cuts (or 0, NaN)
    that holds its two ranks, and the indices of those two cuts (-1: 0, 4: NaN).  ``rows``:
    per row, the keys below each cut."""
    below = rows.sum(axis=0)
    first, last = -1, 4
    for j in range(4):
        if below[j] <= ranks[0]:
            first = j
        if below[3 - j] > ranks[1]:
            last = 3 - j
    start = np.int64(cuts[first]) + 0x80000000 if first >= 0 else 0
    end = np.int64(cuts[last]) + 0x80000000 if last < 4 else NAN_KEY
    return start, end, first, last


@njit(nogil=True, cache=True)
def _gather(bits, start, end, below_start, below_end, buffer):
    """The keys in ``[start, end)`` into ``buffer`` (returns their count), scanning only the
    rows that hold some (``below_end - below_start`` per row)."""
    n = 0
    for y in range(bits.shape[0]):
        if below_end[y] > below_start[y]:
            for b in bits[y]:
                key = _key(np.int64(b))
                if start <= key < end:
                    buffer[n] = key
                    n += 1
    return n


@njit(nogil=True, cache=True)
def _guessed(bits, n, cuts, rows, ranks, buffers, hist, keys):
    """Whether each percentile's two order statistics lie between its cuts (the previous
    frame's guesses) with few keys there (``<= n / 8``); if so, they are put in ``keys[2:8]``:
    directly if the range is one key, else narrowed from the range's keys."""
    for k in range(3):
        columns = rows[:, 4 * k: 4 * k + 4]
        start, end, first, last = _bracket(cuts[4 * k: 4 * k + 4], columns, ranks[k])
        below_start = columns[:, first] if first >= 0 else np.zeros(rows.shape[0], rows.dtype)
        below_end = columns[:, last] if last < 4 else rows[:, 12]
        offset = below_start.sum()
        if below_end.sum() - offset > max(n // 8, 1):
            return False
        if end - start == 1:
            keys[2 + 2 * k] = keys[3 + 2 * k] = start
            continue
        found = buffers[k, : _gather(bits, start, end, below_start, below_end, buffers[k])]
        keys[2 + 2 * k], keys[3 + 2 * k] = _narrow(found, ranks[k, 0] - offset, ranks[k, 1] - offset,
                                                   hist[:, :NARROW_BINS])
    return True


@njit(nogil=True, cache=True)
def _cuts_after(keys, cuts):
    """The next frame's guesses from this one's order statistics ``keys[2:8]``, as signed keys:
    per percentile with order statistics ``a <= b``, ``a - REACH``, ``a``, ``b + 1``,
    ``b + 1 + REACH`` (kept within 0 and +inf + 1)."""
    for k in range(3):
        a, b = keys[2 + 2 * k], keys[3 + 2 * k] + 1
        bounds = (max(a - REACH, 0), a, b, min(b + REACH, INF_KEY + 1))
        for j in range(4):
            cuts[4 * k + j] = bounds[j] - 0x80000000


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
def _aim_at(aim, keys):
    """Points ``aim`` at the top-bit bins of the order statistics ``keys[2:8]``."""
    lows, highs = np.empty(3, np.int64), np.empty(3, np.int64)
    for k in range(3):
        lows[k] = keys[2 + 2 * k] >> TOP_SHIFT << TOP_SHIFT
        highs[k] = ((keys[3 + 2 * k] >> TOP_SHIFT) + 1 << TOP_SHIFT) - 1
    _aim(aim, lows, highs)


@njit(nogil=True, cache=True)
def _order_statistics(bits, ranks, hist, aim, keys):
    """Into ``keys[2:8]``: per percentile, the keys of the two order statistics of ``ranks``,
    from the histogram pass's ``hist``.  The candidates come from that pass if it aimed at the
    right bins (the previous frame's), else from another pass."""
    cumulative = np.cumsum(hist.sum(axis=0))
    lows, highs = np.empty(3, np.int64), np.empty(3, np.int64)
    for k in range(3):
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
    cuts, guessing = np.zeros(12, np.int32), False
    rows = np.zeros((frames.shape[1], 13), np.int32)
    all_bits, all_signed = frames.view(np.uint32), frames.view(np.int32)
    for i in range(n_frames):
        values, bits = frames[i], all_bits[i]
        cx, cy, radius = geometry[i, 0], geometry[i, 1], geometry[i, 2]
        _first_pass(values, all_signed[i], cx, cy, radius, _shift(values), cuts[: 12 * guessing], rows,
                    counts[i], sums[i], keys[i])
        n = counts[i, 2]
        if n:
            ranks = _ranks(n)
            if not (guessing and _guessed(bits, n, cuts, rows, ranks, aim[3], hist, keys[i])):
                _histogram_pass(bits, hist, aim)
                _order_statistics(bits, ranks, hist, aim, keys[i])
            _cuts_after(keys[i], cuts)
            _aim_at(aim, keys[i])
            guessing = True
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


def compiled() -> bool:
    """Whether numba's on-disk cache holds the kernel (``chunk_kernel``, with everything it
    calls), so that the first call loads it in about a second instead of compiling it for
    ~20 s.  The cache sits in the package's ``__pycache__``, or in numba's per-user cache
    directory where that cannot be written (a read-only install)."""
    import os

    cache_file = getattr(getattr(chunk_kernel, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    return index is None or os.path.exists(index)  # a numba without these attributes: do not alarm people
