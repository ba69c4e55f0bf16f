"""The catalog's layout, in one place: file names, partition keys and the manifest's shape.

```
CATALOG/manifest.json
CATALOG/aia/year=2010/channel=171A/data.parquet                      (remote builds: data-<build>.parquet)
CATALOG/eve/group=MEGS-A/data.parquet, eve_lines/group=MEGS-A/data.parquet
CATALOG/array_attrs/instrument=aia/year=2010/channel=171A/data.parquet
CATALOG/frame_stats/instrument=aia/year=2010/channel=171A/data.parquet   (quality/stats.py)
```

Every stage that names a catalog file or reads the manifest does it through this module:
the builder writes it, the fetch, quality, query and Fido stages read it.  The manifest is a
:class:`Manifest` (a ``dict``, as ``manifest.json`` reads) whose properties give its
partitions, sources and files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sdoml_sql.exceptions import CatalogError, StoreError

MANIFEST = "manifest.json"
DATA_FILE = "data.parquet"
LOCK_FILE = ".lock"
#: The DuckDB shell's views and macros (written by ``query/views.py``).
INIT_SQL = "init.sql"
STAGING_DIR = ".staging"
#: Suffix of the column keeping a time keyword's original string (``T_OBS_STR`` beside ``T_OBS``).
TIME_SUFFIX = "_STR"
#: The columns that locate a frame: its partition (``instrument``, ``year``, ``channel``) and
#: its position ``idx`` in the source array.
LOCATOR_COLUMNS = ("instrument", "year", "channel", "idx")
#: The side table of keys kept whole per array (their lists are not one value per frame).
ARRAY_ATTRS = "array_attrs"
#: Pixel statistics per frame (quality/stats.py), and the Parquet key-value metadata key of the
#: source fingerprint they were computed from (``<partition fingerprint>:<chunks digest>``).
STATS_DIR = "frame_stats"
STATS_FINGERPRINT_KEY = b"sdoml_sql.fingerprint"
INSTRUMENTS = ("aia", "hmi", "eve")
#: Instruments whose partitions are frames (one row per image, ``year=…/channel=…``).
FRAME_INSTRUMENTS = ("aia", "hmi")
#: The fields of an object's listing (fsspec ``info``) that change when its content does, by
#: backend: S3 ``ETag``/``LastModified``, GCS ``md5Hash``/``crc32c``/``generation``/``updated``,
#: local files ``mtime``, HTTP ``etag``/``last_modified``.  Size is added to them.
IDENTITY_FIELDS = ("ETag", "etag", "md5", "md5Hash", "crc32c", "generation", "mtime", "LastModified",
                   "last_modified", "updated", "created")


def partition_key(instrument: str, year: int, channel: str) -> str:
    """The key of a frame partition (``aia/year=2010/channel=171A``): its directory and its
    name in the manifest."""
    return f"{instrument}/year={int(year)}/channel={channel}"


def channel_glob(instrument: str, channel: str) -> str:
    """The partition directories of one channel over every year (``aia/year=*/channel=171A``)."""
    return f"{instrument}/year=*/channel={channel}"


def parse_partition_key(key: str) -> tuple[str, int, str] | None:
    """``(instrument, year, channel)`` of a frame partition key; ``None`` for other keys (EVE)."""
    instrument, _, rest = key.partition("/year=")
    year, _, channel = rest.partition("/channel=")
    if not (instrument and year.isdigit() and channel):
        return None
    return instrument, int(year), channel


def eve_key(group: str) -> str:
    """The key of an EVE partition (``eve/group=MEGS-A``)."""
    return f"eve/group={group}"


#: The catalog's name (``eve/group=root``) for EVE lines at a store's root: SDOMLv2a's flat
#: ``EVE_legacy.zarr``; SDOML v2 keeps them in a group, ``MEGS-A``.
ROOT_GROUP = "root"


def eve_group_name(group: str) -> str:
    """The catalog's name of an EVE group path (``"MEGS-A"``; the root ``""`` is :data:`ROOT_GROUP`)."""
    return group or ROOT_GROUP


def per_array_key(table: str, instrument: str, year: int, channel: str) -> str:
    """The directory of a side table kept per source array
    (``array_attrs/instrument=aia/year=2010/channel=171A``; also ``frame_stats``)."""
    return f"{table}/instrument={instrument}/year={int(year)}/channel={channel}"


def side_keys(key: str) -> list[str]:
    """Side-table directories that belong to a partition (rewritten or removed with it):
    ``eve_lines/…`` of an EVE group, ``array_attrs/…`` of a frame array."""
    instrument, _, rest = key.partition("/")
    if instrument == "eve":
        return [f"eve_lines/{rest}"]
    return [f"{ARRAY_ATTRS}/instrument={instrument}/{rest}"]


