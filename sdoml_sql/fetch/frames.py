"""The package's one chunk reader: a set of frames from one Zarr chunk.

Every read of pixels (fetch, maps, movies, Fido, dataset samples, exports, frame statistics)
comes here.  A chunk holds ``T`` frames; the reader takes two paths:

* **partial** (Blosc arrays, few frames wanted): Blosc splits a chunk into independently
  compressed blocks (256 KiB in the SDOML stores: 4 per 512² float32 frame) and lists their
  start offsets after its 16-byte header.  The reader reads the header and that table, then
  only the blocks covering the wanted frames (a frame may straddle blocks), re-packs them
  under a new header and decodes them with ``numcodecs.blosc.decompress``.  On a remote store
  the header and table come with one ranged GET and the blocks with concurrent ranged GETs
  (adjacent ranges merged).  A chunk Blosc stored uncompressed (*memcpyed*) is read as raw
  bytes.
* **whole** (most of the chunk wanted, or any other codec, filters, a chunk split across
  frames): the chunk's bytes decoded at once, into a buffer the reader keeps between reads.

The choice is :data:`PARTIAL_MAX_SHARE`: the partial path is taken when the wanted
frames are at most that share of the chunk's frames (measured, see README "What a fetch
reads").  Both paths give the pixels zarr's own read gives; an absent chunk reads as the fill
value; a damaged chunk (bad header, an offset or a stream length past its end, a block that
does not decode) raises one :class:`FetchError` line naming store, array, chunk key and
frames, never wrong pixels.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from sdoml_sql.exceptions import FetchError

BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes
BLOSC_VERSIONS = (1, 2)  # c-blosc 1.x chunk formats
MEMCPYED, DONT_SPLIT = 0x02, 0x10  # header flags: stored uncompressed; blocks not split into streams
MAX_SPLITS, MIN_SPLIT_BYTES = 16, 128  # c-blosc's rule for splitting a block into typesize streams
#: Bytes of the first ranged GET of a remote chunk: header plus offset tables of up to 1020 blocks.
HEADER_READ_BYTES = 4096
#: Ranges of one chunk closer than this are fetched as one.
MERGE_GAP_BYTES = 1024
#: The partial path is taken while the wanted frames are at most this share of a chunk's frames.
PARTIAL_MAX_SHARE = 0.6


class DamagedChunk(Exception):
    """A chunk whose bytes do not hold what its header says (turned into a FetchError)."""


# --- Blosc chunk layout ----------------------------------------------------------------------

@dataclass(frozen=True)
class BloscHeader:
    """The 16-byte header of a Blosc (format 1/2) chunk."""

    version: int
    versionlz: int
    flags: int
    typesize: int
    nbytes: int
    blocksize: int
    cbytes: int

    @classmethod
    def parse(cls, raw: bytes, expected_nbytes: int) -> BloscHeader:
        if len(raw) < BLOSC_HEADER.size:
            raise DamagedChunk(f"{len(raw)} bytes, shorter than a Blosc header")
        header = cls(*BLOSC_HEADER.unpack_from(raw))
        if header.version not in BLOSC_VERSIONS or not header.typesize or not header.blocksize:
            raise DamagedChunk(f"not a Blosc header (version {header.version}, typesize {header.typesize}, "
                               f"blocksize {header.blocksize})")
        if header.nbytes != expected_nbytes:
            raise DamagedChunk(f"header says {header.nbytes} decoded bytes, the array's chunk has {expected_nbytes}")
        if header.memcpyed and header.cbytes != header.nbytes + BLOSC_HEADER.size:
            raise DamagedChunk(f"stored uncompressed but {header.cbytes} bytes long for {header.nbytes}")
        return header

    @property
    def memcpyed(self) -> bool:
        return bool(self.flags & MEMCPYED)

    @property
    def nblocks(self) -> int:
        return -(-self.nbytes // self.blocksize)

    @property
    def table_end(self) -> int:
        """Where the block offset table ends (and compressed data may start)."""
        return BLOSC_HEADER.size if self.memcpyed else BLOSC_HEADER.size + 4 * self.nblocks

    def block_size(self, block: int) -> int:
        """Decoded bytes of ``block`` (the last one may be short: Blosc's leftover block)."""
        return min(self.blocksize, self.nbytes - block * self.blocksize)

    def splits(self, block: int) -> int:
        """How many streams ``block`` was compressed as (c-blosc's ``blosc_d`` rule)."""
        leftover = self.block_size(block) < self.blocksize
        if (not self.flags & DONT_SPLIT and self.typesize <= MAX_SPLITS
                and self.blocksize // self.typesize >= MIN_SPLIT_BYTES and not leftover):
            return self.typesize
        return 1


def block_bounds(header: BloscHeader, table: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Each block's ``(start, end)`` in the chunk.  Blocks are stored back to back, though in any
    order when compressed with threads: a block ends where the next stored block starts."""
    if len(table) < header.table_end:
        raise DamagedChunk(f"{len(table)} bytes, shorter than its header and offset table ({header.table_end})")
    starts = np.frombuffer(table, "<i4", header.nblocks, BLOSC_HEADER.size).astype(np.int64)
    if (starts < header.table_end).any() or (starts >= header.cbytes).any():
        bad = int(np.flatnonzero((starts < header.table_end) | (starts >= header.cbytes))[0])
        raise DamagedChunk(f"block {bad} starts at {starts[bad]}, outside the chunk's {header.cbytes} bytes")
    order = np.argsort(starts, kind="stable")
    ends = np.empty_like(starts)
    ends[order[:-1]] = starts[order[1:]]
    ends[order[-1]] = header.cbytes
    return starts, ends


def blocks_of_frames(frames: np.ndarray, frame_bytes: int, blocksize: int) -> np.ndarray:
    """The sorted blocks holding any byte of the given frames (frames may straddle blocks)."""
    first = frames * frame_bytes // blocksize
    last = ((frames + 1) * frame_bytes - 1) // blocksize
    return np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first.tolist(), last.tolist())]))


def checked_block(header: BloscHeader, block: int, data: memoryview) -> int:
    """The stored length of ``block`` (``data`` starts with it and runs to the next stored
    block), checked stream by stream: every stream's length prefix must stay inside."""
    position, streams = 0, header.splits(block)
    raw_stream = header.block_size(block) // streams
    for _ in range(streams):
        if position + 4 > len(data):
            raise DamagedChunk(f"block {block} is cut short")
        length = int.from_bytes(data[position:position + 4], "little", signed=True)
        if length <= 0 or length > raw_stream or position + 4 + length > len(data):
            raise DamagedChunk(f"block {block} has a stream of {length} bytes past the block's end")
        position += 4 + length
    return position


def check_blosc_chunk(raw: bytes, expected_nbytes: int) -> None:
    """Check a whole Blosc chunk before c-blosc decodes it (it trusts the offsets and lengths it
    finds): the header, its length, every block's offset and every stream's length."""
    header = BloscHeader.parse(raw, expected_nbytes)
    if len(raw) != header.cbytes:
        raise DamagedChunk(f"{len(raw)} bytes, its header says {header.cbytes}")
    if header.memcpyed:
        return
    view = memoryview(raw)
    for block, (start, end) in enumerate(zip(*block_bounds(header, raw))):
        checked_block(header, block, view[start:end])


def repack(header: BloscHeader, blocks: np.ndarray, stored: list[memoryview]) -> bytes:
    """A valid Blosc buffer holding just ``blocks`` (their ``stored`` bytes), in that order."""
    count = len(blocks)
    nbytes = sum(header.block_size(int(b)) for b in blocks)
    table_end = BLOSC_HEADER.size + 4 * count
    lengths = np.array([len(s) for s in stored], dtype=np.int64)
    starts = table_end + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cbytes = table_end + int(lengths.sum())
    out = bytearray(cbytes)
    BLOSC_HEADER.pack_into(out, 0, header.version, header.versionlz, header.flags, header.typesize,
                           nbytes, header.blocksize, cbytes)
    out[BLOSC_HEADER.size:table_end] = starts.astype("<i4").tobytes()
    for start, data in zip(starts.tolist(), stored):
        out[start:start + len(data)] = data
    return bytes(out)


def merged_ranges(ranges: list[tuple[int, int]], gap: int = MERGE_GAP_BYTES) -> list[tuple[int, int]]:
    """Sorted ``(start, end)`` byte ranges with neighbours closer than ``gap`` merged."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


# --- chunk bytes: a local file, or ranged GETs through the array's store ----------------------

class LocalChunk:
    """A chunk file on local disk (a local store, or a remote store's cached chunk)."""

    def __init__(self, path: str):
        self.path = path

    def whole(self) -> bytes | None:
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def ranges(self, ranges: list[tuple[int, int]]) -> list[bytes] | None:
        try:
            handle = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return [os.pread(handle, end - start, start) for start, end in ranges]
        finally:
            os.close(handle)

    def size(self) -> int | None:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return None


class StoreChunk:
    """A chunk read through its zarr store (remote stores: retried and bounded by the source's
    policy; ranged reads never enter the chunk cache)."""

    def __init__(self, zarray, key: str):
        self.store_path = zarray.store_path / key

    def whole(self) -> bytes | None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        raw = sync(self.store_path.get(prototype=default_buffer_prototype()))
        return None if raw is None else raw.to_bytes()

    def size(self) -> int | None:
        """Unknown without a request: a short chunk shows when a block range comes back short."""
        return None

    def ranges(self, ranges: list[tuple[int, int]]) -> list[bytes] | None:
        from zarr.abc.store import RangeByteRequest
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        async def read_all():
            prototype = default_buffer_prototype()
            return await asyncio.gather(*(self.store_path.get(prototype=prototype, byte_range=RangeByteRequest(a, b))
                                          for a, b in ranges))

        parts = sync(read_all())
        if any(part is None for part in parts):
            return None
        return [part.to_bytes() for part in parts]


def chunk_key(zarray, chunk: int) -> str:
    """The store key (``"3.0.0"``) of frame chunk ``chunk`` of ``zarray``, inside the array."""
    return zarray.metadata.encode_chunk_key((chunk,) + (0,) * (zarray.ndim - 1))


def chunk_bytes(zarray, key: str):
    """Where ``key``'s bytes come from: a local file when there is one, else the store."""
    from zarr.storage import LocalStore

    store = zarray.store_path.store
    if isinstance(store, LocalStore):
        return LocalChunk(os.path.join(str(store.root), zarray.store_path.path, key))
    cached = getattr(store, "cached_file", None)
    if cached is not None:
        path = cached(f"{zarray.store_path.path}/{key}".strip("/"))
        if path is not None:
            return LocalChunk(path)
    return StoreChunk(zarray, key)


def store_name(zarray) -> str:
    """The store an array lives in, as its user named it (URL or path)."""
    store = zarray.store_path.store
    source = getattr(store, "source", None)
    if source is not None:
        return source.url
    root = getattr(store, "root", None) or getattr(store, "path", None)
    return str(root) if root is not None else str(store)


def downsample_frames(frames: np.ndarray, factor: int, method: str) -> np.ndarray:
    """Downsample ``(n, H, W)`` frames by ``factor``: ``[::f, ::f]`` or the mean of f×f blocks."""
    if factor == 1:
        return frames
    if method == "stride":
        return frames[:, ::factor, ::factor]
    n, height, width = frames.shape
    blocks = frames.reshape(n, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


# --- the reader --------------------------------------------------------------------------------

def _dtype(meta) -> np.dtype:
    return np.dtype(meta.dtype.to_native_dtype()) if hasattr(meta.dtype, "to_native_dtype") else np.dtype(meta.dtype)


def frame_layout(zarray) -> bool:
    """Whether ``zarray``'s chunks are whole frames stored as plain bytes under one compressor
    (Zarr v2, C order, no filters, one chunk across each frame): what both fast paths need."""
    meta = zarray.metadata
    try:
        _dtype(meta)
    except (TypeError, AttributeError):
        return False
    return (getattr(meta, "zarr_format", None) == 2 and not meta.filters and meta.order == "C"
            and meta.compressor is not None and tuple(zarray.chunks[1:]) == tuple(zarray.shape[1:]))


def partial_reads(zarray) -> bool:
    """Whether frames of ``zarray`` can be read without decoding their whole chunk (Blosc)."""
    return frame_layout(zarray) and getattr(zarray.metadata.compressor, "codec_id", None) == "blosc"


def uses_partial(zarray, offsets_in_chunk) -> bool:
    """Whether reading these frames (offsets inside one chunk) takes the partial path: a Blosc
    array, and at most :data:`PARTIAL_MAX_SHARE` of the chunk's frames wanted."""
    return partial_reads(zarray) and len(set(offsets_in_chunk)) <= PARTIAL_MAX_SHARE * int(zarray.chunks[0])


class FrameReader:
    """Reads frames of one chunk at a time (partial Blosc reads where they pay), decoding whole
    chunks into one reused buffer per chunk shape."""

    def __init__(self, reuse_buffers: bool = True):
        self.reuse_buffers = reuse_buffers
        self._buffers: dict[tuple, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"reuse_buffers": self.reuse_buffers, "_buffers": {}}

    def read(self, zarray, label: str, lo: int, hi: int, offsets: tuple[int, ...], factor: int = 1,
             method: str = "stride", copy: bool = True) -> np.ndarray:
        """Frames ``lo + offsets`` (all inside one chunk) as ``(n, H, W)`` float32, downsampled.

        With ``copy=False`` the frames may be a view of a buffer reused by the next read.
        """
        frames, fresh = self._raw_frames(zarray, label, lo, hi, offsets)
        frames = downsample_frames(frames, factor, method)
        if frames.dtype != np.float32 or not frames.flags.c_contiguous:
            return np.ascontiguousarray(frames, dtype=np.float32)
        return frames.copy() if copy and not fresh else frames

    def _raw_frames(self, zarray, label, lo, hi, offsets) -> tuple[np.ndarray, bool]:
        """The frames as stored, and whether they are a fresh array (not a reused buffer)."""
        if not frame_layout(zarray):
            return self._through_zarr(zarray, label, lo, hi, offsets), True
        t = int(zarray.chunks[0])
        chunk = lo // t
        key = chunk_key(zarray, chunk)
        in_chunk = np.asarray(offsets, dtype=np.int64) + (lo - chunk * t)
        with named_errors(zarray, label, lo, hi, key):
            source = chunk_bytes(zarray, key)
            if uses_partial(zarray, in_chunk.tolist()):
                return self._partial(zarray, source, in_chunk)
            decoded = self._whole(zarray, source)
        if len(in_chunk) == t and (in_chunk == np.arange(t)).all():
            return decoded, not self.reuse_buffers
        return decoded[in_chunk], True

    def read_into(self, zarray, label: str, lo: int, hi: int, offsets: tuple[int, ...], outs: list[np.ndarray],
                  factor: int = 1, method: str = "stride") -> None:
        """Frames ``lo + offsets`` (all inside one chunk) into ``outs[j]``: float32, C-contiguous,
        one frame each (a sample's place in a batch, say).  A frame that is whole Blosc blocks,
        read partially, is decoded straight into its place (no scratch buffer, no copy);
        otherwise the frames are read as :meth:`read` gives them and copied."""
        t = int(zarray.chunks[0])
        chunk = lo // t
        in_chunk = np.asarray(offsets, dtype=np.int64) + (lo - chunk * t)
        if factor == 1 and _decodes_into(zarray, in_chunk, outs):
            key = chunk_key(zarray, chunk)
            with named_errors(zarray, label, lo, hi, key):
                if _decode_frames_into(zarray, chunk_bytes(zarray, key), in_chunk, outs):
                    return
        for out, frame in zip(outs, self.read(zarray, label, lo, hi, offsets, factor, method, copy=False)):
            out[...] = frame

    @staticmethod
    def _through_zarr(zarray, label, lo, hi, offsets) -> np.ndarray:
        try:
            slab = np.asarray(zarray[lo:hi])
        except Exception as error:  # turned into one named line
            raise FetchError(f"cannot read {label} frames {lo}..{hi - 1}: {type(error).__name__}: {error}") from None
        return slab if len(offsets) == hi - lo else slab[list(offsets)]

    def _buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if not self.reuse_buffers:
            return np.empty(shape, dtype=dtype)
        buffer = self._buffers.get((shape, dtype.str))
        if buffer is None:
            buffer = self._buffers[shape, dtype.str] = np.empty(shape, dtype=dtype)
        return buffer

    def _whole(self, zarray, source) -> np.ndarray:
        meta = zarray.metadata
        shape = tuple(int(c) for c in zarray.chunks)
        buffer = self._buffer(shape, _dtype(meta))
        raw = source.whole()
        if raw is None:  # an unwritten chunk reads as the fill value
            buffer.fill(meta.fill_value if meta.fill_value is not None else 0)
            return buffer
        if partial_reads(zarray):
            check_blosc_chunk(raw, _chunk_nbytes(zarray))
        try:
            meta.compressor.decode(raw, out=buffer)
        except Exception as error:  # the codec's own complaint, named
            raise DamagedChunk(f"{type(error).__name__}: {error}") from None
        return buffer

    def _partial(self, zarray, source, in_chunk: np.ndarray) -> tuple[np.ndarray, bool]:
        """The frames ``in_chunk`` of a Blosc chunk, decoding only the blocks that hold them, and
        whether they are a fresh array (else a view of this thread's decode scratch)."""
        meta = zarray.metadata
        dtype = _dtype(meta)
        frame_shape = tuple(int(s) for s in zarray.chunks[1:])
        wanted = np.unique(in_chunk)
        head = _read_head(source, zarray)
        if head is None:
            fill = meta.fill_value if meta.fill_value is not None else 0
            return np.full((len(in_chunk), *frame_shape), fill, dtype=dtype), True
        header, table = head
        frame_bytes = header.nbytes // int(zarray.chunks[0])
        blocks, ranges = needed_ranges(header, table, wanted, frame_bytes)
        stored = _read_ranges(source, ranges, header.cbytes)
        if header.memcpyed:
            decoded, fresh = np.concatenate([np.frombuffer(part, np.uint8) for part in stored]), True
        else:
            decoded, fresh = _decode_blocks(header, blocks, stored, wanted, frame_bytes)
        frames = decoded.view(dtype).reshape(len(wanted), *frame_shape)
        if len(wanted) == len(in_chunk):
            return frames, fresh
        return frames[np.searchsorted(wanted, in_chunk)], True


@contextmanager
def named_errors(zarray, label: str, lo: int, hi: int, key: str):
    """Any failure reading chunk ``key`` as one :class:`FetchError` line naming the frames (and,
    for a damaged chunk, the chunk and its store)."""
    try:
        yield
    except DamagedChunk as error:
        raise FetchError(f"cannot read {label} frames {lo}..{hi - 1}: chunk {zarray.store_path.path}/{key} "
                         f"of store {store_name(zarray)} is damaged: {error}") from None
    except FetchError:
        raise
    except Exception as error:  # turned into one named line
        raise FetchError(f"cannot read {label} frames {lo}..{hi - 1}: {type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}") from None


def _decodes_into(zarray, in_chunk: np.ndarray, outs: list[np.ndarray]) -> bool:
    """Whether :meth:`FrameReader.read_into` may decode these frames straight into ``outs``."""
    frame_shape = tuple(int(s) for s in zarray.chunks[1:])
    return (uses_partial(zarray, in_chunk.tolist()) and _dtype(zarray.metadata) == np.dtype(np.float32)
            and all(out.dtype == np.float32 and out.flags.c_contiguous and out.shape == frame_shape for out in outs))


def _decode_frames_into(zarray, source, in_chunk: np.ndarray, outs: list[np.ndarray]) -> bool:
    """Decode each wanted frame's blocks straight into its ``out``; False (nothing written) when
    the chunk is absent, stored uncompressed, or its frames are not whole blocks."""
    import numcodecs.blosc

    head = _read_head(source, zarray)
    if head is None:
        return False
    header, table = head
    frame_bytes = header.nbytes // int(zarray.chunks[0])
    if header.memcpyed or frame_bytes % header.blocksize:
        return False
    blocks, ranges = needed_ranges(header, table, np.unique(in_chunk), frame_bytes)
    stored = dict(zip(blocks.tolist(), _read_ranges(source, ranges, header.cbytes)))
    per_frame = frame_bytes // header.blocksize
    for frame, out in zip(in_chunk.tolist(), outs):
        mine = np.arange(frame * per_frame, (frame + 1) * per_frame)
        parts = [stored[b][:checked_block(header, b, stored[b])] for b in mine.tolist()]
        try:
            numcodecs.blosc.decompress(repack(header, mine, parts), out.reshape(-1).view(np.uint8))
        except Exception as error:  # the codec's own complaint, named
            raise DamagedChunk(f"blocks {mine[0]}..{mine[-1]} do not decode: {error}") from None
    return True


def _chunk_nbytes(zarray) -> int:
    return int(np.prod(zarray.chunks)) * _dtype(zarray.metadata).itemsize


def _read_head(source, zarray) -> tuple[BloscHeader, bytes] | None:
    """The chunk's header and the bytes holding its offset table (None: the chunk is absent)."""
    head = source.ranges([(0, HEADER_READ_BYTES)])
    if head is None:
        return None
    head = head[0]
    header = BloscHeader.parse(head, _chunk_nbytes(zarray))
    size = source.size()
    if size is not None and size != header.cbytes:
        raise DamagedChunk(f"{size} bytes, its header says {header.cbytes}")
    if len(head) < header.table_end <= header.cbytes:
        head += source.ranges([(len(head), header.table_end)])[0]
    return header, head


def needed_ranges(header: BloscHeader, table: bytes, wanted: np.ndarray,
                  frame_bytes: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The blocks to decode for the ``wanted`` frames and the byte ranges that hold them (for a
    memcpyed chunk: no blocks, the frames' own bytes)."""
    if header.memcpyed:
        return np.zeros(0, np.int64), [(BLOSC_HEADER.size + f * frame_bytes, BLOSC_HEADER.size + (f + 1) * frame_bytes)
                                       for f in wanted.tolist()]
    starts, ends = block_bounds(header, table)
    blocks = blocks_of_frames(wanted, frame_bytes, header.blocksize)
    if header.block_size(int(blocks[-1])) < header.blocksize and len(blocks) == 1 and blocks[0] > 0:
        # c-blosc refuses a buffer smaller than its block size: the short last block goes with its neighbour
        blocks = np.array([blocks[0] - 1, blocks[0]])
    return blocks, [(int(starts[b]), int(ends[b])) for b in blocks]


_SCRATCH = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's decode buffer, ``nbytes`` long (kept between reads: pages touched once are
    reused, where fresh memory costs a page fault per 4 KiB)."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or len(buffer) < nbytes:
        buffer = _SCRATCH.buffer = np.empty(nbytes, np.uint8)
    return buffer[:nbytes]


def _decode_blocks(header: BloscHeader, blocks: np.ndarray, stored: list[memoryview], wanted: np.ndarray,
                   frame_bytes: int) -> tuple[np.ndarray, bool]:
    """The wanted frames' bytes, decoding the stored ``blocks`` re-packed as one Blosc buffer
    into this thread's scratch, and whether they are a fresh array (else a view of the scratch)."""
    import numcodecs.blosc

    stored = [view[:checked_block(header, int(b), view)] for b, view in zip(blocks, stored)]
    packed = repack(header, blocks, stored)
    out = _scratch(sum(header.block_size(int(b)) for b in blocks))
    try:
        numcodecs.blosc.decompress(packed, out)
    except Exception as error:  # the codec's own complaint, named
        raise DamagedChunk(f"blocks {blocks[0]}..{blocks[-1]} do not decode: {error}") from None
    place = {int(b): n for n, b in enumerate(blocks)}  # a frame starts in its first block's place
    offsets = []
    for f in wanted.tolist():
        first = f * frame_bytes // header.blocksize
        offsets.append(place[first] * header.blocksize + f * frame_bytes - first * header.blocksize)
    if len(out) == len(offsets) * frame_bytes and offsets == list(range(0, len(out), frame_bytes)):
        return out, False  # the blocks hold the wanted frames and nothing else
    return np.concatenate([out[o:o + frame_bytes] for o in offsets]), True


def partial_read_bytes(zarray, key: str, offsets_in_chunk) -> int:
    """Bytes a partial read of these frames of chunk ``key`` takes from the store: its header
    read and the merged block ranges (reads the header; 0 for an absent chunk)."""
    source = StoreChunk(zarray, key)
    try:
        head = _read_head(source, zarray)
    except DamagedChunk:
        return 0
    if head is None:
        return 0
    header, table = head
    _, ranges = needed_ranges(header, table, np.unique(np.asarray(offsets_in_chunk, np.int64)),
                              header.nbytes // int(zarray.chunks[0]))
    return len(table) + sum(b - a for a, b in merged_ranges(ranges))


def _read_ranges(source, ranges: list[tuple[int, int]], cbytes: int) -> list[memoryview]:
    """The bytes of ``ranges`` (merged into fewer reads), each checked to be whole."""
    merged = merged_ranges(ranges)
    parts = source.ranges(merged)
    if parts is None:
        raise DamagedChunk("the chunk vanished while it was read")
    out = []
    for start, end in ranges:
        n = next(i for i, (a, b) in enumerate(merged) if a <= start and end <= b)
        a = merged[n][0]
        piece = memoryview(parts[n])[start - a:end - a]
        if len(piece) != end - start:
            raise DamagedChunk(f"bytes {start}..{end} past the end of a chunk of {a + len(parts[n])} bytes "
                               f"(header says {cbytes})")
        out.append(piece)
    return out


def read_chunk_frames(array, label: str, lo: int, hi: int, offsets: tuple[int, ...],
                      factor: int, method: str) -> np.ndarray:
    """Frames ``lo + offsets`` of one chunk of ``array`` as a fresh float32 ``(n, H, W)`` array,
    downsampled (``factor``, ``method`` as in :func:`downsample_frames`).
    The dask graph's read task: partial Blosc reads where they pay, else the whole chunk."""
    return FrameReader(reuse_buffers=False).read(array, label, lo, hi, offsets, factor, method)
