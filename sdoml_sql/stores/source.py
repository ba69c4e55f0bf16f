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

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import os
import random
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import fsspec
import fsspec.asyn
import orjson

from sdoml_sql import config
from sdoml_sql.config import GCS_EMULATOR_ENV, S3_ENDPOINT_ENVS
from sdoml_sql.exceptions import AccessDeniedError, OfflineError, SdomlError, StoreError
from sdoml_sql.files import write_atomically

#: Base URLs of the two public copies of SDOML v2.
MIRRORS = {
    "aws": "s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/",
    "gcs": "gs://fdl-sdoml-v2/",
}

#: Base URLs of the two copies of SDOMLv2a, the FDL-X re-package (2010-2023) SDO-FM trains on.
MIRRORS_V2A = {
    "aws": "s3://nasa-radiant-data/helioai-datasets/us-fdlx-ard/sdomlv2a/",
    "gcs": "gs://us-fdlx-ard-sdomlv2a/",
}

#: Named public stores: ``resolve_url("aia-small")`` or ``resolve_url("gcs:hmi-v2a")``.
PRESETS = {
    "aia-small": "sdomlv2_small.zarr",
    "aia": "sdomlv2.zarr",
    "hmi-small": "sdomlv2_hmi_small.zarr",
    "hmi": "sdomlv2_hmi.zarr",
    "eve": "sdomlv2_eve.zarr",
    "aia-v2a": "AIA.zarr",
    "hmi-v2a": "HMI.zarr",
    "eve-v2a": "EVE_legacy.zarr",
}

#: The variant of each preset (see :data:`VARIANTS`); its mirrors are ``VARIANT_MIRRORS[variant]``.
PRESET_VARIANTS = {name: "v2a" if name.endswith("-v2a") else "v2" for name in PRESETS}
VARIANT_MIRRORS = {"v2": MIRRORS, "v2a": MIRRORS_V2A}

#: The SDOML variants a catalog records for each source: what each means, in one line.
VARIANTS = {
    "v2": "SDOML v2 (fdl-sdoml-v2: AIA/HMI 2010-2020, time-ordered HMI, EVE in a MEGS-A group)",
    "v2a": "SDOMLv2a (FDL-X: AIA/HMI 2010-2023, HMI out of time order, flat EVE_legacy)",
}

DEFAULT_MIRROR = "aws"
DNS_TIMEOUT_S = 1.5
DEFAULT_HOSTS = {"gs": "storage.googleapis.com", "gcs": "storage.googleapis.com", "s3": "s3.amazonaws.com",
                 "s3a": "s3.amazonaws.com"}
REMOTE_PROTOCOLS = frozenset({"http", "https", "s3", "s3a", "gs", "gcs"})

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 5
FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 5.0
CHUNK_KEY = re.compile(r"(^|/)\d+(\.\d+)*$")


