"""Stage 1, sources: the SDOML v2 Zarr stores and sample stores shaped like them.

In: a URL, a local path or a preset name (``aia-small``, ``gcs:hmi``).  Out: a
:class:`~sdoml_sql.stores.source.Source`, raw metadata bytes and read-only zarr arrays, with
retries, time limits and an optional chunk cache on every remote read.

Modules: :mod:`~sdoml_sql.stores.source` (open stores, presets, retries, cache) and
:mod:`~sdoml_sql.stores.sample` (writes sample stores with the real layout and key set).

May import: :mod:`sdoml_sql.exceptions`, :mod:`sdoml_sql.config`, :mod:`sdoml_sql.version`.
"""

from sdoml_sql.stores.source import PRESETS, Source, check_reachable, open_store, resolve_url

__all__ = ["PRESETS", "Source", "check_reachable", "open_store", "resolve_url"]
