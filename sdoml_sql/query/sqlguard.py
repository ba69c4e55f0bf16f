"""The read-only check on user SQL, and DuckDB errors turned into one readable line.

:func:`check_read_only` accepts exactly one statement that only reads: ``SELECT``, ``WITH``,
set operations (``UNION``/``INTERSECT``/``EXCEPT``), DuckDB's ``FROM … SELECT``, ``DESCRIBE``
and ``SUMMARIZE``.  DuckDB's own parser decides (one statement, of type SELECT: DuckDB's
grammar has no writing statement inside a SELECT), so SQL cannot be read one way by the
check and another by the engine; sqlglot, slow to import, is loaded only to name what a
refused statement is.
The catalog's connection is also locked to the catalog directory (see
:mod:`sdoml_sql.query.catalog`): this check is the first of two walls, not the only one.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading

import duckdb

from sdoml_sql.config import duckdb_config
from sdoml_sql.exceptions import QueryError

_PARSERS = threading.local()


def parser() -> duckdb.DuckDBPyConnection:
    """This thread's plain in-memory DuckDB connection, for parsing SQL and reading small
    things (opening a connection costs ~15 ms: one per thread is reused)."""
    if not hasattr(_PARSERS, "connection"):
        _PARSERS.connection = duckdb.connect(config=duckdb_config())
    return _PARSERS.connection


def check_read_only(sql: str) -> str:
    """Return ``sql`` without a trailing ``;`` if it is one read-only statement.

    Raises :class:`QueryError` naming what was refused (a second statement, ``COPY``,
    ``ATTACH``, ``INSTALL``, ``SET``, DDL or DML) or the token sqlglot cannot parse.
    DuckDB's own parser decides; sqlglot (slow to import) is loaded only to name what a
    refused statement is.
    """
    if not sql or not sql.strip().strip(";").strip():
        raise QueryError("empty query: give one SELECT statement")
    if _is_one_select(sql):
        return sql.strip().rstrip(";").strip()
    return _refuse(sql)


def _is_one_select(sql: str) -> bool:
    try:
        statements = parser().extract_statements(sql)
    except duckdb.Error:
        return False
    return len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT


def _refuse(sql: str) -> str:
    """Raise the :class:`QueryError` that names why ``sql`` is refused (sqlglot's view of it,
    then DuckDB's)."""
    from sqlglot import exp

    read_only_roots = (exp.Select, exp.SetOperation, exp.Describe, exp.Summarize, exp.Subquery)
    writing_nodes = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter, exp.Copy,
                     exp.Attach, exp.Detach, exp.Install, exp.Set, exp.Command, exp.Pragma, exp.Merge,
                     exp.Use, exp.TruncateTable, exp.LoadData)
    try:
        statements = _parse(sql)
    except QueryError:
        _check_with_duckdb_parser(sql)  # DuckDB's own message, or SQL that sqlglot lacks
        return sql.strip().rstrip(";").strip()
    if len(statements) != 1:
        raise QueryError(f"only one statement is allowed, got {len(statements)}: {_kinds(statements)}")
    statement = statements[0]
    if not isinstance(statement, read_only_roots):
        raise QueryError(f"only read-only queries are allowed (SELECT, WITH, FROM, DESCRIBE, SUMMARIZE), "
                         f"not {_kind(statement)}")
    writer = next((node for node in statement.walk() if isinstance(node, writing_nodes)), None)
    if writer is not None:
        raise QueryError(f"only read-only queries are allowed: found {_kind(writer)} inside the query")
    _check_with_duckdb_parser(sql)
    return sql.strip().rstrip(";").strip()