@dataclass(frozen=True)
class ReadPolicy:
    """How hard a remote read tries: ``retries`` after the first attempt, pauses doubling
    from ``first_pause`` (with jitter, at most ``max_pause``), and a deadline of ``timeout``
    seconds for one object, every attempt and pause included."""

    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    first_pause: float = FIRST_PAUSE_S
    max_pause: float = MAX_PAUSE_S

    @classmethod
    def from_env(cls, timeout: float | None = None, retries: int | None = None) -> ReadPolicy:
        """The policy from the arguments, else the settings (:mod:`sdoml_sql.config`:
        ``--store-timeout``, ``SDOML_TIMEOUT`` / ``--retries``, ``SDOML_RETRIES``), else defaults."""
        timeout = config.store_timeout(timeout, StoreError)
        timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        retries = config.store_retries(retries, StoreError)
        retries = DEFAULT_RETRIES if retries is None else retries
        if not timeout > 0 or retries < 0:
            raise StoreError(f"timeout must be > 0 s and retries >= 0 (got {timeout}, {retries})")
        return cls(timeout=timeout, retries=retries)

    def pause(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1, 2 …): exponential with full jitter."""
        ceiling = min(self.max_pause, self.first_pause * 2 ** (attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2


def is_transient(error: BaseException) -> bool:
    """Whether a failed read is worth retrying: not a missing object, not a refusal."""
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return False
    if isinstance(error, (ValueError, TypeError, KeyError)) or _looks_denied(error):
        return False
    return True


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    detail = text[0][:200] if text else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def resolve_url(name_or_url: str, mirror: str | None = None) -> str:
    """Return the URL for a preset name (``aia-small``, ``gcs:hmi`` …) or the URL itself.

    ``mirror`` (``aws`` — the anonymous mirror, the default — or ``gcs``) picks the copy for a
    bare preset name; a ``gcs:``/``aws:`` prefix on the name wins over it.
    """
    name = str(name_or_url)
    prefix, _, rest = name.partition(":")
    if rest and prefix in MIRRORS and rest in PRESETS:
        return VARIANT_MIRRORS[PRESET_VARIANTS[rest]][prefix] + PRESETS[rest]
    if name in PRESETS:
        mirror = mirror or config.env_text(config.MIRROR_ENV) or DEFAULT_MIRROR
        if mirror not in MIRRORS:
            raise StoreError(f"unknown mirror {mirror!r}: choose one of {', '.join(MIRRORS)}")
        return VARIANT_MIRRORS[PRESET_VARIANTS[name]][mirror] + PRESETS[name]
    return name


def _protocol(url: str) -> str:
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].lower()


def default_storage_options(url: str, billing_project: str | None = None,
                            timeout: float | None = None) -> dict[str, Any]:
    """Storage options that make the public stores work the way their users expect.

    ``s3://`` is anonymous unless AWS credentials are in the environment; its endpoint comes
    from ``SDOML_ENDPOINT_URL``, ``SDOML_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``.  ``gs://`` bills
    ``billing_project`` (or ``SDOML_BILLING_PROJECT``) for the requester-pays bucket and is
    anonymous without credentials; its endpoint comes from ``SDOML_ENDPOINT_URL`` or
    ``STORAGE_EMULATOR_HOST`` (the variable gcsfs and the Google clients honour).  Socket
    timeouts follow ``timeout`` (else ``SDOML_TIMEOUT``).
    """
    protocol = _protocol(url)
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            options["anon"] = True
        endpoint = config.setting("endpoint_url") or config.first_env(*S3_ENDPOINT_ENVS)
        if endpoint:
            options["endpoint_url"] = endpoint
        attempt_timeout = ReadPolicy.from_env(timeout).timeout / 2
        options["config_kwargs"] = {"connect_timeout": min(10.0, attempt_timeout), "read_timeout": attempt_timeout,
                                    "retries": {"max_attempts": 2, "mode": "standard"}}
    elif protocol in ("gs", "gcs"):
        project = billing_project or config.env_text(config.BILLING_ENV)
        if project:
            options["requester_pays"] = project
            options["project"] = project
        elif not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            options["token"] = "anon"
        endpoint = config.setting("endpoint_url") or config.env_text(GCS_EMULATOR_ENV)
        if endpoint:
            options["endpoint_url"] = endpoint if "://" in endpoint else "http://" + endpoint
            options.setdefault("token", "anon")
    return options


def explicit_endpoint(url: str, options: dict[str, Any]) -> str | None:
    """The endpoint URL an ``s3://`` store (an S3-compatible service) or a ``gs://`` store (a
    GCS emulator) is read from when one is set; None for the cloud's own hosts and others."""
    protocol = _protocol(url)
    if protocol in ("s3", "s3a"):
        endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    elif protocol in ("gs", "gcs"):
        endpoint = options.get("endpoint_url") or config.env_text(GCS_EMULATOR_ENV)
    else:
        return None
    return (endpoint if "://" in endpoint else "http://" + endpoint) if endpoint else None


def _remote_host(url: str, options: dict[str, Any]) -> str | None:
    protocol = _protocol(url)
    if protocol in ("http", "https"):
        return urllib.parse.urlsplit(url).hostname
    endpoint = explicit_endpoint(url, options)
    if endpoint:
        return urllib.parse.urlsplit(endpoint).hostname
    return DEFAULT_HOSTS.get(protocol)


