"""Where a catalog lives — a local directory or an object-store prefix — and its manifest.

Light enough for ``sdoml-sql query`` to import: the builder writes through it
(:mod:`sdoml_sql.catalog_builder.build`), the query stage reads through it without
importing the builder.  A remote catalog (``s3://``, ``gs://``, ``https://`` read-only) is
reached with the same settings as stores (:func:`sdoml_sql.stores.source.open_store`:
endpoint, billing project, credentials, timeout, retries).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sdoml_sql.catalog_builder.layout import MANIFEST, Manifest
from sdoml_sql.exceptions import AccessDeniedError, CatalogError, OfflineError, StoreError
from sdoml_sql.files import write_atomically
from sdoml_sql.stores.source import REMOTE_PROTOCOLS, explicit_endpoint, open_store, store_errors

READ_ONLY_PROTOCOLS = ("http", "https")
#: The first read of a remote catalog (its manifest) is not retried: a wrong URL, a refused
#: connection or an unknown host fails at once, not after a store's long retry budget; a slow
#: store still gets 4 s (half of this) for the answer.
OPEN_TIMEOUT_S = 8.0
OPEN_RETRIES = 0


def is_remote(catalog: str | os.PathLike) -> bool:
    """Whether ``catalog`` names an object-store prefix (``s3://``, ``gs://``, ``https://`` …)."""
    text = str(catalog)
    return "://" in text and text.split("://", 1)[0].lower() in REMOTE_PROTOCOLS


@dataclass
class CatalogLocation:
    """A catalog's place: ``url`` (a local directory path, or ``protocol://bucket/prefix``),
    and for a remote one the opened :class:`~sdoml_sql.stores.source.Source` (fsspec
    filesystem, settings, retries)."""

    url: str
    source: Any = None

    @property
    def remote(self) -> bool:
        return self.source is not None

    @property
    def directory(self) -> Path:
        """The local directory (local catalogs only)."""
        if self.remote:
            raise CatalogError(f"catalog {self.url} is remote: this needs a local catalog")
        return Path(self.url)

    @property
    def fs(self):
        """The fsspec filesystem (local or remote)."""
        if self.remote:
            return self.source.fs
        import fsspec

        return fsspec.filesystem("file")

    @property
    def read_only(self) -> bool:
        return self.url.split("://", 1)[0].lower() in READ_ONLY_PROTOCOLS

    def path(self, relative: str = "") -> str:
        """``relative`` inside the catalog, as DuckDB and fsspec are given it."""
        relative = relative.strip("/")
        base = self.url.rstrip("/")
        return f"{base}/{relative}" if relative else base

    def read_bytes(self, relative: str) -> bytes | None:
        """An object's bytes, or None if it does not exist."""
        if not self.remote:
            try:
                return (self.directory / relative).read_bytes()
            except FileNotFoundError:
                return None
        try:
            return self.source.read_bytes(relative)
        except FileNotFoundError:
            return None

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write one object whole (a remote PUT replaces it atomically; locally:
        :func:`sdoml_sql.files.write_atomically`)."""
        if not self.remote:
            write_atomically(self.directory / relative, data)
            return
        self._refuse_if_read_only()
        self._remote_call("pipe_file", relative, data)

    def upload(self, local: Path, relative: str) -> None:
        """Copy a local file to ``relative`` (remote catalogs)."""
        self._refuse_if_read_only()
        self._remote_call("put_file", relative, str(local), lpath_first=True)

    def delete(self, relative: str) -> None:
        """Remove one object if it exists."""
        if not self.remote:
            Path(self.directory / relative).unlink(missing_ok=True)
            return
        try:
            self._remote_call("rm_file", relative)
        except FileNotFoundError:
            pass

    def listing(self, relative: str = "") -> dict[str, dict[str, Any]]:
        """Every object under ``relative``: ``{path relative to the catalog: fsspec info}``."""
        fs, root = self.fs, (self.source.root if self.remote else str(self.directory))
        base = f"{root.rstrip('/')}/{relative.strip('/')}".rstrip("/")
        try:
            found = fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        return {path[len(root.rstrip('/')) + 1:]: info for path, info in found.items()}

    def glob(self, pattern: str) -> list[str]:
        """Paths relative to the catalog matching ``pattern`` (``eve_lines/*/*.parquet``), sorted."""
        if not self.remote:
            return sorted(p.relative_to(self.directory).as_posix() for p in self.directory.glob(pattern))
        root = self.source.root.rstrip("/")
        return sorted(path[len(root) + 1:] for path in self.fs.glob(f"{root}/{pattern}"))

    def parquet_dataset(self, relatives: list[str]):
        """A ``pyarrow.dataset`` over Parquet files of the catalog (read in place when remote)."""
        import pyarrow.dataset as ds

        if not self.remote:
            return ds.dataset([str(self.directory / r) for r in relatives], format="parquet")
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return ds.dataset([self.source.path(r) for r in relatives], format="parquet",
                          filesystem=PyFileSystem(FSSpecHandler(self.fs)))

    def _remote_call(self, method: str, relative: str, *args, lpath_first: bool = False):
        path = self.source.path(relative)
        arguments = (args[0], path, *args[1:]) if lpath_first else (path, *args)
        with store_errors(self.url, f"{method.replace('_', ' ')} {relative}", "catalog", CatalogError):
            return getattr(self.source.fs, method)(*arguments)

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise CatalogError(f"catalog {self.url} is read-only over HTTP: build into a directory, s3:// or gs://")


def location_of(catalog) -> CatalogLocation:
    """The :class:`CatalogLocation` of an opened catalog (its ``.location``, else its ``.directory``)."""
    return getattr(catalog, "location", None) or open_location(catalog.directory)


def open_location(catalog: str | os.PathLike, *, storage_options: dict[str, Any] | None = None,
                  billing_project: str | None = None, timeout: float | None = None,
                  retries: int | None = None) -> CatalogLocation:
    """The :class:`CatalogLocation` of a directory, ``file://`` URL or remote URL."""
    text = str(catalog)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if not is_remote(text):
        return CatalogLocation(str(Path(text).expanduser().resolve()))
    try:
        source = open_store(text, storage_options=storage_options, billing_project=billing_project,
                            check=False, timeout=timeout, retries=retries, what="catalog")
    except (OfflineError, AccessDeniedError):
        raise
    except StoreError as error:
        raise CatalogError(f"cannot open catalog {text}: {error}") from None
    return CatalogLocation(text.rstrip("/"), source)


def read_manifest(catalog: str | os.PathLike | CatalogLocation) -> Manifest | None:
    """The catalog's manifest, or ``None`` if it has none."""
    location = catalog if isinstance(catalog, CatalogLocation) else open_location(catalog)
    raw = location.read_bytes(MANIFEST)
    if raw is None:
        return None
    try:
        return parse_manifest(raw)
    except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError) as error:
        raise CatalogError(f"catalog {location.url}: {MANIFEST} is corrupt ({type(error).__name__}: {error})") from None


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as JSON, each distinct partition schema (``keys``) written once under
    ``schemas`` and named by its digest in each partition's ``schema`` (a mission catalog's
    168 partitions share a handful of schemas: its manifest parses in a fraction of the time)."""
    schemas: dict[str, Any] = {}
    partitions = {}
    for key, entry in Manifest.of(manifest).partitions.items():
        if "keys" in entry:
            blob = orjson.dumps(entry["keys"])
            digest = hashlib.sha256(blob).hexdigest()[:16]
            schemas.setdefault(digest, entry["keys"])
            entry = {**{k: v for k, v in entry.items() if k != "keys"}, "schema": digest}
        partitions[key] = entry
    return orjson.dumps({**manifest, "partitions": partitions, "schemas": schemas}, option=orjson.OPT_INDENT_2)


def parse_manifest(data: bytes) -> Manifest:
    """A manifest read from JSON, each partition's ``keys`` restored from ``schemas`` (shared,
    not copied: treat them as read-only); manifests that hold ``keys`` inline read as they are."""
    manifest = Manifest(orjson.loads(data))
    schemas = manifest.pop("schemas", None) or {}
    for entry in manifest.partitions.values():
        if "schema" in entry:
            entry["keys"] = schemas[entry.pop("schema")]
    return manifest


def open_manifest(location: CatalogLocation) -> Manifest:
    """The manifest of a catalog being opened for queries: a missing catalog, a missing
    manifest, an unreachable or refused URL are one-line errors (remote: within ~2 s)."""
    if not location.remote:
        if not location.directory.is_dir():
            raise CatalogError(f"no catalog at {location.url}: build one with `sdoml-sql build`")
        manifest = read_manifest(location)
    else:
        manifest = _first_remote_read(location)
    if manifest is None:
        raise CatalogError(f"{location.url} is not a catalog: no {MANIFEST}")
    return manifest


def _check_endpoint_answers(location: CatalogLocation) -> None:
    """Fail at once when an explicit endpoint (an S3 service, a GCS emulator) refuses
    connections: botocore would retry with back-off first."""
    import socket
    import urllib.parse

    endpoint = explicit_endpoint(location.url, location.source.storage_options)
    if not endpoint:
        return
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=OPEN_TIMEOUT_S / 4).close()
    except OSError as error:
        if isinstance(error, socket.gaierror):
            return  # an unknown host: the store's own DNS check names it (OfflineError)
        raise CatalogError(f"cannot reach catalog {location.url}: nothing answers at {parts.hostname}:{port} "
                           f"({error.strerror or error})") from None


def _first_remote_read(location: CatalogLocation) -> Manifest | None:
    import dataclasses

    source = location.source
    _check_endpoint_answers(location)
    patient = source.policy
    source.policy = dataclasses.replace(patient, timeout=min(patient.timeout, OPEN_TIMEOUT_S),
                                        retries=min(patient.retries, OPEN_RETRIES))
    try:
        return read_manifest(location)
    except AccessDeniedError:
        raise
    except StoreError as error:
        raise CatalogError(f"cannot reach catalog {location.url}: {str(error).split(': ', 1)[-1]}") from None
    finally:
        source.policy = patient
