"""sdoml-sql: SQL over the SDO ML v2 dataset.

The package follows the data's path, one subpackage per stage: sources
(:mod:`sdoml_sql.stores`) → harvest and Parquet catalog (:mod:`sdoml_sql.catalog_builder`)
→ frames, maps and movies (:mod:`sdoml_sql.fetch`) → frame statistics
(:mod:`sdoml_sql.quality`) and ML samples, loaders and exports (:mod:`sdoml_sql.datasets`)
← SQL and selections
(:mod:`sdoml_sql.query`, the front door).  The names below are imported on first use, so
``sdoml-sql tree`` does not pay for DuckDB, pandas and pyarrow.
"""

from __future__ import annotations

import importlib

from sdoml_sql.exceptions import (
    AccessDeniedError,
    CatalogError,
    DatasetError,
    FetchError,
    HarvestError,
    InputError,
    OfflineError,
    QueryError,
    SdomlError,
    StoreError,
)
from sdoml_sql.version import __version__

_LAZY = {
    "PRESETS": "sdoml_sql.stores.source",
    "open_store": "sdoml_sql.stores.source",
    "resolve_url": "sdoml_sql.stores.source",
    "build_catalog": "sdoml_sql.workflows",
    "rebuild_catalog": "sdoml_sql.workflows",
    "sync_catalog": "sdoml_sql.catalog_builder.sync",
    "query_text": "sdoml_sql.query.catalog",
    "Catalog": "sdoml_sql.query",
    "Selection": "sdoml_sql.query",
    "plot_eve": "sdoml_sql.fetch.eve",
    "compute_frame_stats": "sdoml_sql.workflows",
    "stats": "sdoml_sql.workflows",
    "movie": "sdoml_sql.fetch.movies",
    "plot": "sdoml_sql.fetch.maps",
    "plot_quality": "sdoml_sql.quality.plot",
    "open_export": "sdoml_sql.datasets",
}

__all__ = [
    "__version__",
    "AccessDeniedError",
    "CatalogError",
    "DatasetError",
    "FetchError",
    "HarvestError",
    "InputError",
    "OfflineError",
    "QueryError",
    "SdomlError",
    "StoreError",
    "query",
    *_LAZY,
]


def __getattr__(name: str):
    if name == "query":  # the subpackage, callable as the function query(sql, catalog, params)
        return importlib.import_module("sdoml_sql.query")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sdoml_sql' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
