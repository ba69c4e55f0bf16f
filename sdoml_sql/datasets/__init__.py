"""Stage 5, datasets: located frames → PyTorch-ready samples, loaders, splits and exports.

In: a *selection* — anything with ``.locators()`` and ``.catalog`` (``.source(instrument)``,
``.directory``, ``.manifest``), as for :mod:`sdoml_sql.fetch`.  Out: a map-style
:class:`~sdoml_sql.datasets.samples.FrameDataset` (one sample per grid time of an aligned
selection, one per row of a frame selection), chunk-aware shuffled ``DataLoader``\\ s
(:mod:`~sdoml_sql.datasets.shuffle` plans, :mod:`~sdoml_sql.datasets.loader` runs),
normalisation statistics stored beside the catalog, month-block splits, and local Zarr exports
read back with a uniform shuffle.

Modules: :mod:`~sdoml_sql.datasets.samples` (the dataset), :mod:`~sdoml_sql.datasets.shuffle`
(epoch plans: blocks of chunk-sharing samples, shards, frame-cache schedule),
:mod:`~sdoml_sql.datasets.loader` (torch: the only module importing it, itself imported only
when a loader is asked for), :mod:`~sdoml_sql.datasets.normalize`,
:mod:`~sdoml_sql.datasets.splits`, :mod:`~sdoml_sql.datasets.export`.

May import: :mod:`sdoml_sql.fetch` (frame grid, chunk reads, downsampling),
:mod:`sdoml_sql.stores` and the base modules — never :mod:`sdoml_sql.query`.
"""

from sdoml_sql.datasets.export import ExportDataset, export, open_export
from sdoml_sql.datasets.samples import FrameDataset, dataset

__all__ = ["ExportDataset", "FrameDataset", "dataset", "export", "open_export"]
