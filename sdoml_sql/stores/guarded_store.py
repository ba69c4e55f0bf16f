"""Chunk reads of remote stores.

A zarr store wrapper (:func:`GuardedStore`) retries and bounds each chunk read under the
source's :class:`~sdoml_sql.stores.retries.ReadPolicy` and keeps chunks in a local
:class:`ChunkCache` when ``cache_dir`` is set.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import re

from sdoml_sql.exceptions import StoreError
from sdoml_sql.files import write_atomically
from sdoml_sql.stores.retries import Attempts, is_transient

CHUNK_KEY = re.compile(r"(^|/)\d+(\.\d+)*$")


@functools.cache
def _guarded_store_class():
    """The :class:`GuardedStore` class, defined on first use (importing zarr costs ~0.5 s,
    which ``tree`` and offline errors should not pay)."""
    from zarr.storage import WrapperStore

    class GuardedStore(WrapperStore):
        """Chunk reads of a remote source, retried and bounded by its policy, maybe cached.

        Reads run as coroutines on the filesystem's own event loop (where its HTTP session
        lives), awaited from zarr's loop; a read past the deadline is cancelled there.
        Everything but ``get`` goes to the wrapped ``FsspecStore``.
        """

        def __init__(self, store, *, source):
            super().__init__(store)
            self.source = source
            self.cache = ChunkCache(source.cache_dir, source.url) if source.cache_dir else None

        def _with_store(self, store):
            return type(self)(store, source=self.source)

        def __reduce__(self):
            return (_rebuild_guarded, (self._store, self.source))

        async def get(self, key, prototype, byte_range=None):
            """The object ``key`` (zarr ``Store.get``), from the cache or read with retries."""
            cacheable = self.cache is not None and byte_range is None and CHUNK_KEY.search(key) is not None
            if cacheable:
                cached = self.cache.read(key)
                if cached is not None:
                    return prototype.buffer.from_bytes(cached)
            data = await self._read_with_retries(key, byte_range)
            if data is None:
                return None
            if cacheable:
                self.cache.write(key, data)
            return prototype.buffer.from_bytes(data)

        def cached_file(self, key: str) -> str | None:
            """The local file holding chunk ``key`` when the cache has it (read it in place)."""
            return self.cache.file_if_cached(key) if self.cache is not None else None

        async def _read_with_retries(self, key, byte_range):
            attempts = Attempts(self.source.policy)
            while True:
                try:
                    return await asyncio.wait_for(self._read_once(key, byte_range), attempts.budget())
                except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                    return None  # zarr's rule: a missing chunk reads as the fill value
                except Exception as error:  # classified below, re-raised or named
                    if not is_transient(error):
                        raise
                    pause = attempts.failed(error)
                if pause is None:
                    raise attempts.give_up(self.source.url, key, self.source.what)
                await asyncio.sleep(pause)

        async def _read_once(self, key, byte_range):
            fs = self.source.fs
            start, end = _byte_bounds(byte_range)
            coroutine = fs._cat_file(self.source.path(key), start=start, end=end)
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, fs.loop))

    return GuardedStore


def GuardedStore(store, *, source):  # builds an instance of the class above
    """A read-only zarr store for a remote ``source``: chunk reads retried with backoff,
    bounded by ``source.policy``, named in the error when they give up, and kept in
    ``source.cache_dir`` when it is set (so a second read of a chunk is local)."""
    return _guarded_store_class()(store, source=source)


def _rebuild_guarded(store, source):
    return GuardedStore(store, source=source)


def _byte_bounds(byte_range) -> tuple[int | None, int | None]:
    """``(start, end)`` for ``fs._cat_file`` from a zarr ``ByteRequest`` (``None``: whole)."""
    if byte_range is None:
        return None, None
    if hasattr(byte_range, "start") and hasattr(byte_range, "end"):
        return byte_range.start, byte_range.end
    if hasattr(byte_range, "offset"):
        return byte_range.offset, None
    if hasattr(byte_range, "suffix"):
        return -byte_range.suffix, None
    raise StoreError(f"unexpected byte range {byte_range!r}")


class ChunkCache:
    """Chunks of one store on local disk: ``ROOT/<digest of the store URL>/<chunk key>``.

    Files are written whole (:func:`sdoml_sql.files.write_atomically`), so a reader never sees half a chunk;
    delete the directory at any time to empty the cache.
    """

    def __init__(self, root: str, url: str):
        self.root = str(root)
        self.directory = os.path.join(self.root, hashlib.sha256(url.encode()).hexdigest()[:24])

    def _file(self, key: str) -> str:
        return os.path.join(self.directory, *key.strip("/").split("/"))

    def file_if_cached(self, key: str) -> str | None:
        """The file holding ``key``, or ``None`` when it is not cached."""
        path = self._file(key)
        return path if os.path.isfile(path) else None

    def read(self, key: str) -> bytes | None:
        """The cached bytes of ``key``, or ``None``."""
        try:
            with open(self._file(key), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def write(self, key: str, data: bytes) -> None:
        """Keep ``data`` as ``key`` (atomic rename; a full disk only costs the caching)."""
        try:
            write_atomically(self._file(key), data)
        except OSError:
            pass
