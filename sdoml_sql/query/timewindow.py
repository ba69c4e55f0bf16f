"""The time index applied before DuckDB opens a file: which years a query can touch.

DuckDB skips a Parquet file without opening it only for a filter on the hive columns
(``year``, ``channel``); a filter on ``T_OBS`` opens every file to read its row-group
statistics, so its cost grows with the number of partitions.  For a query of the common
shape — one ``SELECT`` from ``aia``, ``hmi``, ``frames`` or ``frame_times``, no subquery, no
CTE, with ``T_OBS`` compared to constants in its top-level ``WHERE`` (``BETWEEN``, ``<``,
``<=``, ``>``, ``>=``, ``=``, joined by ``AND``) — :func:`time_window` reads the bounds from
DuckDB's own parse tree (``json_serialize_sql``).  :meth:`Catalog._run` then shadows the
views, for that query only, with temporary views that scan only the partitions of the years
whose time range (manifest ``time_range``) meets the window, typed like the full views, so
neither binding nor reading touches other years.  Every row the query can see meets its own
``T_OBS`` filter, so the answer is the same; any other shape runs on the full views.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

#: Views a window can narrow, and the instrument views behind them.
TIMED_VIEWS = {"aia": ("aia",), "hmi": ("hmi",), "frames": ("aia", "hmi"), "frame_times": ("aia", "hmi")}

_LOWER = {"COMPARE_GREATERTHAN", "COMPARE_GREATERTHANOREQUALTO"}
_UPPER = {"COMPARE_LESSTHAN", "COMPARE_LESSTHANOREQUALTO"}
_FLIP = {"COMPARE_GREATERTHAN": "COMPARE_LESSTHAN", "COMPARE_GREATERTHANOREQUALTO": "COMPARE_LESSTHANOREQUALTO",
         "COMPARE_LESSTHAN": "COMPARE_GREATERTHAN", "COMPARE_LESSTHANOREQUALTO": "COMPARE_GREATERTHANOREQUALTO",
         "COMPARE_EQUAL": "COMPARE_EQUAL"}


def time_window(parser, sql: str, views: dict[str, tuple[str, ...]] = TIMED_VIEWS,
                ) -> tuple[tuple[str, ...], dt.datetime | None, dt.datetime | None] | None:
    """``(instruments, first, last)`` that every row of ``sql`` lies within, or None.

    ``parser`` is a DuckDB connection (it only parses and casts constants); ``views``: the
    views a window may narrow, each with its instrument views (default :data:`TIMED_VIEWS`)."""
    try:
        tree = orjson.loads(parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except Exception:  # noqa: BLE001 - no window: the query runs on the full views
        return None
    view = _single_view(tree)
    if view not in views:
        return None
    where = tree["statements"][0]["node"].get("where_clause")
    bounds = [bound for term in _conjuncts(where) for bound in _bounds(term)]
    firsts = [_timestamp(parser, v) for kind, v in bounds if kind in ("first", "both")]
    lasts = [_timestamp(parser, v) for kind, v in bounds if kind in ("last", "both")]
    if None in firsts or None in lasts or not (firsts or lasts):
        return None
    return views[view], max(firsts, default=None), min(lasts, default=None)


def _single_view(tree: dict[str, Any]) -> str | None:
    statements = tree.get("statements") or []
    if tree.get("error") or len(statements) != 1:
        return None
    node = statements[0]["node"]
    table = node.get("from_table") or {}
    if node.get("type") != "SELECT_NODE" or (node.get("cte_map") or {}).get("map"):
        return None
    if table.get("type") != "BASE_TABLE" or table.get("schema_name") or table.get("catalog_name"):
        return None
    text = orjson.dumps(tree).decode()
    if text.count('"BASE_TABLE"') != 1 or '"SUBQUERY"' in text:
        return None
    name = table.get("table_name", "").lower()
    return name if name in TIMED_VIEWS else None


def _conjuncts(where: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not where:
        return []
    if where.get("type") == "CONJUNCTION_AND":
        return [c for child in where["children"] for c in _conjuncts(child)]
    return [where]


def _is_t_obs(node: dict[str, Any]) -> bool:
    return node.get("class") == "COLUMN_REF" and node["column_names"][-1].upper() == "T_OBS"


def _constant(node: dict[str, Any]) -> str | None:
    if node.get("class") == "CAST":
        node = node.get("child") or {}
    if node.get("class") == "CONSTANT" and node["literal"].get("kind") == "STRING":
        return node["literal"].get("text")
    return None


def _bounds(term: dict[str, Any]) -> list[tuple[str, str]]:
    """``("first" | "last" | "both", constant text)`` of a term bounding T_OBS (none: [])."""
    if term.get("type") == "COMPARE_BETWEEN" and _is_t_obs(term["input"]):
        low, high = _constant(term["lower"]), _constant(term["upper"])
        return [("first", low), ("last", high)] if low and high else []
    if term.get("class") != "COMPARISON":
        return []
    kind, left, right = term.get("type"), term.get("left", {}), term.get("right", {})
    if _is_t_obs(right):
        kind, left, right = _FLIP.get(kind), right, left
    value = _constant(right) if _is_t_obs(left) else None
    if value is None or kind not in _LOWER | _UPPER | {"COMPARE_EQUAL"}:
        return []
    return [("first" if kind in _LOWER else "last" if kind in _UPPER else "both", value)]


def _timestamp(parser, text: str) -> dt.datetime | None:
    row = parser.execute("SELECT TRY_CAST(? AS TIMESTAMP)", [text]).fetchone()
    return row[0] if row else None
