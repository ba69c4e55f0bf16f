"""The time index applied before DuckDB opens a file: which years a query can touch.

DuckDB skips a Parquet file without opening it only for a filter on the hive columns
(``year``, ``channel``); a filter on ``T_OBS`` opens every file to read its row-group
statistics, so its cost grows with the number of partitions.  For a query of the common
shape — one ``SELECT`` from ``aia``, ``hmi``, ``frames`` or ``frame_times``, no subquery, no
CTE, with ``T_OBS`` compared to bounds in its top-level ``WHERE`` (``BETWEEN``, ``<``,
``<=``, ``>``, ``>=``, ``=``, joined by ``AND``) — :func:`time_window` reads the bounds from
DuckDB's own parse tree (``json_serialize_sql``).  A bound may be any expression that is
constant for the query: a literal, ``TIMESTAMP '…' + INTERVAL 7 DAY``, ``'…'::TIMESTAMP``,
``date_trunc('month', DATE '…')``, ``now() - INTERVAL 30 DAY``; it is one that refers to no
column, no subquery, no parameter and no volatile function (``random()``; DuckDB's own
``duckdb_functions().stability``).  DuckDB itself folds it: the expression is turned back into
SQL (``json_deserialize_sql``) and evaluated as ``SELECT`` on the query's own connection, in the
query's transaction (``now()`` is the transaction's start), then cast to ``TIMESTAMP`` as the
comparison with ``T_OBS`` casts it.  :meth:`Catalog._run` then shadows the views, for that
query only, with temporary views that scan only the partitions of the years whose time range
(manifest ``time_range``) meets the window, typed like the full views, so neither binding nor
reading touches other years.  Every row the query can see meets its own ``T_OBS`` filter, so
the answer is the same; any other shape runs on the full views.
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


def time_window(connection, sql: str, views: dict[str, tuple[str, ...]] = TIMED_VIEWS,
                ) -> tuple[tuple[str, ...], dt.datetime | None, dt.datetime | None] | None:
    """``(instruments, first, last)`` that every row of ``sql`` lies within, or None.

    ``connection`` is a DuckDB connection: it parses the query and evaluates its bounds (the
    query's own cursor, so that ``now()`` is the query's); ``views``: the views a window may
    narrow, each with its instrument views (default :data:`TIMED_VIEWS`)."""
    try:
        tree = orjson.loads(connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except Exception:  # no window: the query runs on the full views
        return None
    view = _single_view(tree)
    if view not in views:
        return None
    where = tree["statements"][0]["node"].get("where_clause")
    volatile = _volatile(connection)
    bounds = [(kind, node) for term in _conjuncts(where) for kind, node in _bounds(term) if _constant(node, volatile)]
    if not bounds:
        return None
    values = _timestamps(connection, [node for _, node in bounds])
    if values is None or None in values:
        return None
    firsts = [value for (kind, _), value in zip(bounds, values) if kind in ("first", "both")]
    lasts = [value for (kind, _), value in zip(bounds, values) if kind in ("last", "both")]
    return views[view], max(firsts, default=None), min(lasts, default=None)


def may_narrow(sql: str, views: dict[str, tuple[str, ...]] = TIMED_VIEWS) -> bool:
    """A cheap first look: whether ``sql`` names one of ``views``, and ``T_OBS`` after a
    ``WHERE`` (a window's bounds are in the top-level ``WHERE``, after the first one)."""
    text = sql.lower()
    where = text.find("where")
    return where >= 0 and "t_obs" in text[where:] and any(view in text for view in views)


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


def _bounds(term: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``("first" | "last" | "both", bound expression)`` of a term bounding T_OBS (none: [])."""
    if term.get("type") == "COMPARE_BETWEEN" and _is_t_obs(term["input"]):
        return [("first", term["lower"]), ("last", term["upper"])]
    if term.get("class") != "COMPARISON":
        return []
    kind, left, right = term.get("type"), term.get("left", {}), term.get("right", {})
    if _is_t_obs(right):
        kind, left, right = _FLIP.get(kind), right, left
    if not _is_t_obs(left) or kind not in _LOWER | _UPPER | {"COMPARE_EQUAL"}:
        return []
    return [("first" if kind in _LOWER else "last" if kind in _UPPER else "both", right)]


#: Parse-tree classes whose value is not the same for every row of a query.
_NOT_CONSTANT = {"COLUMN_REF", "SUBQUERY", "PARAMETER", "STAR", "LAMBDA", "WINDOW", "LAMBDA_REF"}


def _constant(node: Any, volatile: frozenset[str]) -> bool:
    """Whether a parse-tree expression is constant for the query: no column, subquery,
    parameter, and no volatile function anywhere in it."""
    if isinstance(node, list):
        return all(_constant(child, volatile) for child in node)
    if not isinstance(node, dict):
        return True
    if node.get("class") in _NOT_CONSTANT:
        return False
    if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in volatile:
        return False
    return all(_constant(child, volatile) for child in node.values())


_VOLATILE: frozenset[str] | None = None


def _volatile(connection) -> frozenset[str]:
    """Names of DuckDB's volatile functions (``random``, ``uuid``, ``nextval`` …), read once."""
    global _VOLATILE
    if _VOLATILE is None:
        rows = connection.execute("SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                                  "WHERE stability = 'VOLATILE'").fetchall()
        _VOLATILE = frozenset(r[0] for r in rows)
    return _VOLATILE


#: ``json_serialize_sql('SELECT NULL')``: the parse tree each query's bounds are put in.
_SELECT_TEMPLATE: str | None = None


def _timestamps(connection, nodes: list[dict[str, Any]]) -> list[dt.datetime | None] | None:
    """The bound expressions evaluated by DuckDB in one ``SELECT`` and cast to TIMESTAMP
    (None for one that is not a time), or None if DuckDB cannot evaluate them."""
    global _SELECT_TEMPLATE
    if _SELECT_TEMPLATE is None:
        _SELECT_TEMPLATE = connection.execute("SELECT json_serialize_sql('SELECT NULL')").fetchone()[0]
    select = orjson.loads(_SELECT_TEMPLATE)
    select["statements"][0]["node"]["select_list"] = nodes
    names = ", ".join(f"b{n}" for n in range(len(nodes)))
    casts = ", ".join(f"TRY_CAST(b{n} AS TIMESTAMP)" for n in range(len(nodes)))
    try:
        text = connection.execute("SELECT json_deserialize_sql(?)", [orjson.dumps(select).decode()]).fetchone()[0]
        row = connection.execute(f"SELECT {casts} FROM ({text}) AS b({names})").fetchone()
    except Exception:  # not a time DuckDB can evaluate: no window
        return None
    return [value if isinstance(value, dt.datetime) else None for value in row] if row else None
