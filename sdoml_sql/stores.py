"""Opening SDOML v2 Zarr stores: local paths, ``file://``, ``memory://``, ``http(s)://``,
``gs://`` (gcsfs) and ``s3://`` (s3fs), plus named presets for the public stores.

A :class:`Source` gives raw access to a store's metadata files (so the harvester can parse
``.zattrs`` with a fast JSON parser and ``tree`` never reads attributes) and opens zarr
arrays *without* reading their ``.zattrs`` (a full-year AIA ``.zattrs`` is ~221 MB).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import fsspec
import orjson

from sdoml_sql.exceptions import AccessDeniedError, OfflineError, StoreError

#: Base URLs of the two public copies of SDOML v2.
MIRRORS = {
    "aws": "s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/",
    "gcs": "gs://fdl-sdoml-v2/",
}

#: Named public stores: ``resolve_url("aia-small")`` or ``resolve_url("gcs:hmi")``.
PRESETS = {
    "aia-small": "sdomlv2_small.zarr",
    "aia": "sdomlv2.zarr",
    "hmi-small": "sdomlv2_hmi_small.zarr",
    "hmi": "sdomlv2_hmi.zarr",
    "eve": "sdomlv2_eve.zarr",
}

DEFAULT_MIRROR = "aws"
DNS_TIMEOUT_S = 1.5
DEFAULT_HOSTS = {"gs": "storage.googleapis.com", "gcs": "storage.googleapis.com", "s3": "s3.amazonaws.com"}


def resolve_url(name_or_url: str, mirror: str | None = None) -> str:
    """Return the URL for a preset name (``aia-small``, ``gcs:hmi`` …) or the URL itself.

    ``mirror`` (``aws`` — the anonymous mirror, the default — or ``gcs``) picks the copy for a
    bare preset name; a ``gcs:``/``aws:`` prefix on the name wins over it.
    """
    name = str(name_or_url)
    prefix, _, rest = name.partition(":")
    if rest and prefix in MIRRORS and rest in PRESETS:
        return MIRRORS[prefix] + PRESETS[rest]
    if name in PRESETS:
        mirror = mirror or os.environ.get("SDOML_MIRROR", DEFAULT_MIRROR)
        if mirror not in MIRRORS:
            raise StoreError(f"unknown mirror {mirror!r}: choose one of {', '.join(MIRRORS)}")
        return MIRRORS[mirror] + PRESETS[name]
    return name


def _protocol(url: str) -> str:
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].lower()


def default_storage_options(url: str, billing_project: str | None = None) -> dict[str, Any]:
    """Storage options that make the public stores work the way their users expect.

    ``s3://`` is anonymous unless AWS credentials are in the environment; an endpoint comes
    from ``SDOML_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``.  ``gs://`` bills ``billing_project``
    (or ``SDOML_BILLING_PROJECT``) for the requester-pays bucket; gcsfs itself honours
    ``STORAGE_EMULATOR_HOST``.
    """
    protocol = _protocol(url)
    options: dict[str, Any] = {}
    if protocol == "s3":
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            options["anon"] = True
        endpoint = os.environ.get("SDOML_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
        options["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 3}}
    elif protocol in ("gs", "gcs"):
        project = billing_project or os.environ.get("SDOML_BILLING_PROJECT")
        if project:
            options["requester_pays"] = project
            options["project"] = project
        elif not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            options["token"] = "anon"
    return options


def _remote_host(url: str, options: dict[str, Any]) -> str | None:
    protocol = _protocol(url)
    if protocol in ("http", "https"):
        return urllib.parse.urlsplit(url).hostname
    if protocol == "s3":
        endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
        return urllib.parse.urlsplit(endpoint).hostname if endpoint else DEFAULT_HOSTS["s3"]
    if protocol in ("gs", "gcs"):
        emulator = options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            return urllib.parse.urlsplit(emulator if "://" in emulator else "http://" + emulator).hostname
        return DEFAULT_HOSTS["gs"]
    return None


def check_reachable(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`OfflineError` within ~2 s if a remote store's host does not resolve.

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
        raise OfflineError(f"offline: no DNS answer for {host} within {DNS_TIMEOUT_S} s (store {url})") from None
    except OSError as error:
        raise OfflineError(f"offline: cannot resolve {host} for store {url} ({error.strerror or error})") from None
    finally:
        pool.shutdown(wait=False)


@dataclass
class Source:
    """An opened store: its URL, the fsspec filesystem and the store's root path in it."""

    url: str
    fs: fsspec.AbstractFileSystem
    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (``"2010/171A/.zattrs"``) inside the store."""
        key = key.strip("/")
        return f"{self.root}/{key}" if key else self.root

    def read_bytes(self, key: str) -> bytes:
        """Read one object of the store, mapping access errors to :mod:`sdoml_sql.exceptions`."""
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise
        except PermissionError as error:
            raise _access_denied(self.url, error) from None
        except OSError as error:
            if _looks_denied(error):
                raise _access_denied(self.url, error) from None
            raise StoreError(f"store {self.url}: cannot read {key}: {error}") from None

    def read_json(self, key: str) -> Any:
        """Parse a JSON metadata object (orjson; falls back to ``json`` for NaN literals)."""
        raw = self.read_bytes(key)
        return parse_json(raw, f"store {self.url}: {key}")

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists in the store."""
        try:
            return self.fs.exists(self.path(key))
        except PermissionError as error:
            raise _access_denied(self.url, error) from None

    def info(self, key: str) -> dict[str, Any]:
        """fsspec ``info`` of one object (size, and ETag/mtime/md5 where the backend has them)."""
        return self.fs.info(self.path(key))

    def listdir(self, key: str = "") -> list[str]:
        """Names directly under ``key`` (groups, arrays and metadata files)."""
        try:
            entries = self.fs.ls(self.path(key), detail=False)
        except FileNotFoundError:
            raise StoreError(f"store {self.url}: no such group {key or '/'}") from None
        except PermissionError as error:
            raise _access_denied(self.url, error) from None
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
        """The ``.zarray`` dict of the array at ``path`` (``"2010/171A"``)."""
        try:
            return self.metadata(f"{path}/.zarray")
        except FileNotFoundError:
            raise StoreError(f"store {self.url}: no array {path}") from None

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
        """The zarr 3 store object for this source (read-only)."""
        from zarr.storage import FsspecStore, LocalStore

        if _protocol(self.url) == "file":
            return LocalStore(self.root, read_only=True)
        fs = self.fs
        if getattr(fs, "async_impl", False) and not getattr(fs, "asynchronous", False):
            # zarr runs its own event loop: an async filesystem (http, s3, gcs) bound to
            # fsspec's loop fails there ("Timeout context manager should be used inside a task").
            fs = type(fs)(**{**fs.storage_options, "asynchronous": True})
        elif not getattr(fs, "async_impl", False):
            from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

            fs = AsyncFileSystemWrapper(fs)
        return FsspecStore(fs, read_only=True, path=self.root)

    def group(self, path: str = ""):
        """The zarr group at ``path`` (read-only, ``zarr_format=2``)."""
        import zarr

        try:
            return zarr.open_group(self.zarr_store, path=path, mode="r", zarr_format=2)
        except FileNotFoundError:
            raise StoreError(f"store {self.url}: no group {path or '/'}") from None


