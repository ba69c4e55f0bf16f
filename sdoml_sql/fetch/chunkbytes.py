"""Where a chunk's bytes come from: a local file (a local store, or a remote store's cached chunk)
or ranged reads through the array's zarr store (remote stores: the source's retries and time
limits apply; ranged reads never enter the chunk cache)."""

from __future__ import annotations

import asyncio
import os

from sdoml_sql.fetch.blosc import BloscHeader, ChunkTable, DamagedChunk, chunk_table, table_end

#: Bytes of the first ranged GET of a remote chunk: header plus offset tables of up to 1020 blocks.
HEADER_READ_BYTES = 4096



class LocalChunk:
    """A chunk file on local disk (a local store, or a remote store's cached chunk), opened
    once for all the reads of one ``with`` block (else once per read)."""

    def __init__(self, path: str):
        self.path = path
        self._handle: int | None = None
        self._entered = False

    def __enter__(self) -> LocalChunk:
        self._entered = True
        return self

    def __exit__(self, *exc) -> None:
        self._entered = False
        self._close()

    def _close(self) -> None:
        if self._handle is not None and self._handle >= 0:
            os.close(self._handle)
        self._handle = None

    def _open(self) -> int | None:
        """The file's descriptor (opened on first use; None: the chunk is absent)."""
        if self._handle is None:
            try:
                self._handle = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._handle = -1
        return None if self._handle < 0 else self._handle

    def whole(self) -> bytes | None:
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def ranges(self, ranges: list[tuple[int, int]]) -> list[bytes] | None:
        try:
            handle = self._open()
            return None if handle is None else [os.pread(handle, end - start, start) for start, end in ranges]
        finally:
            if not self._entered:
                self._close()

    def read_into(self, ranges: list[tuple[int, int]], views: list[memoryview]) -> bool:
        """Read each range straight into its view (as long); False if the chunk is absent; a
        range past the file's end is a :class:`DamagedChunk`."""
        try:
            handle = self._open()
            if handle is None:
                return False
            for (start, end), view in zip(ranges, views):
                if os.preadv(handle, [view], start) != end - start:
                    raise DamagedChunk(f"bytes {start}..{end} past the end of a chunk of {self.size()} bytes")
            return True
        finally:
            if not self._entered:
                self._close()

    def size(self) -> int | None:
        try:
            return os.fstat(self._handle).st_size if self._handle is not None and self._handle >= 0 \
                else os.path.getsize(self.path)
        except OSError:
            return None


class StoreChunk:
    """A chunk read through its zarr store (remote stores: retried and bounded by the source's
    policy; ranged reads never enter the chunk cache)."""

    def __init__(self, zarray, key: str):
        self.store_path = zarray.store_path / key

    def __enter__(self) -> StoreChunk:
        return self

    def __exit__(self, *exc) -> None:
        return None

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

    def read_into(self, ranges: list[tuple[int, int]], views: list[memoryview]) -> bool:
        """Fetch the ranges (concurrently) and copy each into its view; False if the chunk is
        absent; a range coming back short is a :class:`DamagedChunk`."""
        parts = self.ranges(ranges)
        if parts is None:
            return False
        for (start, end), view, part in zip(ranges, views, parts):
            if len(part) != end - start:
                raise DamagedChunk(f"bytes {start}..{end} past the end of a chunk of {start + len(part)} bytes")
            view[:] = part
        return True


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


def read_table(source, chunk_nbytes: int) -> ChunkTable | None:
    """The chunk's parsed header and block table (None: the chunk is absent)."""
    head = source.ranges([(0, HEADER_READ_BYTES)])
    if head is None:
        return None
    head = head[0]
    end = table_end(head)
    if len(head) < end:
        header = BloscHeader.parse(head, chunk_nbytes)
        if end <= header.cbytes:
            head += source.ranges([(len(head), end)])[0]
    table = chunk_table(bytes(head[:end]), chunk_nbytes)
    size = source.size()
    if size is not None and size != table.header.cbytes:
        raise DamagedChunk(f"{size} bytes, its header says {table.header.cbytes}")
    return table
