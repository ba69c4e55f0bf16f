"""Opening SDOML v2 Zarr stores: local paths, ``file://``, ``memory://``, ``http(s)://``,
``gs://`` (gcsfs) and ``s3://`` (s3fs), plus named presets for the public stores.

A :class:`Source` gives raw access to a store's metadata files (so the harvester can parse
``.zattrs`` with a fast JSON parser and ``tree`` never reads attributes) and opens zarr
arrays *without* reading their ``.zattrs`` (a full-year AIA ``.zattrs`` is ~221 MB).

Every read of a remote store (metadata and chunks) is retried with exponential backoff on
transient failures (timeouts, dropped connections, 5xx) and bounded in time by a
:class:`ReadPolicy` (``SDOML_TIMEOUT``, ``SDOML_RETRIES``); when it gives up it raises
:class:`StoreError` naming the store and the object.  Chunks can be cached on local disk
(``cache_dir`` / ``SDOML_CACHE``) so that a repeated fetch reads nothing remote.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import fsspec
import fsspec.asyn
import orjson

from sdoml_sql import config
from sdoml_sql.exceptions import StoreError
from sdoml_sql.stores.guarded_store import CHUNK_KEY, ChunkCache, GuardedStore
from sdoml_sql.stores.retries import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    DENIED_WORDS,
    FIRST_PAUSE_S,
    MAX_PAUSE_S,
    Attempts,
    ReadPolicy,
    error_line,
    is_transient,
    store_errors,
)
from sdoml_sql.stores.urls import (
    DEFAULT_HOSTS,
    DEFAULT_MIRROR,
    DNS_TIMEOUT_S,
    MIRRORS,
    MIRRORS_V2A,
    PRESET_VARIANTS,
    PRESETS,
    REMOTE_PROTOCOLS,
    VARIANT_MIRRORS,
    VARIANTS,
    check_reachable,
    default_storage_options,
    explicit_endpoint,
    resolve_url,
    url_protocol,
)


@dataclass
class Source:
    """An opened store: its URL, the fsspec filesystem and the store's root path in it.

    Reads of a remote store go through :attr:`policy` (retries, backoff, deadline);
    ``cache_dir`` (optional) keeps fetched chunks on local disk.
    """

    url: str
    fs: fsspec.AbstractFileSystem
    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    policy: ReadPolicy = field(default_factory=ReadPolicy)
    cache_dir: str | None = None
    #: What the errors call it: ``store``, or ``catalog`` for a catalog's prefix.
    what: str = "store"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the opened zarr store (rebuilt on use; it refers back to us)."""
        state = dict(self.__dict__)
        state.pop("zarr_store", None)
        return state

    @property
    def remote(self) -> bool:
        """Whether reads cross the network (and so are retried and bounded in time)."""
        return url_protocol(self.url) in REMOTE_PROTOCOLS and getattr(self.fs, "async_impl", False)

    @property
    def is_local(self) -> bool:
        """Whether the store is on a local filesystem (no network latency to hide)."""
        return url_protocol(self.url) == "file"

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (``"2010/171A/.zattrs"``) inside the store."""
        key = key.strip("/")
        return f"{self.root}/{key}" if key else self.root

    def _call(self, method: str, key: str, *args, **kwargs):
        """``fs.<method>(path(key), …)``, retried with backoff and bounded by the policy."""
        path = self.path(key)
        if not self.remote:
            return getattr(self.fs, method)(path, *args, **kwargs)
        coroutine = getattr(self.fs, "_" + method)
        attempts = Attempts(self.policy)
        while True:
            try:
                return fsspec.asyn.sync(self.fs.loop, coroutine, path, *args, timeout=attempts.budget(), **kwargs)
            except Exception as error:  # classified below, re-raised or named
                if not is_transient(error):
                    raise
                pause = attempts.failed(error)
            if pause is None:
                raise attempts.give_up(self.url, key, self.what)
            time.sleep(pause)

    def read_bytes(self, key: str) -> bytes:
        """Read one object of the store, mapping access errors to :mod:`sdoml_sql.exceptions`."""
        with store_errors(self.url, f"read {key}", self.what):
            return self._call("cat_file", key)

    def read_json(self, key: str) -> Any:
        """Parse a JSON metadata object (orjson; falls back to ``json`` for NaN literals)."""
        raw = self.read_bytes(key)
        return parse_json(raw, f"store {self.url}: {key}")

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists in the store."""
        with store_errors(self.url, f"look for {key or 'its root'}", self.what):
            return self._call("exists", key)

    def info(self, key: str) -> dict[str, Any]:
        """fsspec ``info`` of one object (size, and ETag/mtime/md5 where the backend has them)."""
        return self._call("info", key)

    def listdir(self, key: str = "") -> list[str]:
        """Names directly under ``key`` (groups, arrays and metadata files)."""
        try:
            with store_errors(self.url, f"list {key or '/'}", self.what):
                entries = self._call("ls", key, detail=False)
        except FileNotFoundError:
            raise StoreError(f"store {self.url}: no such group {key or '/'}") from None
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})

    @cached_property
    def consolidated(self) -> dict[str, Any] | None:
        """The ``.zmetadata`` mapping if the store has one, else ``None``."""
        try:
            return self.read_json(".zmetadata").get("metadata")
        except FileNotFoundError:
            return None

    def metadata(self, key: str) -> Any:
        """A metadata object (``2010/171A/.zarray``), from the file or else from ``.zmetadata``."""
        try:
            return self.read_json(key)
        except FileNotFoundError:
            if self.consolidated and key in self.consolidated:
                return self.consolidated[key]
            raise

    def children(self, group: str = "") -> tuple[list[str], list[str]]:
        """``(subgroups, arrays)`` directly under ``group``, found by listing, never by attrs."""
        groups, arrays = [], []
        for name in self.listdir(group):
            if name.startswith("."):
                continue
            child = f"{group}/{name}".strip("/")
            if self.exists(f"{child}/.zarray"):
                arrays.append(name)
            elif self.exists(f"{child}/.zgroup"):
                groups.append(name)
        return groups, arrays

    def zarray(self, path: str) -> dict[str, Any]:
        """The ``.zarray`` dict of the array at ``path`` (``"2010/171A"``), checked to have a
        usable ``shape``, ``chunks`` and ``dtype`` (else :class:`StoreError` naming it)."""
        try:
            meta = self.metadata(f"{path}/.zarray")
        except FileNotFoundError:
            raise StoreError(f"store {self.url}: no array {path}") from None
        problem = _zarray_problem(meta)
        if problem:
            raise StoreError(f"store {self.url}: array {path}: .zarray {problem}")
        return meta

    def array(self, path: str):
        """A read-only ``zarr.Array`` for ``path`` built from ``.zarray`` alone.

        ``zarr.open_array`` would also download the array's ``.zattrs`` (hundreds of MB for
        AIA); pixel reads need only the array metadata.
        """
        from zarr.core.array import Array, AsyncArray
        from zarr.core.metadata.v2 import ArrayV2Metadata
        from zarr.storage import StorePath

        meta = dict(self.zarray(path))
        meta["attributes"] = {}
        metadata = ArrayV2Metadata.from_dict(meta)
        return Array(AsyncArray(metadata=metadata, store_path=StorePath(self.zarr_store, path)))

    @cached_property
    def zarr_store(self):
        """The zarr 3 store object for this source (read-only; remote reads retried, cached)."""
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
        from zarr.storage import FsspecStore, LocalStore

        if url_protocol(self.url) == "file":
            return LocalStore(self.root, read_only=True)
        store = FsspecStore(AsyncFileSystemWrapper(self.fs, asynchronous=True), read_only=True, path=self.root)
        if not self.remote:
            return store
        return GuardedStore(store, source=self)

    def group(self, path: str = ""):
        """The zarr group at ``path`` (read-only, ``zarr_format=2``)."""
        import zarr

        try:
            return zarr.open_group(self.zarr_store, path=path, mode="r", zarr_format=2)
        except FileNotFoundError:
            raise StoreError(f"store {self.url}: no group {path or '/'}") from None


