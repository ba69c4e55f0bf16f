"""Stage 2, harvest and Parquet catalog: every per-frame header into partitioned Parquet.

In: sources (:mod:`sdoml_sql.stores`).  Out: a catalog directory — ``manifest.json`` plus
hive-partitioned Parquet (``aia/year=2010/channel=171A/data.parquet`` …), built atomically
and incrementally.

Modules: :mod:`~sdoml_sql.catalog_builder.times` (time strings → UTC timestamps, TAI
included), :mod:`~sdoml_sql.catalog_builder.harvest` (one array's ``.zattrs`` → an Arrow
table), :mod:`~sdoml_sql.catalog_builder.build` (plan, harvest, swap in, manifest),
:mod:`~sdoml_sql.catalog_builder.location` (where a catalog lives, its manifest) and
:mod:`~sdoml_sql.catalog_builder.inspect` (``tree`` and ``keywords`` of a store).

May import: :mod:`sdoml_sql.stores` and the base modules (exceptions, config, version).
"""

import importlib

__all__ = ["BuildReport", "build_catalog", "read_manifest", "rebuild_catalog"]


def __getattr__(name: str):
    # Imported on first use, so that reading a manifest (location.py) does not import the builder.
    if name == "read_manifest":
        return importlib.import_module("sdoml_sql.catalog_builder.location").read_manifest
    if name in __all__:
        return getattr(importlib.import_module("sdoml_sql.catalog_builder.build"), name)
    raise AttributeError(f"module 'sdoml_sql.catalog_builder' has no attribute {name!r}")
