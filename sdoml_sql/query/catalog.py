"""SQL over a catalog directory: DuckDB views and macros from ``sql/``, on a locked connection.

``Catalog(dir)`` opens an in-memory DuckDB database whose views read the catalog's Parquet
files (``aia``, ``hmi``, ``frames``, ``eve``, ``eve_lines``, ``array_attrs``, ``partitions``,
``frame_stats``, ``frame_quality``)
and whose table macros (``nearest``, ``nearest_frames``, ``nearest_eve``, ``aligned``,
``coverage``) live in ``sql/macros.sql``.  The connection is then locked: only the catalog
directory is readable (``allowed_directories``), nothing else is
(``enable_external_access = false``), and settings cannot be changed
(``lock_configuration``).  :meth:`Catalog.query` also refuses anything but one read-only
statement (:mod:`sdoml_sql.query.sqlguard`).

An instrument missing from the catalog still has its view, empty, with the locator and time
columns (``idx``, ``T_OBS``, ``T_OBS_STR``, ``year``, ``channel``; EVE: ``idx``, ``time``).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from sdoml_sql.catalog_builder.layout import INIT_SQL, Manifest, open_source
from sdoml_sql.catalog_builder.location import is_remote, local_directory, open_location, open_manifest
from sdoml_sql.config import (
    DUCKDB_MAX_TEMP_ENV, DUCKDB_MEMORY_ENV, QUERY_TIMEOUT_ENV, SHELL_CATALOG_ENV, default_catalog_dir, duckdb_config,
    query_time_limit, user_cache_dir,
)
from sdoml_sql.exceptions import CatalogError, EmptyResultWarning, QueryError
from sdoml_sql.query import copies, scans, timewindow
from sdoml_sql.query.sqlguard import check_read_only, literal_filters, one_line

#: Views created from ``sql/views/<name>.sql`` in this order (``frames`` needs aia and hmi).
VIEWS = ("aia", "hmi", "eve", "eve_lines", "array_attrs", "partitions", "frame_times", "frames",
         "frame_stats", "frame_quality")

#: The Parquet files behind each view; a view whose files are missing uses ``views/empty/``.
VIEW_FILES = {
    "eve": "eve/*/*.parquet",
    "eve_lines": "eve_lines/*/*.parquet",
    "array_attrs": "array_attrs/*/*/*/*.parquet",
    "frame_stats": "frame_stats/*/*/*/*.parquet",
}

#: Views whose scans come from the manifest's partitions (query/scans.py), by instruments.
MANIFEST_VIEWS = {"aia": ("aia",), "hmi": ("hmi",), "partitions": ("aia", "hmi")}

#: Columns that lead the ``frames`` view; the other common columns follow in AIA order.
FRAMES_LEAD = ("year", "channel", "idx")

# The DuckDB shell (duckdb-cli 1.5) resolves relative paths from its working directory, never
# from the init file's location, and no SQL can learn that location (the shell reads
# /proc/self/cmdline as an empty file). So init.sql finds its catalog when the shell starts:
# $SDOML_SHELL_CATALOG, else the working directory if it holds a catalog, else the directory
# init.sql was written for (so `duckdb -init /data/catalog/init.sql` works from anywhere while
# the catalog is not moved); views read their files under getvariable('sdoml_catalog'),
# bound when queried.
LOCATE_CATALOG = f"""-- sdoml-sql views and macros. Paths are relative to the catalog directory, found when the
-- shell starts: $SDOML_SHELL_CATALOG (sdoml-sql shell --catalog CATALOG sets it), else the working
-- directory (cd CATALOG && duckdb -init init.sql), else the directory this file was written for.
SET VARIABLE sdoml_catalog = CASE
    WHEN nullif(getenv('{SHELL_CATALOG_ENV}'), '') IS NOT NULL THEN getenv('{SHELL_CATALOG_ENV}')
    WHEN (SELECT count(*) FROM glob('./manifest.json')) > 0 THEN '.'
    ELSE '{{written}}' END;
