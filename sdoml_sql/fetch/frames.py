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

import numpy as np

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.blosc import (
    BloscHeader,
    DamagedChunk,
    check_blosc_chunk,
    checked_block,
    merged_ranges,
    needed_ranges,
    repack,
)
from sdoml_sql.fetch.chunkbytes import StoreChunk, chunk_bytes, chunk_key, read_head, read_ranges, store_name

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
        head = read_head(source, _chunk_nbytes(zarray))
        if head is None:
            fill = meta.fill_value if meta.fill_value is not None else 0
            return np.full((len(in_chunk), *frame_shape), fill, dtype=dtype), True
        header, table = head
        frame_bytes = header.nbytes // int(zarray.chunks[0])
        blocks, ranges = needed_ranges(header, table, wanted, frame_bytes)
        stored = read_ranges(source, ranges, header.cbytes)
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
    head = read_head(source, _chunk_nbytes(zarray))
    if head is None:
        return False
    header, table = head
    frame_bytes = header.nbytes // int(zarray.chunks[0])
    if header.memcpyed or frame_bytes % header.blocksize:
        return False
    blocks, ranges = needed_ranges(header, table, np.unique(in_chunk), frame_bytes)
    stored = dict(zip(blocks.tolist(), read_ranges(source, ranges, header.cbytes)))
    per_frame = frame_bytes // header.blocksize
    for frame, out in zip(in_chunk.tolist(), outs):
        mine = np.arange(frame * per_frame, (frame + 1) * per_frame)
        _decompress_blocks(header, mine, [stored[b] for b in mine.tolist()], out.reshape(-1).view(np.uint8))
    return True


def _chunk_nbytes(zarray) -> int:
    return int(np.prod(zarray.chunks)) * _dtype(zarray.metadata).itemsize


_SCRATCH = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's decode buffer, ``nbytes`` long (kept between reads: pages touched once are
    reused, where fresh memory costs a page fault per 4 KiB)."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or len(buffer) < nbytes:
        buffer = _SCRATCH.buffer = np.empty(nbytes, np.uint8)
    return buffer[:nbytes]


def _decompress_blocks(header: BloscHeader, blocks: np.ndarray, stored: list[memoryview], out: np.ndarray) -> None:
    """Decode the stored ``blocks`` (each checked stream by stream), re-packed as one Blosc
    buffer, into ``out``; a block that does not decode is a :class:`DamagedChunk`."""
    import numcodecs.blosc

    parts = [view[:checked_block(header, int(b), view)] for b, view in zip(blocks, stored)]
    packed = repack(header, blocks, parts)
    try:
        numcodecs.blosc.decompress(packed, out)
    except Exception as error:  # the codec's own complaint, named
        raise DamagedChunk(f"blocks {blocks[0]}..{blocks[-1]} do not decode: {error}") from None


def _decode_blocks(header: BloscHeader, blocks: np.ndarray, stored: list[memoryview], wanted: np.ndarray,
                   frame_bytes: int) -> tuple[np.ndarray, bool]:
    """The wanted frames' bytes, decoding the stored ``blocks`` re-packed as one Blosc buffer
    into this thread's scratch, and whether they are a fresh array (else a view of the scratch)."""
    out = _scratch(sum(header.block_size(int(b)) for b in blocks))
    _decompress_blocks(header, blocks, stored, out)
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
        head = read_head(source, _chunk_nbytes(zarray))
    except DamagedChunk:
        return 0
    if head is None:
        return 0
    header, table = head
    _, ranges = needed_ranges(header, table, np.unique(np.asarray(offsets_in_chunk, np.int64)),
                              header.nbytes // int(zarray.chunks[0]))
    return len(table) + sum(b - a for a, b in merged_ranges(ranges))


def read_chunk_frames(array, label: str, lo: int, hi: int, offsets: tuple[int, ...],
                      factor: int, method: str) -> np.ndarray:
    """Frames ``lo + offsets`` of one chunk of ``array`` as a fresh float32 ``(n, H, W)`` array,
    downsampled (``factor``, ``method`` as in :func:`downsample_frames`).
    The dask graph's read task: partial Blosc reads where they pay, else the whole chunk."""
    return FrameReader(reuse_buffers=False).read(array, label, lo, hi, offsets, factor, method)