def parse_json(raw: bytes, what: str) -> Any:
    """Parse JSON bytes quickly; ``what`` names the object in the error if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # zarr 2 writes NaN/Infinity literals, which orjson rejects
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise StoreError(f"{what} is not valid JSON ({error})") from None


def _looks_denied(error: Exception) -> bool:
    text = str(error).lower()
    return any(word in text for word in ("403", "forbidden", "access denied", "requester pays", "user project"))


def _access_denied(url: str, error: Exception) -> AccessDeniedError:
    hint = ""
    if _protocol(url) in ("gs", "gcs"):
        hint = "; the GCS bucket is requester-pays: pass --billing-project PROJECT, or use the anonymous AWS mirror"
    return AccessDeniedError(f"access refused to store {url}: {str(error).splitlines()[0][:200]}{hint}")


def open_store(
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    billing_project: str | None = None,
    mirror: str | None = None,
    check: bool = True,
) -> Source:
    """Open a store by preset name or URL and check that it is a Zarr v2 group.

    ``url`` may be a local path, ``file://``, ``memory://``, ``http(s)://``, ``gs://``,
    ``s3://`` or a preset name (see :data:`PRESETS`).  Remote hosts are checked with a DNS
    look-up first so that offline use fails in under 2 s.  Raises :class:`StoreError`
    (missing path, not a Zarr group), :class:`OfflineError` or :class:`AccessDeniedError`.
    """
    url = resolve_url(url, mirror)
    options = {**default_storage_options(url, billing_project), **(storage_options or {})}
    check_reachable(url, options)
    protocol = _protocol(url)
    try:
        if protocol == "file":
            fs = fsspec.filesystem("file")
            root = fs._strip_protocol(os.path.abspath(os.path.expanduser(url.removeprefix("file://"))))
        else:
            fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as error:
        raise StoreError(f"cannot open store {url}: {error}") from None
    source = Source(url=url, fs=fs, root=root.rstrip("/"), storage_options=options)
    if check:
        _check_is_group(source)
    return source


def _check_is_group(source: Source) -> None:
    try:
        exists = source.fs.exists(source.root)
        has_group = source.exists(".zgroup") or source.consolidated is not None
    except PermissionError as error:
        raise _access_denied(source.url, error) from None
    except OSError as error:
        if _looks_denied(error):
            raise _access_denied(source.url, error) from None
        raise StoreError(f"cannot open store {source.url}: {str(error).splitlines()[0]}") from None
    if not exists and not has_group:
        raise StoreError(f"store {source.url} does not exist")
    if not has_group:
        raise StoreError(f"{source.url} is not a Zarr v2 store: no .zgroup at its root")