SET VARIABLE sdoml_catalog_found = CASE
    WHEN (SELECT count(*) FROM glob(getvariable('sdoml_catalog') || '/manifest.json')) > 0 THEN true
    WHEN nullif(getenv('{SHELL_CATALOG_ENV}'), '') IS NOT NULL
    THEN error('no sdoml-sql catalog in ' || getvariable('sdoml_catalog') || ' ($SDOML_SHELL_CATALOG)')
    ELSE error('no sdoml-sql catalog in . nor in ' || getvariable('sdoml_catalog') || ' (where init.sql was written): '
               || 'start the shell inside the catalog directory (cd CATALOG && duckdb -init init.sql) or run '
               || 'sdoml-sql shell --catalog CATALOG')
    END;"""

#: The catalog directory in relocatable view SQL (spliced into a quoted path: '{catalog}/aia/…').
RELOCATABLE_DIRECTORY = "' || getvariable('sdoml_catalog') || '"

# Catalog._run fetches Arrow from an executed statement rather than from a relation
# (con.sql(q).to_arrow_table()), which binds the statement twice: once to make the relation,
# once to run it. Binding a view over many Parquet files costs milliseconds, while the copy
# DuckDB warns about is cheap for all but very large and wide results; the warning is
# silenced for this module's calls only.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning,
                        module=r"sdoml_sql\.query\.catalog")

def sql_dir():
    """The ``sql/`` directory: packaged as ``sdoml_sql/sql`` in a wheel, else the checkout's."""
    packaged = resources.files("sdoml_sql") / "sql"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():
        return checkout
    raise CatalogError("the sql/ directory of sdoml-sql is missing from the installation")


def read_sql(name: str) -> str:
    """The text of ``sql/<name>`` (e.g. ``"macros.sql"``, ``"views/aia.sql"``)."""
    path = sql_dir()
    for part in name.split("/"):
        path = path / part
    if not path.is_file():
        raise CatalogError(f"no SQL file {name} in {sql_dir()}")
    return path.read_text(encoding="utf-8")


def example_names() -> list[str]:
    """Names of the example queries in ``sql/examples`` (without ``.sql``), sorted."""
    folder = sql_dir() / "examples"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))


def example(name: str) -> str:
    """The text of example query ``name`` (``sql/examples/<name>.sql``)."""
    return read_sql(f"examples/{name}.sql")