def check_reachable(url: str, storage_options: dict[str, Any] | None = None, what: str = "store") -> None:
    """Raise :class:`OfflineError` within ~2 s if a remote store's host does not resolve
    (``what`` names it in the message: ``store``, or ``catalog`` for a catalog's prefix).

    gcsfs and s3fs retry for 30–90 s before failing offline; a DNS look-up fails in
    milliseconds, so this runs before any remote access.
    """
    host = _remote_host(url, storage_options or {})
    if not host:
        return
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, host, None)
    try:
        future.result(timeout=DNS_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise OfflineError(f"offline: no DNS answer for {host} within {DNS_TIMEOUT_S} s ({what} {url})") from None
    except OSError as error:
        raise OfflineError(f"offline: cannot resolve {host} for {what} {url} ({error.strerror or error})") from None
    finally:
        pool.shutdown(wait=False)


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
        return _protocol(self.url) in REMOTE_PROTOCOLS and getattr(self.fs, "async_impl", False)

    @property
    def is_local(self) -> bool:
        """Whether the store is on a local filesystem (no network latency to hide)."""
        return _protocol(self.url) == "file"

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

        if _protocol(self.url) == "file":
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


class Attempts:
    """The bookkeeping of one object's read under a :class:`ReadPolicy`: each attempt gets at
    most half the policy's timeout (so a stalled answer leaves time for a retry), and the
    whole read ends at the deadline."""

    def __init__(self, policy: ReadPolicy):
        self.policy = policy
        self.deadline = time.monotonic() + policy.timeout
        self.count = 0
        self.last: BaseException | None = None

    def budget(self) -> float:
        """Seconds the next attempt may take."""
        return max(0.001, min(self.deadline - time.monotonic(), self.policy.timeout / 2))

    def failed(self, error: BaseException) -> float | None:
        """Note a failed attempt; the pause before the next one, or ``None`` to give up."""
        self.count += 1
        self.last = error
        if self.count > self.policy.retries:
            return None
        pause = self.policy.pause(self.count)
        return pause if time.monotonic() + pause < self.deadline else None

    def give_up(self, url: str, key: str, what: str = "store") -> StoreError:
        """The one-line error naming the store (``what``: or the catalog) and the object."""
        if isinstance(self.last, (asyncio.TimeoutError, TimeoutError)):
            reason = f"timed out (SDOML_TIMEOUT={self.policy.timeout:g} s)"
        else:
            reason = _one_line(self.last)
        return StoreError(f"{what} {url}: cannot read {key} after {self.count} attempt(s): {reason}")


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

        def __init__(self, store, *, source: Source):
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


def GuardedStore(store, *, source: Source):  # builds an instance of the class above
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


#: Words in an object store's error that mean it refused access (retrying cannot help).
DENIED_WORDS = ("403", "forbidden", "denied", "requester pays", "user project")


def _looks_denied(error: Exception) -> bool:
    text = str(error).lower()
    return any(word in text for word in DENIED_WORDS)


def _access_denied(url: str, error: Exception, what: str = "store") -> AccessDeniedError:
    hint = ""
    if what == "store" and _protocol(url) in ("gs", "gcs"):
        hint = "; the GCS bucket is requester-pays: pass --billing-project PROJECT, or use the anonymous AWS mirror"
    return AccessDeniedError(f"access refused to {what} {url}: {str(error).splitlines()[0][:200]}{hint}")


@contextlib.contextmanager
def store_errors(url: str, doing: str, what: str = "store", failure: type[SdomlError] = StoreError):
    """Word what an object store raises in the block as one line naming ``what`` (``store``
    or ``catalog``) at ``url`` and what was being ``done``: a refusal is an
    :class:`AccessDeniedError`, another ``OSError`` a ``failure`` (``{what} {url}: cannot
    {doing}: …``).  ``FileNotFoundError`` (callers decide what a missing object means) and
    errors already worded pass through."""
    try:
        yield
    except (FileNotFoundError, SdomlError):
        raise
    except PermissionError as error:
        raise _access_denied(url, error, what) from None
    except OSError as error:
        if _looks_denied(error):
            raise _access_denied(url, error, what) from None
        raise failure(f"{what} {url}: cannot {doing}: {_one_line(error)}") from None


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
    protocol = _protocol(url)
    try:
        if protocol == "file":
            fs = fsspec.filesystem("file")
            root = fs._strip_protocol(os.path.abspath(os.path.expanduser(url.removeprefix("file://"))))
        elif protocol in ("gs", "gcs"):
            fs, root = _gcs_filesystem(url, options)
        else:
            fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError, TypeError) as error:
        raise StoreError(f"cannot open {what} {url}: {_one_line(error)}") from None
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
