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

import threading
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.blosc import BlockPack, ChunkTable, DamagedChunk, check_blosc_chunk, merged_ranges, needed_ranges
from sdoml_sql.fetch.chunkbytes import HEADER_READ_BYTES, StoreChunk, chunk_bytes, chunk_key, read_table, store_name

#: The partial path is taken while the wanted frames are at most this share of a chunk's frames.
PARTIAL_MAX_SHARE = 0.6


def downsample_frames(frames: np.ndarray, factor: int, method: str) -> np.ndarray:
    """Downsample ``(n, H, W)`` frames by ``factor``: ``[::f, ::f]`` or the mean of f×f blocks."""
    if factor == 1:
        return frames
    if method == "stride":
        return frames[:, ::factor, ::factor]
    n, height, width = frames.shape
    blocks = frames.reshape(n, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


# --- what the reader needs to know of an array ---------------------------------------------

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
    return _array(zarray).partial


class _Array(NamedTuple):
    """What every read of an array asks of its metadata, worked out once."""

    frame_layout: bool
    partial: bool
    dtype: np.dtype | None
    chunk_frames: int
    frame_shape: tuple[int, ...]
    chunk_nbytes: int
    fill: Any


#: :class:`_Array` of arrays read lately, by ``id`` of the array and of its metadata (the array
#: kept alongside, so an ``id`` is never reused while its entry lives).
_ARRAYS: dict[tuple[int, int], tuple[Any, _Array]] = {}
_ARRAYS_KEPT = 256


def _array(zarray) -> _Array:
    key = (id(zarray), id(zarray.metadata))
    kept = _ARRAYS.get(key)
    if kept is not None and kept[0] is zarray:
        return kept[1]
    meta = zarray.metadata
    layout = frame_layout(zarray)
    dtype = _dtype(meta) if layout else None
    chunks = tuple(int(c) for c in zarray.chunks)
    info = _Array(layout, layout and getattr(meta.compressor, "codec_id", None) == "blosc", dtype, chunks[0],
                  chunks[1:], int(np.prod(chunks)) * (dtype.itemsize if dtype is not None else 0),
                  meta.fill_value if meta.fill_value is not None else 0)
    if len(_ARRAYS) >= _ARRAYS_KEPT:
        _ARRAYS.clear()
    _ARRAYS[key] = (zarray, info)
    return info


def _takes_partial(info: _Array, in_chunk: list[int]) -> bool:
    return info.partial and len(set(in_chunk)) <= PARTIAL_MAX_SHARE * info.chunk_frames


def uses_partial(zarray, offsets_in_chunk) -> bool:
    """Whether reading these frames (offsets inside one chunk) takes the partial path: a Blosc
    array, and at most :data:`PARTIAL_MAX_SHARE` of the chunk's frames wanted."""
    return _takes_partial(_array(zarray), list(offsets_in_chunk))


# --- the reader --------------------------------------------------------------------------------

class FrameReader:
    """Reads frames of one chunk at a time (partial Blosc reads where they pay), decoding whole
    chunks into one reused buffer per chunk shape."""

    def __init__(self, reuse_buffers: bool = True):
        self.reuse_buffers = reuse_buffers
        self._buffers: dict[tuple, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"reuse_buffers": self.reuse_buffers, "_buffers": {}}

    @classmethod
    def of_thread(cls, local: threading.local) -> FrameReader:
        """The reader ``local`` holds for the calling thread, made on first use (a reader's
        kept buffers are one thread's alone; they live as long as ``local`` does)."""
        reader = getattr(local, "reader", None)
        if reader is None:
            reader = local.reader = cls()
        return reader

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
        info = _array(zarray)
        if not info.frame_layout:
            return self._through_zarr(zarray, label, lo, hi, offsets), True
        t = info.chunk_frames
        chunk = lo // t
        key = chunk_key(zarray, chunk)
        in_chunk = [o + lo - chunk * t for o in offsets]
        with named_errors(zarray, label, lo, hi, key), chunk_bytes(zarray, key) as source:
            if _takes_partial(info, in_chunk):
                return _partial_frames(info, source, in_chunk)
            decoded = self._whole(zarray, info, source)
        if in_chunk == list(range(t)):
            return decoded, not self.reuse_buffers
        return decoded[in_chunk], True

    def read_into(self, zarray, label: str, lo: int, hi: int, offsets: tuple[int, ...], outs: list[np.ndarray],
                  factor: int = 1, method: str = "stride") -> None:
        """Frames ``lo + offsets`` (all inside one chunk) into ``outs[j]``: float32, C-contiguous,
        one frame each (a sample's place in a batch, say).  A frame that is whole Blosc blocks,
        read partially, is decoded straight into its place (no scratch buffer, no copy);
        otherwise the frames are read as :meth:`read` gives them and copied."""
        info = _array(zarray)
        if factor == 1 and _decodes_into(info, offsets, outs):
            t = info.chunk_frames
            chunk = lo // t
            key = chunk_key(zarray, chunk)
            with named_errors(zarray, label, lo, hi, key), chunk_bytes(zarray, key) as source:
                if _decode_frames_into(info, source, [o + lo - chunk * t for o in offsets], outs):
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

    def _whole(self, zarray, info: _Array, source) -> np.ndarray:
        buffer = self._buffer((info.chunk_frames, *info.frame_shape), info.dtype)
        raw = source.whole()
        if raw is None:  # an unwritten chunk reads as the fill value
            buffer.fill(info.fill)
            return buffer
        if info.partial:
            check_blosc_chunk(raw, info.chunk_nbytes)
        try:
            zarray.metadata.compressor.decode(raw, out=buffer)
        except Exception as error:  # the codec's own complaint, named
            raise DamagedChunk(f"{type(error).__name__}: {error}") from None
        return buffer


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


# --- the partial path ------------------------------------------------------------------------

def _partial_frames(info: _Array, source, in_chunk: list[int]) -> tuple[np.ndarray, bool]:
    """The frames ``in_chunk`` of a Blosc chunk, decoding only the blocks that hold them, and
    whether they are a fresh array (else a view of this thread's decode scratch)."""
    wanted = sorted(set(in_chunk))
    table = read_table(source, info.chunk_nbytes)
    if table is None:
        return np.full((len(in_chunk), *info.frame_shape), info.fill, dtype=info.dtype), True
    frame_bytes = table.header.nbytes // info.chunk_frames
    if table.header.memcpyed:
        decoded, fresh = np.empty(len(wanted) * frame_bytes, np.uint8), True
        _, ranges = needed_ranges(table, wanted, frame_bytes)
        _read_into(source, ranges, [memoryview(decoded)[n * frame_bytes:(n + 1) * frame_bytes]
                                    for n in range(len(wanted))])
    else:
        decoded, fresh = _decode_frames(table, source, wanted, frame_bytes)
    frames = decoded.view(info.dtype).reshape(len(wanted), *info.frame_shape)
    if len(wanted) == len(in_chunk):
        return frames, fresh
    return frames[np.searchsorted(wanted, in_chunk)], True


def _decodes_into(info: _Array, offsets, outs: list[np.ndarray]) -> bool:
    """Whether :meth:`FrameReader.read_into` may decode these frames straight into ``outs``."""
    return (_takes_partial(info, offsets) and info.dtype == np.float32
            and all(out.dtype == np.float32 and out.flags.c_contiguous and out.shape == info.frame_shape
                    for out in outs))


def _decode_frames_into(info: _Array, source, in_chunk: list[int], outs: list[np.ndarray]) -> bool:
    """Decode each wanted frame's blocks straight into its ``out``; False (nothing written) when
    the chunk is absent, stored uncompressed, or its frames are not whole blocks."""
    table = read_table(source, info.chunk_nbytes)
    if table is None:
        return False
    header = table.header
    frame_bytes = header.nbytes // info.chunk_frames
    if header.memcpyed or frame_bytes % header.blocksize:
        return False
    per_frame = frame_bytes // header.blocksize
    for frame, out in zip(in_chunk, outs):
        _decode_blocks(table, source, list(range(frame * per_frame, (frame + 1) * per_frame)), out)
    return True


_SCRATCH = threading.local()


def _scratch(name: str, nbytes: int) -> np.ndarray:
    """This thread's buffer ``name``, ``nbytes`` long (kept between reads: pages touched once
    are reused, where fresh memory costs a page fault per 4 KiB; replaced, never resized)."""
    buffer = getattr(_SCRATCH, name, None)
    if buffer is None or len(buffer) < nbytes:
        buffer = np.empty(nbytes, np.uint8)
        setattr(_SCRATCH, name, buffer)
    return buffer[:nbytes]


def _read_into(source, ranges: list[tuple[int, int]], views: list[memoryview]) -> None:
    if not source.read_into(ranges, views):
        raise DamagedChunk("the chunk vanished while it was read")


def _decode_blocks(table: ChunkTable, source, blocks: list[int], out) -> None:
    """Read ``blocks`` straight into this thread's re-pack buffer (one read per run of
    neighbouring blocks), check their streams, and decode them as one Blosc buffer into
    ``out``; a block that does not decode is a :class:`DamagedChunk`."""
    import numcodecs.blosc

    pack = BlockPack.plan(table, blocks)
    packed = memoryview(_scratch("packed", pack.cbytes))
    _read_into(source, list(pack.ranges), pack.views(packed))
    pack.seal(table, packed)
    try:
        numcodecs.blosc.decompress(packed, out)
    except Exception as error:  # the codec's own complaint, named
        raise DamagedChunk(f"blocks {blocks[0]}..{blocks[-1]} do not decode: {error}") from None


def _decode_frames(table: ChunkTable, source, wanted: list[int], frame_bytes: int) -> tuple[np.ndarray, bool]:
    """The wanted frames' bytes, decoding their blocks into this thread's scratch, and whether
    they are a fresh array (else a view of the scratch)."""
    header = table.header
    blocks = table.frame_blocks(wanted, frame_bytes)
    out = _scratch("decoded", sum(header.block_size(b) for b in blocks))
    _decode_blocks(table, source, blocks, out)
    place = {b: n for n, b in enumerate(blocks)}  # a frame starts in its first block's place
    offsets = []
    for f in wanted:
        first = f * frame_bytes // header.blocksize
        offsets.append(place[first] * header.blocksize + f * frame_bytes - first * header.blocksize)
    if len(out) == len(offsets) * frame_bytes and offsets == list(range(0, len(out), frame_bytes)):
        return out, False  # the blocks hold the wanted frames and nothing else
    return np.concatenate([out[o:o + frame_bytes] for o in offsets]), True


def partial_read_bytes(zarray, key: str, offsets_in_chunk) -> int:
    """Bytes a partial read of these frames of chunk ``key`` takes from the store: its header
    read and the merged block ranges (reads the header; 0 for an absent chunk)."""
    info = _array(zarray)
    try:
        table = read_table(StoreChunk(zarray, key), info.chunk_nbytes)
    except DamagedChunk:
        return 0
    if table is None:
        return 0
    _, ranges = needed_ranges(table, sorted(set(int(o) for o in offsets_in_chunk)),
                              table.header.nbytes // info.chunk_frames)
    head = max(min(HEADER_READ_BYTES, table.header.cbytes), table.header.table_end)
    return head + sum(b - a for a, b in merged_ranges(ranges))


def read_chunk_frames(array, label: str, lo: int, hi: int, offsets: tuple[int, ...],
                      factor: int, method: str) -> np.ndarray:
    """Frames ``lo + offsets`` of one chunk of ``array`` as a fresh float32 ``(n, H, W)`` array,
    downsampled (``factor``, ``method`` as in :func:`downsample_frames`).
    The dask graph's read task: partial Blosc reads where they pay, else the whole chunk."""
    return FrameReader(reuse_buffers=False).read(array, label, lo, hi, offsets, factor, method)