def read_sql_file(path: str | os.PathLike) -> str:
    """The text of an SQL file (``@FILE`` on the command line).  A path under ``sql/`` that
    does not exist from the current directory (``sql/examples/hmi_3min.sql``) is read from
    the installed package, so the examples work from any directory."""
    file = Path(path).expanduser()
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        parts = Path(path).parts
        if len(parts) > 1 and parts[0] == "sql" and not file.is_absolute():
            packaged = sql_dir().joinpath(*parts[1:])
            if packaged.is_file():
                return packaged.read_text(encoding="utf-8")
        raise QueryError(f"no SQL file {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QueryError(f"cannot read SQL file {path}: {getattr(error, 'strerror', None) or error}") from None


def render(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders of an SQL template (other braces are left alone)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def sql_string(text: str) -> str:
    """``text`` as the inside of a single-quoted SQL literal."""
    return text.replace("'", "''")


class Catalog:
    """A catalog directory opened for SQL.

    ``directory`` defaults to ``$SDOML_CATALOG``, then :func:`default_catalog_dir`.
    ``store_timeout`` (seconds one remote object may take, retries included), ``retries`` and
    ``cache_dir`` (where fetched chunks are kept) apply to the stores the catalog opens and to
    a remote catalog itself; unset, they come from :mod:`sdoml_sql.config`.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, store_timeout: float | None = None,
                 retries: int | None = None, cache_dir: str | os.PathLike | None = None):
        location = open_location(directory if directory is not None else default_catalog_dir(),
                                 storage_options={"skip_instance_cache": True}, timeout=store_timeout,
                                 retries=retries)
        self._settle(location, open_manifest(location))
        self._store_access.update(timeout=store_timeout, retries=retries, cache_dir=cache_dir)
        self._copies = copies.prepare(self)
        self._connection = self.connect()

    def _settle(self, location, manifest: dict[str, Any]) -> None:
        self.location = location
        if self.location.remote:
            _read_in_small_blocks(self.location.fs)
        # a local catalog's directory (Path); a remote one's URL (str)
        self.directory = self.location.url if self.location.remote else self.location.directory
        self.manifest = Manifest.of(manifest)
        self._lock = threading.Lock()
        self._sources: dict[str, Any] = {}
        self._store_access: dict[str, Any] = {}
        self._copies: dict[str, str] = {}  # {view: copy file}; the live views while copies are written

    @classmethod
    def pending(cls, location, manifest: dict[str, Any]) -> "Catalog":
        """The catalog ``manifest`` describes before it is committed (its files in place), on
        the live views, without a connection: what :func:`copies.derive` computes copies from."""
        catalog = cls.__new__(cls)
        catalog._settle(location, manifest)
        return catalog

    def __repr__(self) -> str:
        return f"Catalog({str(self.directory)!r})"

    def _repr_html_(self) -> str:
        """Jupyter's view: per instrument and channel, the years, rows and time covered."""
        from sdoml_sql.query.display import catalog_html

        return catalog_html(self)

    # --- SQL text ---------------------------------------------------------------------

    def has(self, view: str) -> bool:
        """Whether the catalog holds Parquet files for ``view`` (aia, hmi, eve, …, partitions)."""
        if view in MANIFEST_VIEWS:
            return any(scans.frame_partitions(self._present, i) for i in MANIFEST_VIEWS[view])
        if self.location.remote:
            return bool(self.location.fs.glob(self.location.path(VIEW_FILES[view])))
        return any(self.directory.glob(VIEW_FILES[view]))

    def view_sql(self, view: str, frames_columns: str = "", relocatable: bool = False) -> str:
        """The ``CREATE VIEW`` statement of ``view`` for this catalog: file paths under the
        catalog's absolute directory or URL, or (``relocatable``) under the ``sdoml_catalog``
        SQL variable that ``init.sql`` sets (see :data:`LOCATE_CATALOG`)."""
        empty = (view in VIEW_FILES or view in MANIFEST_VIEWS) and not self.has(view)
        name = f"views/empty/{view}.sql" if empty else f"views/{view}.sql"
        if view in self._copies:
            name = f"views/{view}_copy.sql"
        base = RELOCATABLE_DIRECTORY if relocatable else sql_string(self._base)
        if view in MANIFEST_VIEWS and not empty:
            return render(read_sql(name), **self._manifest_scans(view, base))
        return render(read_sql(name), catalog=base, frames_columns=frames_columns,
                      year_slack=str(self._year_slack), copy_file=sql_string(self._copies.get(view, "")))

    def _manifest_scans(self, view: str, base: str) -> dict[str, str]:
        """The placeholders of a view read from the manifest's partitions (query/scans.py);
        ``base`` is the catalog as the inside of an SQL string literal."""
        locate = _locator(base)
        if view == "partitions":
            return {"partition_rows": scans.partitions_rows(self._present, locate)}
        return {f"{view}_scan": scans.frame_scan(self._present, view, locate)}

    @cached_property
    def _present(self) -> Manifest:
        """The manifest, less partitions whose file is missing (one stat per partition)."""
        if self.location.remote:
            return self.manifest  # listing a bucket costs more than trusting its manifest
        return scans.present(self.manifest, lambda relative: (self.directory / relative).is_file())

    @cached_property
    def _year_slack(self) -> int:
        return scans.year_slack(self._present)

    @cached_property
    def _view_columns(self) -> dict[str, list[tuple[str, str]]]:
        """``(name, type)`` of the ``aia`` and ``hmi`` views, from the manifest (once)."""
        return {instrument: scans.view_columns(self._present, instrument) for instrument in ("aia", "hmi")}

    @property
    def _base(self) -> str:
        """The catalog's path or URL as the views name its files."""
        return self.location.url if self.location.remote else self.directory.as_posix()

    def script(self, relocatable: bool = False) -> str:
        """Every view and macro as one SQL script.  ``relocatable=True`` gives what
        ``init.sql`` holds: paths relative to the catalog directory, found when the shell
        starts (:data:`LOCATE_CATALOG`), so a copied or moved catalog keeps working."""
        locate = [render(LOCATE_CATALOG, written=sql_string(self.directory.as_posix()))] if relocatable else []
        return "\n".join(locate + self._view_statements(relocatable) + [read_sql("macros.sql")])

    def _view_statements(self, relocatable: bool = False) -> list[str]:
        statements = [self.view_sql(v, relocatable=relocatable) for v in VIEWS if v != "frames"]
        columns = common_columns(self._view_columns["aia"], self._view_columns["hmi"])
        statements.append(self.view_sql("frames", ", ".join(_quote(c) for c in columns), relocatable))
        return statements

    def write_init_sql(self, path: str | os.PathLike | None = None) -> Path:
        """Write the views and macros to ``path`` (default ``CATALOG/init.sql``) for the DuckDB
        shell, relocatable: ``cd CATALOG && duckdb -init init.sql`` works wherever the
        catalog is copied or moved (``sdoml-sql shell`` works from any directory).  Falls back
        to a per-user cache file when the catalog directory is read-only.  Returns the path
        written."""
        self._refuse_remote_shell()
        text = self.script(relocatable=True)
        target = Path(path) if path else self.directory / INIT_SQL
        try:
            if not (target.is_file() and target.read_text(encoding="utf-8") == text):
                target.write_text(text, encoding="utf-8")
        except OSError:
            if path:
                raise CatalogError(f"cannot write {target}") from None
            target = user_cache_dir() / f"init-{abs(hash(str(self.directory)))}.sql"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return target

    # --- connections ------------------------------------------------------------------

    def connect(self, locked: bool = True) -> duckdb.DuckDBPyConnection:
        """A new in-memory DuckDB connection with the views and macros.

        ``locked`` (the default) restricts file access to the catalog directory and locks
        the configuration; an unlocked connection is for your own scripts.
        """
        connection = duckdb.connect(":memory:", config=duckdb_config())
        # Keep Parquet footers between queries (~100 KB a file). A remote build never rewrites
        # a file under one name; a local rebuild replaces data.parquet in place, which DuckDB
        # notices even at an unchanged modification time (tests/test_scale.py).
        connection.execute("SET GLOBAL parquet_metadata_cache = true")
        if self.location.remote:  # DuckDB reads the Parquet in place through fsspec: no extension
            connection.register_filesystem(self.location.fs)
            # only the column chunks a query needs, not whole row groups ahead of time
            connection.execute("SET disable_parquet_prefetching = true")
        try:
            connection.execute(self.script())
        except duckdb.Error as error:
            raise CatalogError(f"catalog {self.directory}: cannot create views: {one_line(error)}") from None
        if locked:
            lock_down(connection, [self._base])
        return connection

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._connection.cursor()

    # --- queries ----------------------------------------------------------------------

    def query(self, sql: str, params: Any = None, query_timeout: float | None = None, *,
              timeout: float | None = None):
        """Run one read-only statement; return a :class:`~sdoml_sql.query.selection.Selection`.

        ``params`` fills ``?`` / ``$name`` placeholders (a list or a dict).  ``query_timeout``
        (seconds; ``timeout`` is its older name; default ``$SDOML_QUERY_TIMEOUT``, else none)
        interrupts a query that runs longer: a one-line :class:`QueryError` names the limit,
        the catalog stays usable.  Raises :class:`QueryError` with a one-line message for
        refused or failing SQL.
        """
        from sdoml_sql.query.selection import Selection

        checked = check_read_only(sql)
        table = self._run(checked, params, limit=_time_limit_argument(query_timeout, timeout))
        hints = self._warn_empty(checked) if table.num_rows == 0 else []
        return Selection(table, self, checked, hints)

    def page(self, sql: str, offset: int = 0, limit: int = 100, params: Any = None,
             query_timeout: float | None = None):
        """Rows ``offset`` to ``offset + limit - 1`` of one read-only statement and the number
        of rows it returns: ``(Selection, total)``.  The rows stream from DuckDB in batches,
        so memory holds a batch and the page whatever the result's size; the rows are those
        of :meth:`query` at the same positions.  Same checks, time limit and errors."""
        from sdoml_sql.query.selection import Selection

        if offset < 0 or limit < 0:
            raise QueryError(f"offset {offset} and limit {limit} must be 0 or more")
        checked = check_read_only(sql)
        result = self._run(checked, params, limit=query_timeout, read=lambda r: _rows_between(r, offset, offset + limit))
        table, total = result if isinstance(result, tuple) else (result, 0)
        hints = self._warn_empty(checked) if total == 0 else []
        return Selection(table, self, checked, hints), total

    def _warn_empty(self, sql: str) -> list[str]:
        hints = self.empty_result_hints(sql)
        for hint in hints:
            warnings.warn(hint, EmptyResultWarning, stacklevel=3)
        return hints

    def empty_result_hints(self, sql: str) -> list[str]:
        """Why a query may have returned no rows: each filter of a catalog column
        (``channel``, ``instrument``, ``year``) on a literal the catalog does not hold, e.g.
        ``no channel '171' in the catalog; channels are 94A, 131A, 171A, …``."""
        known = self._known_values()
        hints = []
        for column, value in literal_filters(sql):
            if column == "year" and str(value).strip().isdigit():
                value = int(value)  # DuckDB compares year = '2010' as a number
            values = known.get(column)
            if values is None or value in values:
                continue
            close = difflib.get_close_matches(str(value).upper(), [str(v).upper() for v in values], n=1)
            guess = f"; did you mean {str(values[[str(v).upper() for v in values].index(close[0])])!r}?" if close else ""
            hints.append(f"no {column} {value!r} in the catalog; {column}s are "
                         f"{', '.join(map(str, values)) or 'none'}{guess}")
        return list(dict.fromkeys(hints))

    def _known_values(self) -> dict[str, list]:
        rows = self._cursor().execute(
            "SELECT DISTINCT instrument, channel, year FROM partitions ORDER BY instrument, "
            "try_cast(regexp_extract(channel, '^[0-9]+') AS INTEGER) NULLS LAST, channel, year").fetchall()
        return {"instrument": list(dict.fromkeys(r[0] for r in rows)),
                "channel": list(dict.fromkeys(r[1] for r in rows)),
                "year": sorted({r[2] for r in rows})}

    def sql(self, sql: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        """Run one read-only statement and return the raw DuckDB relation (lazy; use
        ``.df()``, ``.to_arrow_table()``, ``.show()`` …).  Same checks as :meth:`query`."""
        checked = check_read_only(sql)
        cursor = self._cursor()
        try:
            if params is None:
                return cursor.sql(checked)
            return cursor.sql(checked, params=params)
        except duckdb.Error as error:
            raise QueryError(one_line(error, checked, self.all_columns, self.all_names)) from None

    def text(self, sql: str, format: str = "table", params: Any = None, query_timeout: float | None = None, *,
             timeout: float | None = None) -> str:
        """Run one read-only statement and return its rows as text: ``table``, ``csv`` or
        ``json`` (one object per row), written as :meth:`Selection.to_text` writes them but
        without pandas (what ``sdoml-sql query`` prints).  Same checks, time limit, errors
        and empty-result warnings as :meth:`query`."""
        from sdoml_sql.query import text

        text.render(format, [], [])  # an unknown format fails before the query runs
        checked = check_read_only(sql)
        result = self._run(checked, params, arrow=False, limit=_time_limit_argument(query_timeout, timeout))
        if result is None:
            return text.render(format, [], [])
        description, rows = result
        if not rows:
            self._warn_empty(checked)
        return text.render(format, [text.duckdb_column(d[0], str(d[1])) for d in description], rows)

    def _run(self, sql: str, params: Any, arrow: bool = True, limit: float | None = None, read=None):
        limit = query_time_limit(limit, QueryError)
        cursor = self._cursor()
        alarm = threading.Timer(limit, cursor.interrupt) if limit else None

        def work():
            result = cursor.execute(sql, params) if params is not None else cursor.execute(sql)
            if result.description is None:
                return _empty_arrow() if arrow else None
            if read is not None:
                return read(result)
            return result.to_arrow_table() if arrow else (result.description, _python_rows(result))

        try:
            if alarm:
                alarm.start()
            self._narrow_to_time_window(cursor, sql)  # here: the parser connection is this thread's
            return interruptible(cursor, work)
        except duckdb.Error as error:
            with contextlib.suppress(duckdb.Error):
                cursor.execute("ROLLBACK")  # the window's transaction, if any: the error is the query's
            if alarm and alarm.finished.is_set() and isinstance(error, duckdb.InterruptException):
                raise QueryError(f"query stopped at its time limit of {limit:g} s "
                                 f"(query_timeout argument, --query-timeout or ${QUERY_TIMEOUT_ENV})") from None
            if isinstance(error, duckdb.OutOfMemoryException):
                settings = duckdb_config()
                raise QueryError(f"{one_line(error)} — the query needs more than its memory limit "
                                 f"({settings['memory_limit']}, ${DUCKDB_MEMORY_ENV}) and spill space "
                                 f"({settings['max_temp_directory_size']}, ${DUCKDB_MAX_TEMP_ENV}): raise them or "
                                 "narrow the query") from None
            raise QueryError(one_line(_with_position(cursor, error, sql, params), sql, self.all_columns,
                                      self.all_names, self.macro_parameters)) from None
        finally:
            if alarm:
                alarm.cancel()
            cursor.close()

    def _narrow_to_time_window(self, cursor, sql: str) -> None:
        """Shadow the instrument views, on this cursor, with scans of only the years the
        query's ``T_OBS`` window can touch (query/timewindow.py): files of other years are
        neither bound nor opened, so the cost does not grow with the years catalogued."""
        narrowable = {view: instruments for view, instruments in timewindow.TIMED_VIEWS.items()
                      if view not in self._copies}  # a copy is one time-sorted file already
        if not timewindow.may_narrow(sql, narrowable):
            return
        cursor.execute("BEGIN TRANSACTION")  # now() in a bound: the window's is the query's
        window = timewindow.time_window(cursor, sql, narrowable)
        if window is None:
            cursor.execute("ROLLBACK")  # a bound that failed to evaluate aborted it: the query says why
            return
        instruments, first, last = window
        for instrument in instruments:
            if self.has(instrument):
                years = set(scans.years_within(self._present, instrument, first, last))
                cursor.execute(f"CREATE TEMP VIEW {instrument} AS {self._years_scan(instrument, years)}")

    def _years_scan(self, instrument: str, years: set[int]) -> str:
        """The instrument view's ``SELECT`` limited to partitions of ``years``, with every
        column and type of the full view (an empty typed row leads the union by name)."""
        columns = ", ".join(f"NULL::{kind} AS {_quote(name)}" for name, kind in self._view_columns[instrument])
        partitions = {key: entry for key, entry in self._present.partitions.items()
                      if entry.get("instrument") != instrument or entry.get("year") in years}
        scan = scans.frame_scan(self._present.with_partitions(partitions), instrument,
                                _locator(sql_string(self._base)))
        typed = f"SELECT {columns} WHERE false"
        return f"{typed}\nUNION ALL BY NAME\n{scan}" if scan else typed

    def example(self, name: str, params: Any = None):
        """Run the example query ``sql/examples/<name>.sql``."""
        return self.query(example(name), params)

    # --- introspection ----------------------------------------------------------------

    def tables(self) -> list[str]:
        """Names of the views (aia, hmi, frames, eve, eve_lines, array_attrs, partitions)."""
        rows = self._cursor().execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name").fetchall()
        return [r[0] for r in rows]

    def macros(self) -> list[str]:
        """Names of the table macros (nearest, nearest_frames, nearest_eve, aligned, coverage)."""
        rows = self._cursor().execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type = 'table_macro' AND NOT internal ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def columns(self, table: str) -> dict[str, str]:
        """``{column: DuckDB type}`` of a view, in column order."""
        if table not in self.tables():
            raise QueryError(f"no view {table!r}: choose one of {', '.join(self.tables())}")
        return dict(_describe(self._cursor(), table))

    @cached_property
    def all_columns(self) -> tuple[str, ...]:
        """Every column name of every view (for "did you mean" suggestions)."""
        names: dict[str, None] = {}
        for view in self.tables():
            names.update(dict.fromkeys(self.columns(view)))
        return tuple(names)

    @cached_property
    def macro_parameters(self) -> dict[str, tuple[str, ...]]:
        """``{macro: parameter names}`` of the catalog's macros (to name a misspelt parameter)."""
        rows = self._cursor().execute(
            "SELECT function_name, parameters FROM duckdb_functions() "
            "WHERE function_type IN ('table_macro', 'macro') AND NOT internal").fetchall()
        return {name: tuple(parameters) for name, parameters in rows}

    @cached_property
    def all_names(self) -> tuple[str, ...]:
        """The views and table macros (for "did you mean" suggestions on unknown tables)."""
        return tuple(self.tables() + self.macros())

    def channels(self) -> dict[str, str]:
        """``{channel: instrument}`` of the catalogued AIA and HMI arrays."""
        rows = self._cursor().execute("SELECT DISTINCT channel, instrument FROM partitions").fetchall()
        return dict(rows)

    # --- DuckDB shell -----------------------------------------------------------------

    def shell(self, args: list[str] | tuple[str, ...] = ()) -> int:
        """Run the DuckDB CLI (PyPI ``duckdb-cli``) on an in-memory database with the views and
        macros loaded from ``init.sql``; extra ``args`` go to ``duckdb`` (e.g. ``-c SQL``).
        Returns its exit status.  The shell is not locked down: it is your own session."""
        self._refuse_remote_shell()
        executable = find_duckdb_cli()
        init = self.write_init_sql()
        environment = {**os.environ, SHELL_CATALOG_ENV: str(self.directory)}
        return subprocess.call([executable, "-init", str(init), *args], env=environment)

    def _refuse_remote_shell(self) -> None:
        refuse_remote_shell(self.directory)

    # --- sources ----------------------------------------------------------------------

    def source(self, instrument: str):
        """The opened source store of ``instrument`` (aia, hmi, eve), from the manifest; cached."""
        if instrument not in self._sources:
            self._sources[instrument] = open_source(instrument, self.manifest.source(instrument),
                                                    catalog=str(self.directory), **self._store_access)
        return self._sources[instrument]


def refuse_remote_shell(catalog) -> None:
    """Raise :class:`CatalogError` if ``catalog`` is remote: the DuckDB shell reads local files."""
    if catalog is not None and is_remote(catalog):
        raise CatalogError(f"catalog {catalog} is remote and the DuckDB shell reads local files: copy it "
                           f"first with `sdoml-sql sync {catalog} DIR`, then use --catalog DIR")


def _locator(base: str):
    """A function from a path relative to the catalog to the inside of the SQL string literal
    that names it under ``base`` (itself the inside of a literal, or an SQL expression splice)."""
    return lambda relative: f"{base}/{sql_string(relative)}"


def derive_copies(location, manifest: dict[str, Any], min_frames: int | None = None) -> dict[str, Any]:
    """The materialized copies of the catalog ``manifest`` describes, written before it is
    committed (:func:`sdoml_sql.query.copies.derive` on :meth:`Catalog.pending`); returns the
    manifest to commit.  The ``derive`` of the builder's and the stats pass's commits."""
    return copies.derive(Catalog.pending(location, manifest), min_frames)


def interruptible(cursor: duckdb.DuckDBPyConnection, work):
    """``work()`` (DuckDB calls on ``cursor``; nothing that keeps per-thread state, such as
    :func:`~sdoml_sql.query.sqlguard.parser`), stopped by Ctrl-C: in the main thread the work
    runs in a helper thread while this one waits in Python, so SIGINT raises
    KeyboardInterrupt here at once; the cursor's query is then interrupted and the
    KeyboardInterrupt re-raised (the catalog's connection stays usable).  DuckDB itself runs
    with the GIL released and never sees the signal."""
    if threading.current_thread() is not threading.main_thread():
        return work()
    outcome: dict[str, Any] = {}
    finished = threading.Event()  # waited on, not the thread: an interrupted join() marks it stopped

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error
        finally:
            finished.set()

    worker = threading.Thread(target=target, name="sdoml-sql-query", daemon=True)
    worker.start()
    try:
        while not finished.wait(0.25):
            pass
        worker.join()  # finished: let it end before going on (a thread still unwinding at exit aborts)
    except KeyboardInterrupt:
        deadline = time.monotonic() + 10
        while not finished.is_set() and time.monotonic() < deadline:
            cursor.interrupt()  # again until it stops: the query may not have started at the first
            finished.wait(0.05)
        if finished.is_set():
            worker.join(1)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _time_limit_argument(query_timeout: float | None, timeout: float | None) -> float | None:
    """The query time limit given as ``query_timeout`` or by its older name ``timeout``."""
    if query_timeout is not None and timeout is not None and query_timeout != timeout:
        raise QueryError(f"query_timeout={query_timeout!r} and timeout={timeout!r} name the same limit: give one")
    return query_timeout if query_timeout is not None else timeout


def _python_rows(result) -> list[tuple]:
    """A result's rows as Python values; through Arrow when a column is an INTERVAL (DuckDB's
    own Python rows count its months as 30 days)."""
    if any(str(d[1]).upper().startswith("INTERVAL") for d in result.description):
        table = result.to_arrow_table()
        return list(zip(*(column.to_pylist() for column in table.columns)))
    return result.fetchall()


#: Rows per Arrow batch when a page is streamed out of a result (:meth:`Catalog.page`).
PAGE_BATCH_ROWS = 8192


def _rows_between(result, start: int, stop: int):
    """``(Arrow table of rows start … stop-1, number of rows)`` of an executed result, read
    batch by batch."""
    import pyarrow as pa

    stream = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch  # DuckDB 2 / DuckDB 1
    reader = stream(PAGE_BATCH_ROWS)
    kept, seen = [], 0
    for batch in reader:
        lo, hi = max(start - seen, 0), min(stop - seen, batch.num_rows)
        if lo < hi:
            kept.append(batch.slice(lo, hi - lo))
        seen += batch.num_rows
    return pa.Table.from_batches(kept, schema=reader.schema), seen


def _empty_arrow():
    import pyarrow as pa

    return pa.table({})


def find_duckdb_cli() -> str:
    """Path of the ``duckdb`` shell: next to this Python (a venv's bin), else on ``PATH``."""
    beside = Path(sys.executable).parent / ("duckdb.exe" if os.name == "nt" else "duckdb")
    found = str(beside) if beside.is_file() else shutil.which("duckdb")
    if not found:
        raise CatalogError("the DuckDB shell is not installed: pip install duckdb-cli")
    return found


def _with_position(cursor, error: duckdb.Error, sql: str, params: Any) -> duckdb.Error:
    """The same error with DuckDB's ``LINE 1: … ^^^`` pointer: relation errors come trimmed,
    so a parse, bind or catalog error (raised before anything runs) is re-raised by
    ``execute``, which keeps it."""
    if not isinstance(error, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)):
        return error
    try:
        cursor.execute(sql, params) if params is not None else cursor.execute(sql)
    except duckdb.Error as full:
        return full
    return error


def lock_down(connection: duckdb.DuckDBPyConnection, directories: list[Path | str]) -> None:
    """Allow file access under ``directories`` (paths or URLs) only, then lock the configuration."""
    listed = ", ".join(f"'{sql_string(_posix(d).rstrip('/') + '/')}'" for d in directories)
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET autoload_known_extensions = false")
    connection.execute(f"SET allowed_directories = [{listed}]")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


def common_columns(aia: list[tuple[str, str]], hmi: list[tuple[str, str]]) -> list[str]:
    """Columns of both views whose types agree (numeric types count as one), AIA order,
    led by year, channel, idx."""
    hmi_types = {name.upper(): kind for name, kind in hmi}
    shared = [name for name, kind in aia
              if name.upper() in hmi_types and _compatible(kind, hmi_types[name.upper()])]
    lead = [c for c in FRAMES_LEAD if c in shared]
    return lead + [c for c in shared if c not in lead]


_NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "REAL"}


def _compatible(a: str, b: str) -> bool:
    if a == b or "NULL" in (a, b):
        return True
    return a in _NUMERIC and b in _NUMERIC


def _describe(connection, view: str) -> list[tuple[str, str]]:
    rows = connection.execute(f"DESCRIBE {_quote(view)}").fetchall()
    return [(r[0], r[1]) for r in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: Bytes fetched per read of a remote Parquet file: DuckDB asks for footers and column chunks;
#: fsspec's defaults (5-50 MB blocks) would fetch whole files.
READ_BLOCK_BYTES = 64 * 1024


def _read_in_small_blocks(fs) -> None:
    for name in ("default_block_size", "block_size"):
        if hasattr(fs, name):
            setattr(fs, name, READ_BLOCK_BYTES)


def _posix(directory: Path | str) -> str:
    return directory.as_posix() if isinstance(directory, Path) else directory


_DEFAULT: dict[Path | str, Catalog] = {}


def open_catalog(catalog: Catalog | str | os.PathLike | None = None) -> Catalog:
    """``catalog`` itself, or the (cached) :class:`Catalog` of a directory / the default one."""
    if isinstance(catalog, Catalog):
        return catalog
    catalog = catalog if catalog is not None else default_catalog_dir()
    directory = str(catalog) if is_remote(catalog) else local_directory(catalog)
    if directory not in _DEFAULT:
        _DEFAULT[directory] = Catalog(directory)
    return _DEFAULT[directory]


def query(sql: str, catalog: Catalog | str | os.PathLike | None = None, params: Any = None,
          query_timeout: float | None = None, *, timeout: float | None = None):
    """Run one read-only SQL statement on a catalog and return a
    :class:`~sdoml_sql.query.selection.Selection`.

    ``catalog`` is a :class:`Catalog` or a directory; by default ``$SDOML_CATALOG``, then
    :func:`sdoml_sql.config.default_catalog_dir`.  ``query_timeout`` (older name
    ``timeout``) is the query time limit of :meth:`Catalog.query`.
    """
    return open_catalog(catalog).query(sql, params, query_timeout, timeout=timeout)


def query_text(sql: str, catalog: Catalog | str | os.PathLike | None = None, format: str = "table",
               params: Any = None, query_timeout: float | None = None, *, timeout: float | None = None) -> str:
    """Run one read-only SQL statement on a catalog and return its rows as text (``table``,
    ``csv`` or ``json``): :meth:`Catalog.text` on the catalog :func:`query` would use."""
    return open_catalog(catalog).text(sql, format, params, query_timeout, timeout=timeout)