def literal_filters(sql: str) -> list[tuple[str, object]]:
    """The ``column = literal`` and ``column IN (literal, …)`` comparisons of a query as
    ``(column name in lower case, value)`` pairs: ``[("channel", "171")]``."""
    import sqlglot
    from sqlglot import exp

    try:
        statement = sqlglot.parse_one(sql, read="duckdb")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return []
    pairs = []
    for node in statement.find_all(exp.EQ, exp.In):
        if isinstance(node, exp.EQ):
            sides = [(node.this, node.expression), (node.expression, node.this)]
        else:
            sides = [(node.this, value) for value in node.expressions]
        pairs += [(column.name.lower(), _literal_value(value)) for column, value in sides
                  if isinstance(column, exp.Column) and isinstance(value, exp.Literal)]
    return pairs


def _literal_value(literal):
    if literal.is_string:
        return literal.this
    try:
        number = float(literal.this)
    except ValueError:
        return literal.this
    return int(number) if number.is_integer() else number


def _parse(sql: str) -> list:
    import sqlglot

    # sqlglot logs "unsupported syntax, falling back to a Command" for CALL/LOAD/RESET; the
    # refusal already says what was wrong, in one line.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        return [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.ParseError as error:
        detail = error.errors[0] if error.errors else {}
        token = detail.get("highlight") or ""
        where = f" near {token!r} (line {detail.get('line')}, column {detail.get('col')})" if token else ""
        message = str(detail.get("description") or error).splitlines()[0]
        raise QueryError(f"SQL syntax error{where}: {message}") from None
    except sqlglot.errors.SqlglotError as error:
        raise QueryError(f"SQL syntax error: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise QueryError("query nested too deeply to parse: flatten the nested parentheses or subqueries") from None


def _check_with_duckdb_parser(sql: str) -> None:
    try:
        statements = parser().extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(one_line(error, sql)) from None
    if len(statements) != 1:
        raise QueryError(f"only one statement is allowed, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"only read-only queries are allowed, not {statements[0].type.name}")


def _kind(node) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def _kinds(statements: list) -> str:
    return ", ".join(_kind(s) for s in statements)


_CANDIDATES = re.compile(r'Candidate bindings:\s*(.*)')
_UNKNOWN_COLUMN = re.compile(r'(?:column|Column) (?:with name )?"?([^"\s]+)"? (?:not found|does not exist)')
_LINE = re.compile(r"^LINE (\d+):")


def one_line(error: Exception, sql: str = "", columns: list[str] | tuple[str, ...] = (),
             tables: list[str] | tuple[str, ...] = (), macros: dict[str, tuple[str, ...]] | None = None) -> str:
    """A DuckDB error as one line: its first line, the offending token, close matches.

    ``columns`` (names of the catalog's columns) are searched for close matches when DuckDB
    reports an unknown column without candidates of its own; ``tables`` (views and macros)
    when it reports an unknown table.  An unknown column that is the end of a dashed keyword
    (``DATE-OBS`` read as ``DATE - OBS``) is answered with the quoted name.  ``macros``
    (``{macro: parameters}``) names a misspelt named parameter (``goodonly := true``).
    """
    lines = [line.rstrip() for line in str(error).splitlines()]
    message = lines[0] if lines else type(error).__name__
    message = re.sub(r"^\w+Exception:\s*", "", message)
    message = _macro_parameter(message, sql, macros or {}) or message
    suggestion = (_dashed_keyword(message, sql, columns) or _close_table(message, tables)
                  or _suggestion(lines, message, columns))
    token = _offending_token(lines, sql)
    parts = [message.rstrip()]
    if suggestion:
        parts.append(f"did you mean {suggestion}?")
    if token:
        parts.append(f"at {token!r}")
    return " — ".join(parts)


_MACRO_ARGUMENTS = re.compile(r'Macro "?(\w+)"?\(\) does not support the supplied arguments')


def _macro_parameter(message: str, sql: str, macros: dict[str, tuple[str, ...]]) -> str:
    """``macro nearest() has no parameter goodonly: …; did you mean good_only?`` for DuckDB's
    bare "does not support the supplied arguments", when a named argument is misspelt."""
    found = _MACRO_ARGUMENTS.search(message)
    if not found or found.group(1) not in macros:
        return ""
    name, parameters = found.group(1), macros[found.group(1)]
    named = re.findall(r"\b(\w+)\s*:=", sql)
    unknown = [n for n in dict.fromkeys(named) if n.lower() not in {p.lower() for p in parameters}]
    if not unknown:
        return f"{message.rstrip('.')}: {name}() takes {', '.join(parameters)}"
    close = difflib.get_close_matches(unknown[0].lower(), list(parameters), n=1, cutoff=0.5)
    guess = f"; did you mean {close[0]}?" if close else ""
    return f"macro {name}() has no parameter {unknown[0]}: its parameters are {', '.join(parameters)}{guess}"


_UNKNOWN_TABLE = re.compile(r'Table (?:Function )?with name "?([^"\s!]+)"? does not exist')


def _close_table(message: str, tables) -> str:
    unknown = _UNKNOWN_TABLE.search(message)
    if not unknown or not tables:
        return ""
    upper = {t.upper(): t for t in tables}
    close = difflib.get_close_matches(unknown.group(1).upper(), list(upper), n=3, cutoff=0.5)
    return " or ".join(f'"{upper[c]}"' for c in close)


def _dashed_keyword(message: str, sql: str, columns) -> str:
    """``"DATE-OBS"`` when DuckDB misses column ``OBS`` of ``DATE-OBS`` written unquoted."""
    unknown = _UNKNOWN_COLUMN.search(message)
    if not unknown or not columns:
        return ""
    upper = {c.upper(): c for c in columns}
    for before in re.findall(rf'([A-Za-z_][\w-]*)\s*-\s*{re.escape(unknown.group(1))}\b', sql):
        name = upper.get(f"{before}-{unknown.group(1)}".upper())
        if name:
            return f'"{name}" (quote keywords with a dash)'
    return ""


def _suggestion(lines: list[str], message: str, columns) -> str:
    for line in lines:
        if line.startswith("Did you mean "):
            return line[len("Did you mean "):].rstrip("?")
        found = _CANDIDATES.search(line)
        if found:
            names = [_unqualified(n) for n in found.group(1).split(",") if n.strip()]
            unknown = _UNKNOWN_COLUMN.search(message)
            close = [n for n in names if unknown and difflib.SequenceMatcher(
                None, unknown.group(1).upper(), n.strip('"').upper()).ratio() >= 0.6]
            return " or ".join((close or names)[:3] if close else names[:1])
    unknown = _UNKNOWN_COLUMN.search(message)
    if unknown and columns:
        close = difflib.get_close_matches(unknown.group(1), list(columns), n=3, cutoff=0.6)
        if not close:
            upper = {c.upper(): c for c in columns}
            close = [upper[c] for c in difflib.get_close_matches(unknown.group(1).upper(), list(upper), n=3)]
        return " or ".join(f'"{c}"' for c in close)
    return ""


def _unqualified(name: str) -> str:
    """``"aia.EXPTIME"`` → ``"EXPTIME"`` (DuckDB qualifies candidate bindings)."""
    name = name.strip()
    bare = name.strip('"')
    if "." in bare:
        bare = bare.rsplit(".", 1)[1].strip('"')
    return f'"{bare}"'


def _offending_token(lines: list[str], sql: str) -> str:
    """The text above DuckDB's caret line (``LINE 1: …`` followed by ``   ^``)."""
    for number, line in enumerate(lines):
        if _LINE.match(line) and number + 1 < len(lines):
            caret = lines[number + 1]
            start = caret.find("^")
            if start < 0:
                continue
            width = max(caret.count("^"), 1)
            token = line[start:start + width] if width > 1 else re.match(r"\S*", line[start:]).group(0)
            return token.strip() or line[len(_LINE.match(line).group(0)):].strip()[:60]
    return ""
