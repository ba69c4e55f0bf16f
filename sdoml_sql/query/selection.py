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

from typing import Any, Iterator

import pandas as pd
import pyarrow as pa

from sdoml_sql.exceptions import QueryError

LOCATOR_COLUMNS = ("instrument", "year", "channel", "idx")
FRAME_FIELDS = ("instrument", "year", "idx", "T_OBS", "offset_s")
_NULLABLE_INTEGERS = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}


class Selection:
    """Rows selected from a catalog: ``Selection(table, catalog, sql)``."""

    def __init__(self, table: pa.Table, catalog, sql: str):
        self.table = table
        self.catalog = catalog
        self.sql = sql

    def __repr__(self) -> str:
        return f"<Selection kind={self.kind} rows={len(self)} columns={self.table.column_names}>"

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
        if "frames" in names and pa.types.is_map(self.table.schema.field(self._name("frames")).type):
            return "aligned"
        if {"year", "channel", "idx"} <= names:
            return "frames"
        if "time" in names and not names & {"channel", "year"}:
            return "eve"
        return "table"

    def _name(self, lower: str) -> str:
        return next(n for n in self.table.column_names if n.lower() == lower)

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
        frame = self.table.to_pandas(types_mapper=_NULLABLE_INTEGERS.get)
        if flatten and self.kind == "aligned":
            return _flatten_aligned(frame, self._name("frames"))
        return frame

    # --- output -----------------------------------------------------------------------

    def to_text(self, format: str = "table") -> str:
        """The rows as text: ``table`` (aligned columns), ``csv`` or ``json`` (one object per
        row, ISO times)."""
        frame = self.to_pandas()
        if format == "table":
            with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250):
                return frame.to_string(index=False) + "\n"
        if format == "csv":
            return frame.to_csv(index=False)
        if format == "json":
            return frame.to_json(orient="records", date_format="iso", lines=True)
        raise QueryError(f"unknown format {format!r}: choose table, csv, json or parquet")

    def write(self, path, format: str | None = None) -> None:
        """Write the rows to ``path`` as ``parquet``, ``csv``, ``json`` or ``table`` text
        (default: from the file's extension, else parquet)."""
        import pyarrow.parquet as pq
        from pathlib import Path

        path = Path(path)
        format = format or {".csv": "csv", ".json": "json", ".txt": "table"}.get(path.suffix, "parquet")
        if format == "parquet":
            pq.write_table(self.table, path)
        else:
            path.write_text(self.to_text(format), encoding="utf-8")

    # --- locators ---------------------------------------------------------------------

    def locators(self) -> pd.DataFrame:
        """Where each selected frame lives: columns ``instrument``, ``year``, ``channel``,
        ``idx`` (nullable ``Int64``; NA for a grid time without a frame), in row order.

        For an ``aligned`` result: one row per (grid time, channel), channels in query
        order, with the extra columns ``row`` (grid row number) and ``time``.
        """
        kind = self.kind
        if kind == "aligned":
            return self._aligned_locators()
        if kind != "frames":
            raise QueryError(f"this selection ({kind}) has no frame locators: select year, channel "
                             "and idx (e.g. FROM aia, FROM frames or FROM nearest(...))")
        frame = self.table.select([self._name(c) for c in ("year", "channel", "idx")]).to_pandas()
        frame.columns = ["year", "channel", "idx"]
        if "instrument" in {n.lower() for n in self.table.column_names}:
            instrument = self.table.column(self._name("instrument")).to_pandas()
        else:
            instrument = frame["channel"].map(self.catalog.channels())
        frame.insert(0, "instrument", instrument.values)
        return _typed_locators(frame)

    def _aligned_locators(self) -> pd.DataFrame:
        rows = []
        times = self.table.column(self._name("time")).to_pylist()
        grid_rows = (self.table.column(self._name("row")).to_pylist()
                     if "row" in {n.lower() for n in self.table.column_names} else range(len(self)))
        for grid_row, time, entries in zip(grid_rows, times, self.table.column(self._name("frames")).to_pylist()):
            for channel, value in entries or []:
                value = value or {}
                rows.append({"row": grid_row, "time": time, "instrument": value.get("instrument"),
                             "year": value.get("year"), "channel": channel, "idx": value.get("idx")})
        frame = pd.DataFrame(rows, columns=["row", "time", "instrument", "year", "channel", "idx"])
        frame["time"] = pd.to_datetime(frame["time"])
        return _typed_locators(frame)

    # --- verbs: the fetch stage reads what the selection locates (sdoml_sql.fetch) --------

    def fetch(self, **kw):
        """Read the selected frames (see :func:`sdoml_sql.fetch.fetch`)."""
        from sdoml_sql import fetch

        return fetch.fetch(self, **kw)

    def plan(self, **kw):
        """Which chunks a fetch would read (see :func:`sdoml_sql.fetch.plan`)."""
        from sdoml_sql import fetch

        return fetch.plan(self, **kw)

    def to_xarray(self, **kw):
        """The selected frames as an xarray object (see :func:`sdoml_sql.fetch.to_xarray`)."""
        from sdoml_sql import fetch

        return fetch.to_xarray(self, **kw)

    def header(self, i):
        """The FITS header of selected row ``i`` (see :func:`sdoml_sql.fetch.maps.header`)."""
        from sdoml_sql.fetch import maps

        return maps.header(self, i)

    def maps(self, **kw):
        """The selected frames as SunPy maps (see :func:`sdoml_sql.fetch.maps.maps`)."""
        from sdoml_sql.fetch import maps

        return maps.maps(self, **kw)

    def animate(self, **kw):
        """A movie of the selected frames (see :func:`sdoml_sql.fetch.movies.animate`)."""
        from sdoml_sql.fetch import movies

        return movies.animate(self, **kw)

    # --- verbs: the datasets stage makes ML samples of the frames (sdoml_sql.datasets) -------

    def dataset(self, **kw):
        """A PyTorch-ready map-style dataset of the selected frames (see :func:`sdoml_sql.datasets.dataset`)."""
        from sdoml_sql import datasets

        return datasets.dataset(self, **kw)

    def export(self, output, **kw):
        """Export the samples to a local Zarr for training (see :func:`sdoml_sql.datasets.export`)."""
        from sdoml_sql import datasets

        return datasets.export(self, output, **kw)

    def plot_eve(self, **kw):
        """Plot selected EVE lines (see :func:`sdoml_sql.fetch.eve.plot_eve`)."""
        from sdoml_sql.fetch import eve

        return eve.plot_eve(self, **kw)


def _typed_locators(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["instrument"] = frame["instrument"].astype(object)
    frame["channel"] = frame["channel"].astype(object)
    frame["year"] = pd.array(frame["year"], dtype="Int64")
    frame["idx"] = pd.array(frame["idx"], dtype="Int64")
    return frame


def _flatten_aligned(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    maps = frame.pop(column)
    channels: dict[str, None] = {}
    for entries in maps:
        channels.update(dict.fromkeys(k for k, _ in (entries or [])))
    position = frame.columns.get_loc("time") + 1 if "time" in frame.columns else 0
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
