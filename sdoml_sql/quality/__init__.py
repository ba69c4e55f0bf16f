"""Stage 4, frame quality (between fetch and query): pixel statistics of every catalogued frame, beside its headers.

In: a catalog directory (its ``manifest.json`` names the source stores and partitions; its
header Parquet gives each frame's ``CRPIX1/2``, ``CDELT1`` and ``RSUN_OBS``), or anything
with ``.directory``; for plots, anything with ``.query(sql)`` (a :class:`~sdoml_sql.query.Catalog`).
Out: ``frame_stats/instrument=…/year=…/channel=…/data.parquet`` (one row per frame: NaN
and zero counts, min, max, mean, std, percentiles, on-disk and off-disk means), written
atomically per partition and only where the source changed; the quality and coverage plot.

Modules: :mod:`~sdoml_sql.quality.stats` (the chunk-aware statistics pass),
:mod:`~sdoml_sql.quality.plot` (frames per bucket, gaps and flags per channel).

May import: :mod:`sdoml_sql.fetch` (chunk reading), :mod:`sdoml_sql.catalog_builder`
(manifest, fingerprints, the lock, atomic Parquet writes), :mod:`sdoml_sql.stores` and
the base modules — never :mod:`sdoml_sql.query`.
"""

from sdoml_sql.quality.stats import StatsReport, compute_frame_stats

__all__ = ["StatsReport", "compute_frame_stats"]