def partition_file(key: str, entry: dict[str, Any]) -> str:
    """Path of a partition's Parquet file relative to the catalog (``file`` in its manifest
    entry: remote builds give each build's frame files new names)."""
    return f"{key}/{entry.get('file') or DATA_FILE}"


def identity(info: dict[str, Any]) -> dict[str, str]:
    """The :data:`IDENTITY_FIELDS` an object's listing has, and its size, as strings."""
    stamp = {name: str(info[name]) for name in IDENTITY_FIELDS if info.get(name) is not None}
    stamp["size"] = str(info.get("size"))
    return stamp


class Manifest(dict):
    """A catalog's ``manifest.json`` as read: a ``dict``, with its parts by name.

    ``Manifest.of(anything)`` accepts a plain dict (or None: an empty manifest), so objects
    built elsewhere read the same way."""

    @classmethod
    def of(cls, manifest: dict[str, Any] | None) -> Manifest:
        if isinstance(manifest, Manifest):
            return manifest
        return cls(manifest or {})

    @classmethod
    def empty(cls) -> Manifest:
        """The manifest of a catalog never built: no partitions, sources or warnings."""
        return cls({"partitions": {}, "sources": {}, "warnings": []})

    @property
    def partitions(self) -> dict[str, dict[str, Any]]:
        """``{key: entry}`` of every partition (frames and EVE)."""
        return self.get("partitions") or {}

    @property
    def sources(self) -> dict[str, dict[str, Any]]:
        """``{instrument: {"url", "storage_options", "filters"}}`` of the stores built from."""
        return self.get("sources") or {}

    @property
    def built_at(self) -> str | None:
        """When the catalog was last built (``2026-11-26T15:00:00Z``)."""
        return self.get("built_at")

    @property
    def retired_files(self) -> dict[str, float]:
        """``{file: time it left}`` of frame files a remote rebuild replaced (kept for readers
        of an older manifest: :mod:`sdoml_sql.catalog_builder.remote`)."""
        return self.get("retired_files") or {}

    def source(self, instrument: str) -> dict[str, Any] | None:
        """The source entry of ``instrument``, or None."""
        return self.sources.get(instrument)

    def partition(self, instrument: str, year: int, channel: str) -> dict[str, Any] | None:
        """The entry of one frame partition, or None."""
        return self.partitions.get(partition_key(instrument, year, channel))

    def frame_partitions(self, instruments: Iterable[str] = FRAME_INSTRUMENTS) -> dict[str, dict[str, Any]]:
        """``{key: entry}`` of the frame partitions of ``instruments``, in manifest order."""
        wanted = set(instruments)
        return {key: entry for key, entry in self.partitions.items() if entry.get("instrument") in wanted}

    def frame_files(self) -> set[str]:
        """The frame partition files the manifest names, relative to the catalog."""
        return {partition_file(key, entry) for key, entry in self.frame_partitions().items()}

    def with_partitions(self, partitions: dict[str, dict[str, Any]]) -> Manifest:
        """A copy with ``partitions`` in place of this manifest's."""
        return Manifest({**self, "partitions": partitions})


def open_source(instrument: str, entry: dict[str, Any] | None, *, catalog: str | None = None, **access):
    """The store of a manifest's (or a build plan's) source ``entry`` (``url``,
    ``storage_options``, and for plans ``billing_project``, ``mirror``), opened with
    ``access`` (``timeout``, ``retries``, ``cache_dir``).  Every stage opens a catalog's stores
    here, so a missing or moved store reads the same everywhere: the error names the
    instrument, and for a ``catalog`` how to re-point it."""
    from sdoml_sql.stores.source import open_store

    if not entry or not entry.get("url"):
        where = f"catalog {catalog}" if catalog else "the catalog"
        raise CatalogError(f"{where} has no {instrument} source in {MANIFEST}")
    try:
        return open_store(entry["url"], storage_options=entry.get("storage_options") or None,
                          billing_project=entry.get("billing_project"), mirror=entry.get("mirror"), **access)
    except StoreError as error:
        hint = ""
        if catalog and "does not exist" in str(error):
            hint = (f"; if it moved, re-point the catalog: sdoml-sql rebuild --catalog {catalog} "
                    f"--source {instrument}=NEW_PLACE")
        raise type(error)(f"{instrument}: {error}{hint}") from None


__all__ = [
    "ARRAY_ATTRS", "DATA_FILE", "FRAME_INSTRUMENTS", "IDENTITY_FIELDS", "INIT_SQL", "INSTRUMENTS", "LOCATOR_COLUMNS",
    "LOCK_FILE", "MANIFEST", "Manifest", "STAGING_DIR", "TIME_SUFFIX", "channel_glob", "eve_key", "identity",
    "open_source", "parse_partition_key", "partition_file", "partition_key",
    "per_array_key", "side_keys",
]
