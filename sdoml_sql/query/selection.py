"""The result of a catalog query: rows, and the frame locators the fetch layer reads.

A :class:`Selection` holds the Arrow table DuckDB returned, the catalog it came from and the
SQL that made it.  ``kind`` says what the rows are:

* ``'frames'`` — long form, one frame per row (views ``aia``, ``hmi``, ``frames``, macros
  ``nearest`` / ``nearest_frames``): columns ``year``, ``channel``, ``idx``;
* ``'aligned'`` — one grid time per row with a ``frames`` map column (macro ``aligned``);
* ``'eve'`` — EVE samples (``idx`` and ``time``, no ``channel``);
* ``'table'`` — anything else (aggregates, ``coverage`` …).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sdoml_sql.exceptions import QueryError
from sdoml_sql.query.text import FRAME_FIELDS

if TYPE_CHECKING:
    import pandas as pd


class Selection:
    """Rows selected from a catalog: ``Selection(table, catalog, sql)``."""

    def __init__(self, table: pa.Table, catalog, sql: str, hints: list[str] | tuple[str, ...] = ()):
        self.table = table
        self.catalog = catalog
        self.sql = sql
        #: Why an empty result may be empty (see :meth:`Catalog.empty_result_hints`).
        self.hints = list(hints)
        self._locators: pd.DataFrame | None = None

    def __repr__(self) -> str:
        hints = "".join(f" hint={h!r}" for h in self.hints)
        return f"<Selection kind={self.kind} rows={len(self)} columns={self.table.column_names}{hints}>"

    def _repr_html_(self) -> str:
        """Jupyter's view: the first rows, the row count, the time span and the channels."""
        from sdoml_sql.query.display import selection_html

        return selection_html(self)

    def show(self, n: int = 12):
        """The first ``n`` frames as a strip of 128×128 thumbnails with channels and times,
        coloured as :meth:`maps` colours them (Jupyter shows it; ``.pictures`` holds the PNGs)."""
        from sdoml_sql.query.display import thumbnails

        return thumbnails(self, n)

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts (column → Python value)."""
        for batch in self.table.to_batches():
            yield from batch.to_pylist()

    @property
    def columns(self) -> list[str]:
        """Column names of the result."""
        return self.table.column_names

    @property
    def kind(self) -> str:
        """``'frames'``, ``'aligned'``, ``'eve'`` or ``'table'`` (see the module docstring)."""
        names = {n.lower() for n in self.table.column_names}
        if "frames" in names and pa.types.is_map(self._column("frames").type):
            return "aligned"
        if {"year", "channel", "idx"} <= names:
            return "frames"
        if "time" in names and not names & {"channel", "year"}:
            return "eve"
        return "table"

    def _name(self, lower: str) -> str:
        return next(n for n in self.table.column_names if n.lower() == lower)

    def _column(self, lower: str) -> pa.ChunkedArray:
        """The first column named ``lower`` (any case): columns a user joins on (``SELECT *``
        of a join repeats ``time`` or ``idx``) come after the selection's own."""
        return self.table.column(next(i for i, n in enumerate(self.table.column_names) if n.lower() == lower))

    # --- rows -------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The rows as a ``pyarrow.Table`` (nested columns kept as they are)."""
        return self.table

    def to_pandas(self, flatten: bool = True) -> pd.DataFrame:
        """The rows as a pandas DataFrame.

        For an ``aligned`` result with ``flatten`` (the default) the ``frames`` map becomes
        one column per channel and field: ``"171A.idx"``, ``"171A.year"``, ``"171A.T_OBS"``,
        ``"171A.offset_s"``, ``"171A.instrument"``; ``flatten=False`` keeps the map.
        """
        import pandas as pd

        nullable_integers = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}
        frame = self.table.to_pandas(types_mapper=nullable_integers.get)
        if flatten and self.kind == "aligned":
            return _flatten_aligned(frame, self._name("frames"))
        return frame

    # --- output -----------------------------------------------------------------------

    def to_text(self, format: str = "table") -> str:
        """The rows as text: ``table`` (aligned columns), ``csv`` or ``json`` (JSON Lines: one
        object per row).  Every format keeps every value exactly: floats at full precision
        (the shortest text that reads back to the same float32/float64), times in ISO 8601
        with their microseconds, NULL as an empty CSV field, ``null`` in JSON and ``NULL``
        in the table.  An aligned result is spread as by :meth:`to_pandas`.  Written from
        the Arrow rows by :mod:`sdoml_sql.query.text`, the same writer as ``sdoml-sql query``."""
        from sdoml_sql.query import text

        return text.render(format, *self._text_rows())

    def to_records(self) -> tuple[list[str], list[list[Any]]]:
        """Column names and rows of JSON-ready values, exactly as :meth:`to_text` writes them
        in JSON (aligned results spread, float32 at their shortest, times in ISO 8601, NULL
        and NaN as ``None``): what the web explorer's ``/api/query`` answers."""
        from sdoml_sql.query import text

        return text.plain_rows(*self._text_rows())

    def _text_rows(self):
        from sdoml_sql.query import text

        columns = [text.Column(name, pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
                               pa.types.is_float32(t), pa.types.is_map(t))
                   for name, t in zip(self.table.column_names, self.table.schema.types)]
        rows = list(zip(*(column.to_pylist() for column in self.table.columns)))
        return columns, rows

    def write(self, path, format: str | None = None) -> Path:
        """Write the rows to ``path`` as ``parquet``, ``csv``, ``json`` or ``table`` text
        (default: from the file's extension, else parquet).  Missing parent directories are
        created; the file appears complete or not at all.  Returns the path."""
        import pyarrow.parquet as pq

        from sdoml_sql.files import written_atomically

        path = Path(path)
        format = format or {".csv": "csv", ".json": "json", ".txt": "table"}.get(path.suffix, "parquet")
        if format not in ("parquet", "csv", "json", "table"):
            raise QueryError(f"unknown format {format!r}: choose table, csv, json or parquet")
        with written_atomically(path) as partial:
            if format == "parquet":
                pq.write_table(self.table, partial)
            else:
                partial.write_text(self.to_text(format), encoding="utf-8")
        return path

    # --- locators ---------------------------------------------------------------------

    def locators(self) -> pd.DataFrame:
        """Where each selected frame lives: columns ``instrument``, ``year``, ``channel``,
        ``idx`` (nullable ``Int64``; NA for a grid time without a frame), in row order.

        For an ``aligned`` result: one row per (grid time, channel), channels in query
        order, with the extra columns ``row`` (grid row number) and ``time``.  Worked out once
        per selection (its rows do not change); each call returns a fresh copy.
        """
        if self._locators is None:
            self._locators = self._make_locators()
        return self._locators.copy()

    def _make_locators(self) -> pd.DataFrame:
        import pandas as pd

        kind = self.kind
        if kind == "aligned":
            return self._aligned_locators()
        if kind != "frames":
            raise QueryError(f"this selection ({kind}) has no frame locators: select year, channel "
                             "and idx (e.g. FROM aia, FROM frames or FROM nearest(...))")
        frame = pd.DataFrame({c: self._column(c).to_pandas() for c in ("year", "channel", "idx")})
        if "instrument" in {n.lower() for n in self.table.column_names}:
            instrument = self._column("instrument").to_pandas()
        else:
            instrument = frame["channel"].map(self.catalog.channels())
        frame.insert(0, "instrument", instrument.values)
        return _typed_locators(frame)

    def _aligned_locators(self) -> pd.DataFrame:
        import pandas as pd

        rows = []
        times = self._column("time").to_pylist()
        grid_rows = (self._column("row").to_pylist()
                     if "row" in {n.lower() for n in self.table.column_names} else range(len(self)))
        for grid_row, time, entries in zip(grid_rows, times, self._column("frames").to_pylist()):
            for channel, value in entries or []:
                value = value or {}
                rows.append({"row": grid_row, "time": time, "instrument": value.get("instrument"),
                             "year": value.get("year"), "channel": channel, "idx": value.get("idx")})
        frame = pd.DataFrame(rows, columns=["row", "time", "instrument", "year", "channel", "idx"])
        frame["time"] = pd.to_datetime(frame["time"])
        return _typed_locators(frame)

    # --- verbs: the fetch stage reads what the selection locates (sdoml_sql.fetch) --------

    def fetch(self, downsample: int = 1, method: str = "stride", missing: str = "raise"):
        """The selected frames as a lazy float32 dask array: ``(n, H, W)``, or
        ``(time, channel, H, W)`` for ``aligned`` (see :func:`sdoml_sql.fetch.fetch`).

        ``downsample`` keeps 1 pixel in N per axis (``method="stride"``) or averages N×N
        blocks (``"mean"``); rows without a frame raise (``missing="raise"``), become NaN
        frames (``"nan"``) or are dropped (``"drop"``)."""
        from sdoml_sql import fetch

        return fetch.fetch(self, downsample=downsample, method=method, missing=missing)

    def plan(self, downsample: int = 1, method: str = "stride", missing: str = "raise",
             stored_sizes: bool = False):
        """Which chunks and bytes :meth:`fetch` with the same arguments would read, without
        reading pixels (see :func:`sdoml_sql.fetch.plan`); ``stored_sizes`` also asks the
        store for the compressed sizes."""
        from sdoml_sql import fetch

        return fetch.plan(self, downsample=downsample, method=method, missing=missing, stored_sizes=stored_sizes)

    def to_xarray(self, downsample: int = 1, method: str = "stride", missing: str = "raise",
                  headers: bool = True):
        """The selected frames as a lazy ``xarray.DataArray`` with coordinates (and every
        header column with ``headers=True``; see :func:`sdoml_sql.fetch.to_xarray`)."""
        from sdoml_sql import fetch

        return fetch.to_xarray(self, downsample=downsample, method=method, missing=missing, headers=headers)

    def header(self, i: int):
        """The FITS header of selected row ``i`` (see :func:`sdoml_sql.fetch.maps.header`)."""
        from sdoml_sql.fetch import maps

        return maps.header(self, i)

    def maps(self, sortby: str | None = None, downsample: int = 1, method: str = "stride",
             missing: str = "raise"):
        """The selected frames as a ``sunpy.map.MapSequence`` in row order (``sortby="date"``:
        by time); ``missing="drop"`` leaves out rows without a frame (see
        :func:`sdoml_sql.fetch.maps.maps`)."""
        from sdoml_sql.fetch import maps

        return maps.maps(self, sortby=sortby, downsample=downsample, method=method, missing=missing)

    def animate(self, downsample: int = 1, method: str = "stride", scaling: str = "fixed",
                percentiles: tuple[float, float] = (1.0, 99.9), vmin: float | None = None,
                vmax: float | None = None, fps: float = 10, figsize: tuple[float, float] = (6, 6),
                dpi: int = 100, sortby: str | None = None, missing: str = "raise"):
        """A movie of the selected frames, a matplotlib animation (see
        :func:`sdoml_sql.fetch.movies.animate` for the arguments)."""
        from sdoml_sql.fetch import movies

        return movies.animate(self, downsample=downsample, method=method, scaling=scaling,
                              percentiles=percentiles, vmin=vmin, vmax=vmax, fps=fps, figsize=figsize,
                              dpi=dpi, sortby=sortby, missing=missing)

    # --- verbs: the datasets stage makes ML samples of the frames (sdoml_sql.datasets) -------

    def dataset(self, downsample: int = 1, method: str = "stride", missing: str = "drop", normalize="none",
                transform=None):
        """A PyTorch-ready map-style dataset of the selected frames (see :func:`sdoml_sql.datasets.dataset`)."""
        from sdoml_sql import datasets

        return datasets.dataset(self, downsample=downsample, method=method, missing=missing, normalize=normalize,
                                transform=transform)

    def export(self, output, downsample: int = 1, method: str = "stride", missing: str = "drop",
               normalize="none", progress: bool = True):
        """Export the samples to a local Zarr for training (see :func:`sdoml_sql.datasets.export`)."""
        from sdoml_sql import datasets

        return datasets.export(self, output, progress=progress, downsample=downsample, method=method,
                               missing=missing, normalize=normalize)

    def plot_eve(self, lines: list[str] | str | None = None, output=None, gap_factor: float = 5.0,
                 figsize: tuple[float, float] | None = None):
        """Plot selected EVE lines, one panel per line (see :func:`sdoml_sql.fetch.eve.plot_eve`)."""
        from sdoml_sql.fetch import eve

        return eve.plot_eve(self, lines=lines, output=output, gap_factor=gap_factor, figsize=figsize)


