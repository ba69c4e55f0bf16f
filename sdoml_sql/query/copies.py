"""Materialized copies of the views that are slow on big catalogs.

- ``frame_quality``: computing the flags means hashing every frame's ``T_OBS`` and taking
  per-channel medians, ~2 s on a million frames, where reading the answer back from Parquet
  takes milliseconds.
- ``frame_times``: the macros (``nearest``, ``aligned``, ``coverage``) search it; the live
  view binds every partition file of both instruments (~13 ms at 168 files) and its rows
  lie in ``idx`` order, so a time filter skips no row group.  The copy is one file sorted
  by instrument, channel and ``T_OBS``: ~2 ms to bind, and a time range reads a few row groups.

When a :class:`~sdoml_sql.query.catalog.Catalog` with at least :data:`MIN_FRAMES` frames is
opened and a copy is missing or stale, its live view (``sql/views/<view>.sql``, the one place
its rules live) is written once to ``CATALOG/<view>/data.parquet`` under a temporary name,
with a stamp of what it was computed from: the manifest's partitions, and for
``frame_quality`` every ``frame_stats`` file (path, size, modification time).  A copy is used
only while its stamp matches; a read-only or remote catalog simply keeps the live views.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson

from sdoml_sql.catalog_builder.layout import Manifest
from sdoml_sql.files import written_atomically
from sdoml_sql.query.sqlguard import parser

STAMP_KEY = "sdoml_sql_stamp"
#: Catalogs smaller than this keep the live views (they answer in well under 100 ms).
MIN_FRAMES = 200_000


@dataclass(frozen=True)
class Copy:
    """A view kept as one Parquet file: where, in which row order, and whether it is
    computed from ``frame_stats`` as well as from the headers."""

    view: str
    order: str
    reads_stats: bool

    @property
    def file(self) -> str:
        return f"{self.view}/data.parquet"


COPIES = (
    Copy("frame_times", order="instrument, channel, T_OBS, year, idx", reads_stats=False),
    Copy("frame_quality", order="good, instrument, channel, year, idx", reads_stats=True),
)


def catalog_stamps(directory: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Per copy's view, a digest of what it is computed from (the headers' part hashed once)."""
    headers = hashlib.sha256()
    manifest = Manifest.of(manifest)
    partitions = {key: entry.get("fingerprint") for key, entry in manifest.partitions.items()}
    headers.update(orjson.dumps([manifest.built_at, partitions], option=orjson.OPT_SORT_KEYS))
    with_stats = headers.copy()
    for path in sorted(directory.glob("frame_stats/*/*/*/*.parquet")):
        status = path.stat()
        with_stats.update(f"{path.relative_to(directory)}:{status.st_size}:{status.st_mtime_ns}".encode())
    return {copy.view: (with_stats if copy.reads_stats else headers).hexdigest()[:32] for copy in COPIES}


def stored_stamps(directory: Path) -> dict[str, str]:
    """The stamp of each copy present, from its Parquet key-value metadata (read by DuckDB in
    one call: no pyarrow import on the way to a query)."""
    files = {(directory / copy.file).as_posix(): copy.view for copy in COPIES if (directory / copy.file).is_file()}
    if not files:
        return {}
    try:
        rows = parser().execute("SELECT file_name, decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
                                [list(files), STAMP_KEY]).fetchall()
    except duckdb.Error:
        return {}
    return {files[name]: stamp for name, stamp in rows if name in files}


def prepare(catalog, min_frames: int | None = None) -> frozenset[str]:
    """The views ``catalog`` may read from their copies, writing each stale copy first when
    the catalog has at least ``min_frames`` frames.  A catalog that is not a local directory
    keeps the live views."""
    if not isinstance(catalog.directory, Path) or not catalog.directory.is_dir():
        return frozenset()
    stored = stored_stamps(catalog.directory)
    stamps = catalog_stamps(catalog.directory, catalog.manifest)
    fresh = {view for view, stamp in stamps.items() if stored.get(view) == stamp}
    if len(fresh) == len(COPIES):
        return frozenset(fresh)
    frames = sum(int(e.get("rows") or 0) for e in Manifest.of(catalog.manifest).frame_partitions().values())
    if frames < (MIN_FRAMES if min_frames is None else min_frames):
        return frozenset(fresh)
    return frozenset(fresh | {copy.view for copy in COPIES
                              if copy.view not in fresh and write(catalog, copy, stamps[copy.view])})


def write(catalog, copy: Copy, stamp: str) -> bool:
    """Write ``copy`` (live view → Parquet, in its order); False if the directory is read-only."""
    try:
        with written_atomically(catalog.directory / copy.file, keep_suffix=False) as partial:
            connection = catalog.connect(locked=False)
            try:
                connection.execute("SET enable_progress_bar = false")
                connection.execute(
                    f"COPY (SELECT * FROM {copy.view} ORDER BY {copy.order}) TO '{partial.as_posix()}' "
                    f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{STAMP_KEY}: '{stamp}'}})")
            finally:
                connection.close()
        return True
    except (OSError, duckdb.Error):
        return False
