"""sdoml-sql: SQL over the SDO ML v2 dataset.

The package follows the data's path: sources (:mod:`sdoml_sql.stores`) → harvest
(:mod:`sdoml_sql.harvest`) → Parquet catalog (:mod:`sdoml_sql.build`) → SQL
(:mod:`sdoml_sql.catalog`) → selection (:mod:`sdoml_sql.selection`) → fetch, maps and
movies.  The names below are imported on first use, so ``sdoml-sql tree`` does not pay for
DuckDB, pandas and pyarrow.
"""

from __future__ import annotations

import importlib

from sdoml_sql.exceptions import (
    AccessDeniedError,
    CatalogError,
    FetchError,
    HarvestError,
    OfflineError,
    QueryError,
    SdomlError,
    StoreError,
)

__version__ = "0.1.0"

_LAZY = {
    "PRESETS": "sdoml_sql.stores",
    "open_store": "sdoml_sql.stores",
    "resolve_url": "sdoml_sql.stores",
    "build_catalog": "sdoml_sql.build",
    "rebuild_catalog": "sdoml_sql.build",
    "Catalog": "sdoml_sql.catalog",
    "query": "sdoml_sql.catalog",
    "Selection": "sdoml_sql.selection",
    "plot_eve": "sdoml_sql.eve",
}

__all__ = [
    "__version__",
    "AccessDeniedError",
    "CatalogError",
    "FetchError",
    "HarvestError",
    "OfflineError",
    "QueryError",
    "SdomlError",
    "StoreError",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sdoml_sql' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
