"""Blosc chunk layout: the header, the block offset table, the streams of a block, and
re-packing a few blocks into a valid Blosc buffer (what :mod:`sdoml_sql.fetch.frames` decodes).

A Blosc (format 1/2) chunk is a 16-byte header, a table of one int32 start offset per block
(absent when the chunk is stored uncompressed, *memcpyed*), then the blocks, each compressed
independently as one stream or one stream per byte of the type.  Blocks compressed with threads
are stored in any order: a block ends where the next stored block starts.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes
INT32 = struct.Struct("<i")  # a block's offset, a stream's length
BLOSC_VERSIONS = (1, 2)  # c-blosc 1.x chunk formats
MEMCPYED, DONT_SPLIT = 0x02, 0x10  # header flags: stored uncompressed; blocks not split into streams
MAX_SPLITS, MIN_SPLIT_BYTES = 16, 128  # c-blosc's rule for splitting a block into typesize streams
#: Ranges of one chunk closer than this are fetched as one.
MERGE_GAP_BYTES = 1024
#: Parsed chunk heads kept (:func:`chunk_table`), keyed by the head's own bytes: a few hundred
#: bytes each, so a reader going back to a chunk skips parsing and checking its offset table.
TABLE_CACHE_SIZE = 8192


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


@dataclass(frozen=True)
class ChunkTable:
    """A chunk's header and each block's ``(start, end)``, parsed and checked once."""

    header: BloscHeader
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def frame_blocks(self, frames: list[int], frame_bytes: int) -> list[int]:
        """The sorted blocks to decode for ``frames`` (sorted, distinct): every block holding a
        byte of them, plus the neighbour of a lone short last block (c-blosc refuses a buffer
        smaller than its block size)."""
        size = self.header.blocksize
        blocks = []
        for frame in frames:
            first = max(frame * frame_bytes // size, blocks[-1] + 1 if blocks else 0)
            blocks.extend(range(first, ((frame + 1) * frame_bytes - 1) // size + 1))
        if len(blocks) == 1 and blocks[0] > 0 and self.header.block_size(blocks[0]) < size:
            blocks.insert(0, blocks[0] - 1)
        return blocks


def table_end(head: bytes) -> int:
    """Where the offset table of the chunk starting with ``head`` ends, as its header says
    (the header's length when it is too short or damaged: :func:`chunk_table` then says why)."""
    if len(head) < BLOSC_HEADER.size:
        return len(head)
    header = BloscHeader(*BLOSC_HEADER.unpack_from(head))  # unchecked: only its table's length
    return header.table_end if header.blocksize else BLOSC_HEADER.size


@lru_cache(maxsize=TABLE_CACHE_SIZE)
def chunk_table(head: bytes, expected_nbytes: int) -> ChunkTable:
    """The parsed and checked header and offset table ``head`` holds (its first
    :func:`table_end` bytes; cached by content, so never stale); :class:`DamagedChunk` if bad."""
    header = BloscHeader.parse(head, expected_nbytes)
    if header.memcpyed:
        return ChunkTable(header, (), ())
    starts, ends = block_bounds(header, head)
    return ChunkTable(header, tuple(starts.tolist()), tuple(ends.tolist()))


def checked_block(header: BloscHeader, block: int, data, start: int, end: int) -> int:
    """The stored length of ``block`` (at ``data[start:]``, running at most to ``end``, where the
    next stored block starts), checked stream by stream: every stream's length prefix must stay
    inside."""
    position, streams = start, header.splits(block)
    raw_stream = header.block_size(block) // streams
    for _ in range(streams):
        if position + 4 > end:
            raise DamagedChunk(f"block {block} is cut short")
        (length,) = INT32.unpack_from(data, position)
        if length <= 0 or length > raw_stream or position + 4 + length > end:
            raise DamagedChunk(f"block {block} has a stream of {length} bytes past the block's end")
        position += 4 + length
    return position - start


def check_blosc_chunk(raw: bytes, expected_nbytes: int) -> None:
    """Check a whole Blosc chunk before c-blosc decodes it (it trusts the offsets and lengths it
    finds): the header, its length, every block's offset and every stream's length."""
    header = BloscHeader.parse(raw, expected_nbytes)
    if len(raw) != header.cbytes:
        raise DamagedChunk(f"{len(raw)} bytes, its header says {header.cbytes}")
    if header.memcpyed:
        return
    starts, ends = block_bounds(header, raw)
    for block, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        checked_block(header, block, raw, start, end)


@dataclass(frozen=True)
class BlockPack:
    """Where a few blocks of a chunk go in a re-packed Blosc buffer: a new header, a new offset
    table, then the stored ``ranges`` (merged block ranges), back to back."""

    blocks: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]  #: stored byte ranges to read, sorted
    offsets: tuple[int, ...]  #: where each range goes in the buffer
    starts: tuple[int, ...]  #: each block's start in the buffer
    nbytes: int  #: decoded bytes
    cbytes: int  #: the buffer's length

    @classmethod
    def plan(cls, table: ChunkTable, blocks: list[int]) -> BlockPack:
        ranges = merged_ranges([(table.starts[b], table.ends[b]) for b in blocks])
        offsets, at = [], BLOSC_HEADER.size + 4 * len(blocks)
        for start, end in ranges:
            offsets.append(at)
            at += end - start
        firsts = [start for start, _ in ranges]
        starts = []
        for b in blocks:
            r = bisect_right(firsts, table.starts[b]) - 1
            starts.append(offsets[r] + table.starts[b] - firsts[r])
        header = table.header
        nbytes = len(blocks) * header.blocksize
        if blocks and blocks[-1] == header.nblocks - 1:  # the last block may be short
            nbytes += header.block_size(blocks[-1]) - header.blocksize
        return cls(tuple(blocks), tuple(ranges), tuple(offsets), tuple(starts), nbytes, at)

    def views(self, buffer: memoryview) -> list[memoryview]:
        """The places in ``buffer`` the stored ranges are read into."""
        return [buffer[at:at + end - start] for at, (start, end) in zip(self.offsets, self.ranges)]

    def seal(self, table: ChunkTable, buffer: memoryview) -> None:
        """Check every block's streams in ``buffer`` (its ranges read in), then write the new
        header and offset table: ``buffer`` is a Blosc chunk of just these blocks."""
        for block, start in zip(self.blocks, self.starts):
            checked_block(table.header, block, buffer, start, start + table.ends[block] - table.starts[block])
        header = table.header
        BLOSC_HEADER.pack_into(buffer, 0, header.version, header.versionlz, header.flags, header.typesize,
                               self.nbytes, header.blocksize, self.cbytes)
        struct.pack_into(f"<{len(self.starts)}i", buffer, BLOSC_HEADER.size, *self.starts)


def merged_ranges(ranges: list[tuple[int, int]], gap: int = MERGE_GAP_BYTES) -> list[tuple[int, int]]:
    """Sorted ``(start, end)`` byte ranges with neighbours closer than ``gap`` merged."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def needed_ranges(table: ChunkTable, wanted: list[int], frame_bytes: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The blocks to decode for the ``wanted`` frames (sorted, distinct) and the stored byte
    ranges that hold them (for a memcpyed chunk: no blocks, the frames' own bytes)."""
    if table.header.memcpyed:
        return [], [(BLOSC_HEADER.size + f * frame_bytes, BLOSC_HEADER.size + (f + 1) * frame_bytes) for f in wanted]
    blocks = table.frame_blocks(wanted, frame_bytes)
    return blocks, [(table.starts[b], table.ends[b]) for b in blocks]
