"""What the explorer keeps between requests, and when it is stale.

A catalog version's answers never change: its Parquet files and manifest are written before
the manifest names them, and a frame's pixels live in stores the manifest fingerprints.  So
pictures, headers, frame pages and query pages are kept in memory (:class:`Answers`, bounded
in bytes) under the version they were computed from, and pictures and frame data go out with
that version in their ``ETag``.  :class:`LiveCatalog` gives every request the current version:
a local catalog's ``manifest.json`` is checked on each request (one ``stat``), and a changed
one (a rebuild) reopens the catalog, so no answer of the old version is served again.  A
remote catalog is the version it was opened at (its files are never rewritten under one
name); restart the explorer to serve a newer one.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sdoml_sql.catalog_builder.layout import MANIFEST

#: SQL that may answer differently at each run (clock, random numbers): its pages are not kept.
VOLATILE_SQL = re.compile(r"\b(now|current_\w+|get_current_\w+|today|random|setseed|uuid|gen_random_uuid)\b",
                          re.IGNORECASE)


def repeatable(sql: str) -> bool:
    """Whether ``sql`` gives the same rows on the same catalog version (no clock, no random)."""
    return VOLATILE_SQL.search(sql) is None


class LiveCatalog:
    """The served catalog and its version, reopened when a local catalog's manifest changes."""

    def __init__(self, catalog):
        self._catalog = catalog
        self._lock = threading.Lock()
        self._identity = self._manifest_identity(catalog)
        self.version = self._version_of(catalog, self._identity)

    def current(self):
        """``(catalog, version)`` as of now."""
        identity = self._manifest_identity(self._catalog)
        if identity != self._identity:
            with self._lock:
                if identity != self._identity:
                    self._catalog = reopened(self._catalog)
                    self._identity = identity
                    self.version = self._version_of(self._catalog, identity)
        return self._catalog, self.version

    @staticmethod
    def _manifest_identity(catalog) -> tuple | None:
        if catalog.location.remote:
            return None
        try:
            stat = os.stat(os.path.join(catalog.directory, MANIFEST))
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    @staticmethod
    def _version_of(catalog, identity) -> str:
        text = repr((str(catalog.directory), identity, catalog.manifest.built_at))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def reopened(catalog):
    """A new :class:`~sdoml_sql.query.Catalog` of the same directory, with the same store access."""
    access = catalog._store_access
    return type(catalog)(catalog.directory, store_timeout=access.get("timeout"), retries=access.get("retries"),
                         cache_dir=access.get("cache_dir"))


def etag(version: str, *parts: Any) -> str:
    """A strong ``ETag`` for the answer ``parts`` name in catalog ``version``."""
    return '"' + hashlib.sha256(repr((version, *parts)).encode()).hexdigest()[:32] + '"'


#: What :meth:`Answers.peek` returns for a key it does not hold.
MISSING = object()


class Answers:
    """Answers by key, least recently used out first, bounded in bytes (``size(answer)``, by
    default ``len``: answers are kept encoded)."""

    def __init__(self, capacity: int, size: Callable[[Any], int] = len):
        self.capacity, self.used, self.size_of = capacity, 0, size
        self.entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def peek(self, key: tuple) -> Any:
        """The answer kept under ``key``, else :data:`MISSING`."""
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                self.hits += 1
                return self.entries[key][0]
            self.misses += 1
            return MISSING

    def put(self, key: tuple, value: Any) -> None:
        size = self.size_of(value)
        with self.lock:
            if key not in self.entries and size <= self.capacity:
                self.entries[key] = (value, size)
                self.used += size
                while self.used > self.capacity:
                    self.used -= self.entries.popitem(last=False)[1][1]
