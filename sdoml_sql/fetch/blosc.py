"""Blosc chunk layout: the header, the block offset table, the streams of a block, and
re-packing a few blocks into a valid Blosc buffer (what :mod:`sdoml_sql.fetch.frames` decodes).

A Blosc (format 1/2) chunk is a 16-byte header, a table of one int32 start offset per block
(absent when the chunk is stored uncompressed, *memcpyed*), then the blocks, each compressed
independently as one stream or one stream per byte of the type.  Blocks compressed with threads
are stored in any order: a block ends where the next stored block starts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes
BLOSC_VERSIONS = (1, 2)  # c-blosc 1.x chunk formats
MEMCPYED, DONT_SPLIT = 0x02, 0x10  # header flags: stored uncompressed; blocks not split into streams
MAX_SPLITS, MIN_SPLIT_BYTES = 16, 128  # c-blosc's rule for splitting a block into typesize streams
#: Ranges of one chunk closer than this are fetched as one.
MERGE_GAP_BYTES = 1024


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