def _zarray_problem(meta: Any) -> str | None:
    """What makes a ``.zarray`` unusable (``None`` if nothing): shape, chunks, dtype."""
    if not isinstance(meta, dict):
        return f"is a {type(meta).__name__}, not an object"
    for name in ("shape", "chunks"):
        value = meta.get(name)
        if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in value):
            return f"has no valid {name} (a list of non-negative integers): {str(value)[:80]!r}"
    if len(meta["shape"]) != len(meta["chunks"]) or 0 in meta["chunks"]:
        return f"chunks {meta['chunks']} do not fit shape {meta['shape']}"
    if not meta.get("dtype"):
        return "has no dtype"
    return None


def parse_json(raw: bytes, what: str) -> Any:
    """Parse JSON bytes quickly; ``what`` names the object in the error if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # zarr 2 writes NaN/Infinity literals, which orjson rejects
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise StoreError(f"{what} is not valid JSON ({error})") from None


def open_store(
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    billing_project: str | None = None,
    mirror: str | None = None,
    check: bool = True,
    timeout: float | None = None,
    retries: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    what: str = "store",
) -> Source:
    """Open a store by preset name or URL and check that it is a Zarr v2 group.

    ``url`` may be a local path, ``file://``, ``memory://``, ``http(s)://``, ``gs://``,
    ``s3://`` or a preset name (see :data:`PRESETS`).  Remote hosts are checked with a DNS
    look-up first so that offline use fails in under 2 s.  ``timeout`` (seconds per object,
    retries included; else ``SDOML_TIMEOUT``, default 120) and ``retries`` (else
    ``SDOML_RETRIES``, default 5) bound remote reads; ``cache_dir`` (else ``SDOML_CACHE``)
    keeps fetched chunks on local disk.  Raises :class:`StoreError` (missing path, not a
    Zarr group, a read that failed every retry), :class:`OfflineError` or
    :class:`AccessDeniedError`.  ``what`` is what errors call it (``catalog`` for a catalog's
    prefix opened as a store).
    """
    url = resolve_url(url, mirror)
    options = {**default_storage_options(url, billing_project, timeout), **(storage_options or {})}
    policy = ReadPolicy.from_env(timeout, retries)
    cache_dir = config.chunk_cache_dir(cache_dir)
    check_reachable(url, options, what)
    protocol = url_protocol(url)
    try:
        if protocol == "file":
            fs = fsspec.filesystem("file")
            root = fs._strip_protocol(os.path.abspath(os.path.expanduser(url.removeprefix("file://"))))
        elif protocol in ("gs", "gcs"):
            fs, root = _gcs_filesystem(url, options)
        else:
            fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError, TypeError) as error:
        raise StoreError(f"cannot open {what} {url}: {error_line(error)}") from None
    source = Source(url=url, fs=fs, root=root.rstrip("/"), storage_options=options, policy=policy,
                    cache_dir=str(cache_dir) if cache_dir else None, what=what)
    if check:
        _check_is_group(source)
    return source


def _gcs_filesystem(url: str, options: dict[str, Any]):
    """gcsfs's plain ``GCSFileSystem``: its default (since 2025) ``ExtendedGcsFileSystem``
    asks a gRPC control API for the bucket layout before listings and opens; for the
    requester-pays SDOML bucket (and emulators) that call fails after a 60 s timeout, every
    time, since a failed answer is not cached.  SDOML buckets are flat: the plain class is right."""
    from gcsfs.core import GCSFileSystem

    fs = GCSFileSystem(**options)
    return fs, fs._strip_protocol(url)


def _check_is_group(source: Source) -> None:
    with store_errors(source.url, "open it"):
        exists = source.exists("")
        has_group = source.exists(".zgroup") or source.consolidated is not None
    if not exists and not has_group:
        raise StoreError(f"store {source.url} does not exist")
    if not has_group:
        raise StoreError(f"{source.url} is not a Zarr v2 store: no .zgroup at its root")


__all__ = [
    "Attempts", "CHUNK_KEY", "ChunkCache", "DEFAULT_HOSTS", "DEFAULT_MIRROR", "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S", "DENIED_WORDS", "DNS_TIMEOUT_S", "FIRST_PAUSE_S", "GuardedStore", "MAX_PAUSE_S", "MIRRORS",
    "MIRRORS_V2A", "PRESETS", "PRESET_VARIANTS", "REMOTE_PROTOCOLS", "ReadPolicy", "Source", "VARIANTS",
    "VARIANT_MIRRORS", "check_reachable", "default_storage_options", "explicit_endpoint", "is_transient",
    "open_store", "parse_json", "resolve_url", "store_errors",
]
