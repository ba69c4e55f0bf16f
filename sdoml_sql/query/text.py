"""Rows as text (aligned table, CSV, JSON Lines) that keep every value exactly.

One writer for both ways rows arrive: DuckDB's own Python rows (``sdoml-sql query`` prints
these, importing neither pandas nor pyarrow) and a :class:`~sdoml_sql.query.selection.Selection`'s
Arrow rows (``Selection.to_text``).  Floats are written as the shortest text that reads back
to the same float64, or float32 for a ``FLOAT`` column; times in ISO 8601 with their
microseconds; NULL as an empty CSV field, ``null`` in JSON and ``NULL`` in the table.  An
aligned result (a ``frames`` map per grid time) is spread to one column per channel and
field, ``171A.idx`` …, as :meth:`Selection.to_pandas` does.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sdoml_sql.exceptions import QueryError

#: Fields of one channel's entry in an aligned result's ``frames`` map, in column order.
FRAME_FIELDS = ("instrument", "year", "idx", "T_OBS", "offset_s")

_NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL", "INT8", "INT16", "INT32", "INT64",
                  "FLOAT32", "FLOAT64", "DECIMAL"}


class Column(NamedTuple):
    """A column to write: its name, whether it is a number (right-aligned in a table),
    whether it is a 32-bit float (written as the shortest float32 text) and whether it is a
    MAP (an aligned result's ``frames``)."""
    name: str
    numeric: bool = False
    float32: bool = False
    map: bool = False


def duckdb_column(name: str, type_name: str) -> Column:
    """The :class:`Column` of a DuckDB result column (``description`` gives its type name)."""
    base = type_name.upper().split("(")[0].strip()
    return Column(name, base in _NUMERIC_TYPES, base in ("FLOAT", "REAL", "FLOAT4"), base == "MAP")


def render(format: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> str:
    """The rows as text in ``format``: ``table``, ``csv`` or ``json`` (one object per row)."""
    if format not in WRITERS:
        raise QueryError(f"unknown format {format!r}: choose table, csv, json or parquet")
    columns, rows = spread_aligned(list(columns), rows)
    return WRITERS[format](_unique(columns), rows)


def plain_rows(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Column names and rows of :func:`plain` values: what ``json`` writes, as Python lists."""
    columns, rows = spread_aligned(list(columns), rows)
    columns = _unique(columns)
    return [c.name for c in columns], [[plain(v, c.float32) for v, c in zip(row, columns)] for row in rows]


# --- values ------------------------------------------------------------------------------

def plain(value: Any, float32: bool = False) -> Any:
    """A cell as a JSON-ready Python value that reads back to the same value: NULL and NaN →
    ``None``, times → ISO 8601, intervals → ISO 8601 durations (``P1M2DT3.5S``), float32 →
    its shortest float32 text, maps → objects, nested lists and structs kept."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"  # JSON has no infinities
        return float(shortest_float32(value)) if float32 else value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "months"):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):  # an Arrow MAP
            return {str(k): plain(v) for k, v in value}
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"P{value.days}DT{_seconds_text(value.seconds + value.microseconds / 1e6)}S"
    if hasattr(value, "months") and hasattr(value, "nanoseconds"):  # Arrow's MonthDayNano (an INTERVAL)
        return f"P{value.months}M{value.days}DT{_seconds_text(value.nanoseconds / 1e9)}S"
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def shortest_float32(value: float) -> str:
    """The shortest decimal text that reads back, as a float32, to the float32 ``value``."""
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == target:
            return repr(float(text))
    return repr(value)


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g}" if seconds == round(seconds, 6) else repr(seconds)


def cell(value: Any, float32: bool = False, null: str = "") -> str:
    """A cell as text for CSV and the table: :func:`plain` values, JSON for nested ones."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN" if null != "" else ""
    value = plain(value, float32)
    if value is None:
        return null
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --- writers -----------------------------------------------------------------------------

def as_table(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned as in a terminal: text left, numbers right, ``NULL`` for missing values."""
    cells = [[cell(v, c.float32, null="NULL") for v, c in zip(row, columns)] for row in rows]
    widths = [max([len(c.name)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.rjust(w) if c.numeric else v.ljust(w)
                         for v, w, c in zip(values, widths, columns)).rstrip()

    return "\n".join([line([c.name for c in columns])] + [line(row) for row in cells]) + "\n"


def as_csv(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> str:
    """A header line, then one line per row; missing values are empty fields."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    writer.writerows([cell(v, c.float32) for v, c in zip(row, columns)] for row in rows)
    return out.getvalue()


def as_json(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> str:
    """One JSON object per row (JSON Lines)."""
    names = [c.name for c in columns]
    return "".join(json.dumps({n: plain(v, c.float32) for n, v, c in zip(names, row, columns)},
                              ensure_ascii=False, allow_nan=False, default=str) + "\n"
                   for row in rows)


WRITERS: dict[str, Callable[..., str]] = {"table": as_table, "csv": as_csv, "json": as_json}


def _unique(columns: list[Column]) -> list[Column]:
    """Repeated column names (``SELECT *`` of a join) numbered as DuckDB does: time, time_1."""
    seen: dict[str, int] = {}
    unique = []
    for column in columns:
        unique.append(column._replace(name=f"{column.name}_{seen[column.name]}") if column.name in seen else column)
        seen[column.name] = seen.get(column.name, 0) + 1
    return unique


# --- aligned results ---------------------------------------------------------------------

def spread_aligned(columns: list[Column], rows: Sequence[Sequence[Any]]) -> tuple[list[Column], list]:
    """An aligned result's ``frames`` map (channel → frame) spread to one column per channel
    and field (``171A.idx``), placed after ``time``; other results unchanged."""
    at = next((i for i, c in enumerate(columns) if c.name.lower() == "frames" and c.map), None)
    if at is None:
        return columns, list(rows)
    maps = [_as_dict(row[at]) for row in rows]
    channels = list(dict.fromkeys(channel for entries in maps for channel in entries))
    spread = [Column(f"{channel}.{field}", field in ("year", "idx", "offset_s"))
              for channel in channels for field in FRAME_FIELDS]
    rest = [c for i, c in enumerate(columns) if i != at]
    place = [c.name.lower() for c in rest].index("time") + 1 if "time" in [c.name.lower() for c in rest] else 0
    new_rows = []
    for row, entries in zip(rows, maps):
        values = [(entries.get(channel) or {}).get(field) for channel in channels for field in FRAME_FIELDS]
        kept = [v for i, v in enumerate(row) if i != at]
        new_rows.append(kept[:place] + values + kept[place:])
    return rest[:place] + spread + rest[place:], new_rows


def _as_dict(value: Any) -> dict:
    if value is None:
        return {}
    return value if isinstance(value, dict) else dict(value)