def _typed_locators(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    frame = frame.reset_index(drop=True)
    frame["instrument"] = frame["instrument"].astype(object)
    frame["channel"] = frame["channel"].astype(object)
    frame["year"] = pd.array(frame["year"], dtype="Int64")
    frame["idx"] = pd.array(frame["idx"], dtype="Int64")
    return frame


def _flatten_aligned(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    import pandas as pd

    maps = frame.pop(column)
    channels: dict[str, None] = {}
    for entries in maps:
        channels.update(dict.fromkeys(k for k, _ in (entries or [])))
    position = list(frame.columns).index("time") + 1 if "time" in frame.columns else 0
    flat = {}
    for channel in channels:
        values = [dict(entries or []).get(channel) or {} for entries in maps]
        for field in FRAME_FIELDS:
            flat[f"{channel}.{field}"] = [v.get(field) for v in values]
    wide = pd.DataFrame(flat, index=frame.index)
    for field in ("idx", "year"):
        for channel in channels:
            wide[f"{channel}.{field}"] = pd.array(wide[f"{channel}.{field}"], dtype="Int64")
    for channel in channels:
        wide[f"{channel}.T_OBS"] = pd.to_datetime(wide[f"{channel}.T_OBS"])
        wide[f"{channel}.offset_s"] = pd.to_numeric(wide[f"{channel}.offset_s"]).astype("float64")
    return pd.concat([frame.iloc[:, :position], wide, frame.iloc[:, position:]], axis=1)

