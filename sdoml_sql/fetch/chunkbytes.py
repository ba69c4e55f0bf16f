"""Where a chunk's bytes come from: a local file (a local store, or a remote store's cached chunk)
or ranged reads through the array's zarr store (remote stores: the source's retries and time
limits apply; ranged reads never enter the chunk cache)."""

from __future__ import annotations

import asyncio
import os

from sdoml_sql.fetch.blosc import BloscHeader, DamagedChunk, merged_ranges

#: Bytes of the first ranged GET of a remote chunk: header plus offset tables of up to 1020 blocks.
HEADER_READ_BYTES = 4096



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


def read_head(source, chunk_nbytes: int) -> tuple[BloscHeader, bytes] | None:
    """The chunk's header and the bytes holding its offset table (None: the chunk is absent)."""
    head = source.ranges([(0, HEADER_READ_BYTES)])
    if head is None:
        return None
    head = head[0]
    header = BloscHeader.parse(head, chunk_nbytes)
    size = source.size()
    if size is not None and size != header.cbytes:
        raise DamagedChunk(f"{size} bytes, its header says {header.cbytes}")
    if len(head) < header.table_end <= header.cbytes:
        head += source.ranges([(len(head), header.table_end)])[0]
    return header, head


def read_ranges(source, ranges: list[tuple[int, int]], cbytes: int) -> list[memoryview]:
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
