"""Stage 3, fetch: frames located by catalog rows → dask stacks, files, SunPy maps, movies.

In: a *selection* — anything with ``.locators()`` (instrument, year, channel, idx; plus
row and time for aligned grids) and ``.catalog`` (``.source(instrument)``, ``.directory``,
``.manifest``).  Out: lazy dask arrays that read each Zarr chunk once, xarray objects,
``.npy``/``.zarr``/FITS files, headers, SunPy maps, movies and EVE plots.

Modules: :mod:`~sdoml_sql.fetch.stack` (frame grid, chunk layout), :mod:`~sdoml_sql.fetch.graph`
(the dask array), :mod:`~sdoml_sql.fetch.assemble` (reads into one output),
:mod:`~sdoml_sql.fetch.plans` (what a fetch reads), :mod:`~sdoml_sql.fetch.frames` (the chunk
reader, with :mod:`~sdoml_sql.fetch.blosc` and :mod:`~sdoml_sql.fetch.chunkbytes`),
:mod:`~sdoml_sql.fetch.headers` (FITS headers rebuilt from the catalog),
:mod:`~sdoml_sql.fetch.output` (xarray and files), :mod:`~sdoml_sql.fetch.maps`,
:mod:`~sdoml_sql.fetch.movies`, :mod:`~sdoml_sql.fetch.eve`.

May import: :mod:`sdoml_sql.catalog_builder`, :mod:`sdoml_sql.stores` and the base
modules — never :mod:`sdoml_sql.query`: a selection arrives duck-typed.
"""

from sdoml_sql.fetch.output import to_xarray, write_frames, write_zarr
from sdoml_sql.fetch.plans import FetchPlan, chunk_keys, plan
from sdoml_sql.fetch.stack import fetch

__all__ = ["FetchPlan", "chunk_keys", "fetch", "plan", "to_xarray", "write_frames", "write_zarr"]
