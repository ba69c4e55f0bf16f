"""Rows as text (aligned table, CSV, JSON lines) without pandas or pyarrow.

``sdoml-sql query`` prints through these from DuckDB's own Python rows, so a query from the
shell imports neither pandas nor pyarrow (hundreds of milliseconds); a
:class:`~sdoml_sql.query.selection.Selection` uses the same writers for ``to_text``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from sdoml_sql.exceptions import QueryError

NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "FLOAT", "DOUBLE", "REAL"}


def is_numeric(type_name: str) -> bool:
    """Whether a column of this DuckDB type is right-aligned in a table."""
    return type_name.upper() in NUMERIC_TYPES or type_name.upper().startswith("DECIMAL")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def as_table(names: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned as in a terminal: text left, numbers right, NULL for missing values."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(names)]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(names)] + [line(row) for row in cells]) + "\n"


def as_csv(names: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[Any]]) -> str:
    """A header line, then one line per row; missing values are empty."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue()


def as_json(names: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[Any]]) -> str:
    """One JSON object per row (JSON lines); times in ISO 8601."""
    import orjson

    options = orjson.OPT_NON_STR_KEYS
    return "".join(orjson.dumps(dict(zip(names, row)), default=str, option=options).decode() + "\n"
                   for row in rows)


WRITERS: dict[str, Callable[..., str]] = {"table": as_table, "csv": as_csv, "json": as_json}


def render(format: str, names: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[Any]]) -> str:
    """The rows as text in ``format`` (table, csv or json)."""
    if format not in WRITERS:
        raise QueryError(f"unknown format {format!r}: choose table, csv, json or parquet")
    return WRITERS[format](names, numeric, rows)
