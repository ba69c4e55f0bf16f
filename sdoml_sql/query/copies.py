"""Materialized copies of the views that are slow on big catalogs.

- ``frame_quality``: computing the flags means hashing every frame's ``T_OBS`` and taking
  per-channel medians, ~2 s on a million frames, where reading the answer back from Parquet
  takes milliseconds.
- ``frame_times``: the macros (``nearest``, ``aligned``, ``coverage``) search it; the live
  view binds every partition file of both instruments (~13 ms at 168 files) and its rows
  lie in ``idx`` order, so a time filter skips no row group.  The copy is one file sorted
  by instrument, channel and ``T_OBS``: ~2 ms to bind, and a time range reads a few row groups.

A copy is the live view (``sql/views/<view>.sql``, the one place its rules live) written to
Parquet with a stamp of what it was computed from: the manifest's partitions, and for
``frame_quality`` every ``frame_stats`` file (path, size, modification time).  A copy is used
only while its stamp matches.

Who writes them: the commit of ``build``, ``rebuild`` and ``stats`` (:func:`derive`, handed to
the builder and the stats pass by :mod:`sdoml_sql.workflows` — the builder sits above this
stage and never imports it), for catalogs of at least :data:`MIN_FRAMES` frames.  A local
catalog keeps them in ``CATALOG/<view>/data.parquet``, written before the manifest and
checked by the stamp in their Parquet metadata; a remote one under a new name per commit
(``<view>/data-<id>.parquet``), uploaded before the manifest, which names each with its stamp
(``copies``), so a reader opens them in place without a request more.  A local catalog built
another way (an older version, ``catalog_builder.build`` called directly) gets them written at
its first open, as before.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
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


def catalog_stamps(location, manifest: dict[str, Any]) -> dict[str, str]:
    """Per copy's view, a digest of what it is computed from (the headers' part hashed once);
    ``location`` is the catalog's :class:`~sdoml_sql.catalog_builder.location.CatalogLocation`
    (a remote catalog has no ``frame_stats``: ``stats`` writes into local catalogs)."""
    headers = hashlib.sha256()
    manifest = Manifest.of(manifest)
    partitions = {key: entry.get("fingerprint") for key, entry in manifest.partitions.items()}
    headers.update(orjson.dumps([manifest.built_at, partitions], option=orjson.OPT_SORT_KEYS))
    with_stats = headers.copy()
    if not location.remote:
        directory = location.directory
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


def prepare(catalog, min_frames: int | None = None) -> dict[str, str]:
    """``{view: file}`` of the views ``catalog`` may read from their copies (file relative to
    the catalog).  A remote catalog uses the copies its manifest names, when their stamps
    match; a local one those whose stored stamps match, writing each stale copy first when the
    catalog has at least ``min_frames`` frames (a read-only directory keeps the live views)."""
    stamps = catalog_stamps(catalog.location, catalog.manifest)
    if catalog.location.remote:
        named = catalog.manifest.get("copies") or {}
        return {view: entry["file"] for view, entry in named.items()
                if view in stamps and entry.get("stamp") == stamps[view] and entry.get("file")}
    if not catalog.directory.is_dir():
        return {}
    stored = stored_stamps(catalog.directory)
    fresh = {copy.view: copy.file for copy in COPIES if stored.get(copy.view) == stamps[copy.view]}
    if len(fresh) == len(COPIES) or not big(catalog.manifest, min_frames):
        return fresh
    for copy in COPIES:
        if copy.view not in fresh and write(catalog, copy, stamps[copy.view], copy.file):
            fresh[copy.view] = copy.file
    return fresh


def big(manifest: dict[str, Any], min_frames: int | None = None) -> bool:
    """Whether the catalog has at least ``min_frames`` (default :data:`MIN_FRAMES`) AIA/HMI frames."""
    frames = sum(int(e.get("rows") or 0) for e in Manifest.of(manifest).frame_partitions().values())
    return frames >= (MIN_FRAMES if min_frames is None else min_frames)


def derive(pending, min_frames: int | None = None) -> dict[str, Any]:
    """Write the copies of ``pending`` (a :meth:`Catalog.pending
    <sdoml_sql.query.catalog.Catalog.pending>`: the catalog a manifest not yet committed
    describes, its partition files in place); returns the manifest to commit.

    The builder's and the stats pass's commit call it (through
    :func:`sdoml_sql.query.catalog.derive_copies`, which :mod:`sdoml_sql.workflows` hands
    over).  A remote catalog's copies get new names, named with their stamps under ``copies``
    in the returned manifest; a local catalog's replace ``<view>/data.parquet``, checked by
    the stamps they carry (one already computed from the same files is kept).  A catalog
    under ``min_frames`` frames gets none."""
    location = pending.location
    manifest = {key: value for key, value in pending.manifest.items() if key != "copies"}
    if not big(manifest, min_frames):
        return manifest
    stamps = catalog_stamps(location, manifest)
    stored = {} if location.remote else stored_stamps(location.directory)
    named = {}
    for copy in COPIES:
        if stored.get(copy.view) == stamps[copy.view]:
            continue  # a local copy already computed from these files
        relative = f"{copy.view}/data-{uuid.uuid4().hex[:12]}.parquet" if location.remote else copy.file
        if write(pending, copy, stamps[copy.view], relative):
            named[copy.view] = {"file": relative, "stamp": stamps[copy.view]}
    return {**manifest, "copies": named} if location.remote else manifest


def write(catalog, copy: Copy, stamp: str, relative: str) -> bool:
    """Write ``copy`` (live view → Parquet, in its order) to ``relative`` in the catalog: a
    local file written atomically, or an upload; False if the directory is read-only."""
    try:
        if catalog.location.remote:
            with tempfile.TemporaryDirectory(prefix="sdoml-sql-copy-") as folder:
                partial = Path(folder) / "data.parquet"
                _copy_view(catalog, copy, stamp, partial)
                catalog.location.upload(partial, relative)
        else:
            with written_atomically(catalog.location.directory / relative, keep_suffix=False) as partial:
                _copy_view(catalog, copy, stamp, partial)
        return True
    except (OSError, duckdb.Error):
        return False


def _copy_view(catalog, copy: Copy, stamp: str, target: Path) -> None:
    connection = catalog.connect(locked=False)
    try:
        connection.execute("SET enable_progress_bar = false")
        connection.execute(
            f"COPY (SELECT * FROM {copy.view} ORDER BY {copy.order}) TO '{target.as_posix()}' "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{STAMP_KEY}: '{stamp}'}})")
    finally:
        connection.close()
