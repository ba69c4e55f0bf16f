"""Whole-chunk reads for loaders: the chunk's bytes decoded straight into a reused buffer.

A loader decodes every chunk of an epoch once and keeps a few of its frames, so the cost of a
read is the decode plus whatever memory traffic surrounds it.  Through ``zarr_array[lo:hi]``
a 120-frame AIA chunk (126 MB) is decompressed into a fresh buffer, copied into a fresh output
(filled first) and freed — about 0.5 s here; decompressed into a buffer kept between reads it
is about 0.15 s.  This reads the chunk's bytes through the array's own store (local,
fsspec, retried remote: the same path, the same chunk key) and decodes them with the array's
compressor.  Arrays this does not cover (filters, Fortran order, non-native byte order, chunks
split across frames) go through the fetch stage's :func:`~sdoml_sql.fetch.stack.read_chunk_frames`.
"""

from __future__ import annotations

import numpy as np

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.stack import downsample_frames, read_chunk_frames


def _dtype(meta) -> np.dtype:
    return np.dtype(meta.dtype.to_native_dtype()) if hasattr(meta.dtype, "to_native_dtype") else np.dtype(meta.dtype)


def fast_path(zarray) -> bool:
    """Whether ``zarray`` is a Zarr v2 array whose chunks can be decoded straight into a buffer."""
    meta = zarray.metadata
    try:
        dtype = _dtype(meta)
    except (TypeError, AttributeError):
        return False
    return (getattr(meta, "zarr_format", None) == 2 and not meta.filters and meta.order == "C"
            and meta.compressor is not None and dtype.isnative and tuple(zarray.chunks[1:]) == tuple(zarray.shape[1:]))


class ChunkReader:
    """Reads frames of one chunk at a time, decoding into one reused buffer per chunk shape."""

    def __init__(self):
        self._buffers: dict[tuple, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"_buffers": {}}

    def read(self, zarray, label: str, lo: int, hi: int, offsets: tuple[int, ...], factor: int,
             method: str, copy: bool = True) -> list[np.ndarray]:
        """Frames ``lo + offsets`` (all inside one chunk) as float32 frames, downsampled.

        With ``copy=False`` a frame may be a view of the decode buffer, valid until the next
        read: copy it where it must stay (the loaders copy each frame once, into its sample).
        """
        if not fast_path(zarray):
            return list(read_chunk_frames(zarray, label, lo, hi, offsets, factor, method))
        t = int(zarray.chunks[0])
        chunk = lo // t
        try:
            decoded = self._decode(zarray, chunk)
        except Exception as error:  # noqa: BLE001 - turned into one named line
            raise FetchError(f"cannot read {label} frames {lo}..{hi - 1}: {type(error).__name__}: {error}") from None
        first = lo - chunk * t
        frames = [downsample_frames(decoded[first + o:first + o + 1], factor, method)[0] for o in offsets]
        return [np.array(f, dtype=np.float32) for f in frames] if copy else frames

    def _decode(self, zarray, chunk: int) -> np.ndarray:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        meta = zarray.metadata
        shape = tuple(int(c) for c in zarray.chunks)
        dtype = _dtype(meta)
        buffer = self._buffers.get((shape, dtype.str))
        if buffer is None:
            buffer = self._buffers[shape, dtype.str] = np.empty(shape, dtype=dtype)
        key = meta.encode_chunk_key((chunk,) + (0,) * (len(shape) - 1))
        raw = sync((zarray.store_path / key).get(prototype=default_buffer_prototype()))
        if raw is None:  # an unwritten chunk reads as the fill value
            buffer.fill(meta.fill_value if meta.fill_value is not None else 0)
        else:
            meta.compressor.decode(raw.as_numpy_array(), out=buffer)
        return buffer
