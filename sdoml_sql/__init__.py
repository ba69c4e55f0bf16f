"""sdoml-sql: SQL over the SDO ML v2 dataset.

The package follows the data's path: sources (:mod:`sdoml_sql.stores`) → harvest
(:mod:`sdoml_sql.harvest`) → Parquet catalog (:mod:`sdoml_sql.build`) → SQL
(:mod:`sdoml_sql.catalog`) → selection (:mod:`sdoml_sql.selection`) → fetch, maps and
movies.
"""

__version__ = "0.1.0"

from sdoml_sql.exceptions import (  # noqa: E402
    AccessDeniedError,
    CatalogError,
    FetchError,
    HarvestError,
    OfflineError,
    QueryError,
    SdomlError,
    StoreError,
)
from sdoml_sql.stores import PRESETS, open_store, resolve_url  # noqa: E402
from sdoml_sql.build import build_catalog, rebuild_catalog  # noqa: E402
from sdoml_sql.catalog import Catalog, query  # noqa: E402
from sdoml_sql.selection import Selection  # noqa: E402
from sdoml_sql.eve import plot_eve  # noqa: E402

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
    "PRESETS",
    "open_store",
    "resolve_url",
    "build_catalog",
    "rebuild_catalog",
    "Catalog",
    "query",
    "Selection",
    "plot_eve",
]
