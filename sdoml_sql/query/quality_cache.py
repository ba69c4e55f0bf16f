"""A materialized copy of the ``frame_quality`` view for big catalogs.

Computing the flags means hashing every frame's ``T_OBS`` and taking per-channel medians:
~2 s on a million frames, where reading the answer back from Parquet takes milliseconds.
When a :class:`~sdoml_sql.query.catalog.Catalog` with at least :data:`MIN_FRAMES` frames
is opened and the copy is missing or stale, the view (``sql/views/frame_quality.sql``, the
one place the rules live) is written once to ``CATALOG/frame_quality/data.parquet`` under a
temporary name, with a stamp of what it was computed from: the manifest's partitions and
every ``frame_stats`` file (path, size, modification time).  The copy is used only while
the stamp matches; a read-only catalog simply keeps the live view.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import duckdb
import orjson

from sdoml_sql.query.sqlguard import parser

CACHE_FILE = "frame_quality/data.parquet"
STAMP_KEY = "sdoml_sql_stamp"
#: Catalogs smaller than this keep the live view (it answers in well under 100 ms).
MIN_FRAMES = 200_000


def catalog_stamp(directory: Path, manifest: dict[str, Any]) -> str:
    """A digest of what ``frame_quality`` is computed from."""
    digest = hashlib.sha256()
    partitions = {key: entry.get("fingerprint") for key, entry in (manifest.get("partitions") or {}).items()}
    digest.update(orjson.dumps([manifest.get("built_at"), partitions], option=orjson.OPT_SORT_KEYS))
    for path in sorted(directory.glob("frame_stats/*/*/*/*.parquet")):
        status = path.stat()
        digest.update(f"{path.relative_to(directory)}:{status.st_size}:{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def stored_stamp(directory: Path) -> str | None:
    """The stamp in the copy's Parquet key-value metadata (read by DuckDB: no pyarrow import
    on the way to a query)."""
    path = directory / CACHE_FILE
    if not path.is_file():
        return None
    try:
        row = parser().execute("SELECT decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
                                       [path.as_posix(), STAMP_KEY]).fetchone()
    except duckdb.Error:
        return None
    return row[0] if row else None


def prepare(catalog, min_frames: int | None = None) -> bool:
    """Whether ``catalog`` may read ``frame_quality`` from its materialized copy, writing the
    copy first when the catalog has at least ``min_frames`` frames and the copy is stale.
    A catalog that is not a local directory keeps the live view."""
    if not isinstance(catalog.directory, Path) or not catalog.directory.is_dir():
        return False
    stamp = catalog_stamp(catalog.directory, catalog.manifest)
    if stored_stamp(catalog.directory) == stamp:
        return True
    frames = sum(int(e.get("rows") or 0) for e in (catalog.manifest.get("partitions") or {}).values()
                 if e.get("instrument") in ("aia", "hmi"))
    if frames < (MIN_FRAMES if min_frames is None else min_frames):
        return False
    return write(catalog, stamp)


def write(catalog, stamp: str) -> bool:
    """Write the copy (live view → Parquet, flagged frames first); False if the directory is read-only."""
    target = catalog.directory / CACHE_FILE
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(exist_ok=True)
        connection = catalog.connect(locked=False)
        try:
            connection.execute("SET enable_progress_bar = false")
            connection.execute(
                "COPY (SELECT * FROM frame_quality ORDER BY good, instrument, channel, year, idx) "
                f"TO '{partial.as_posix()}' (FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{STAMP_KEY}: '{stamp}'}})")
        finally:
            connection.close()
        os.replace(partial, target)
        return True
    except (OSError, duckdb.Error):
        partial.unlink(missing_ok=True)
        return False
