"""Stage 2, harvest and Parquet catalog: every per-frame header into partitioned Parquet.

In: sources (:mod:`sdoml_sql.stores`).  Out: a catalog directory — ``manifest.json`` plus
hive-partitioned Parquet (``aia/year=2010/channel=171A/data.parquet`` …), built atomically
and incrementally.

Modules: :mod:`~sdoml_sql.catalog_builder.times` (time strings → UTC timestamps, TAI
included), :mod:`~sdoml_sql.catalog_builder.harvest` (one array's ``.zattrs`` → an Arrow
table), :mod:`~sdoml_sql.catalog_builder.build` (plan, harvest, swap in, manifest) and
:mod:`~sdoml_sql.catalog_builder.inspect` (``tree`` and ``keywords`` of a store).

May import: :mod:`sdoml_sql.stores` and the base modules (exceptions, config, version).
"""

from sdoml_sql.catalog_builder.build import BuildReport, build_catalog, read_manifest, rebuild_catalog

__all__ = ["BuildReport", "build_catalog", "read_manifest", "rebuild_catalog"]
