"""The loaders' chunk reader: the fetch stage's :class:`~sdoml_sql.fetch.frames.FrameReader`
(partial Blosc reads for a few frames of a chunk, whole chunks decoded into a buffer kept
between reads), giving a list of frames per read.

A loader decodes every chunk of an epoch once and keeps a few of its frames.  Through
``zarr_array[lo:hi]`` a 120-frame AIA chunk (126 MB) is decompressed into a fresh buffer,
copied into a fresh output (filled first) and freed — about 0.5 s here; decompressed into a
buffer kept between reads it is about 0.15 s.
"""

from __future__ import annotations

import numpy as np

from sdoml_sql.fetch.frames import FrameReader


class ChunkReader(FrameReader):
    """Reads frames of one chunk at a time, decoding whole chunks into one reused buffer per
    chunk shape."""

    def read(self, zarray, label: str, lo: int, hi: int, offsets: tuple[int, ...], factor: int = 1,
             method: str = "stride", copy: bool = True) -> list[np.ndarray]:
        """Frames ``lo + offsets`` (all inside one chunk) as float32 frames, downsampled.

        With ``copy=False`` a frame may be a view of the decode buffer, valid until the next
        read: copy it where it must stay (the loaders copy each frame once, into its sample).
        """
        return list(super().read(zarray, label, lo, hi, offsets, factor, method, copy))
