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
import os
import subprocess
import threading
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb

from sdoml_sql.catalog_builder.layout import Manifest, open_source
from sdoml_sql.catalog_builder.location import is_remote, local_directory, open_location, open_manifest
from sdoml_sql.config import (
    DUCKDB_MAX_TEMP_ENV,
    DUCKDB_MEMORY_ENV,
    QUERY_TIMEOUT_ENV,
    SHELL_CATALOG_ENV,
    default_catalog_dir,
    duckdb_config,
    query_time_limit,
)
from sdoml_sql.exceptions import CatalogError, EmptyResultWarning, QueryError, closest_names
from sdoml_sql.query import copies, scans, timewindow
from sdoml_sql.query.connection import (
    _empty_arrow,
    _python_rows,
    _read_in_small_blocks,
    _rows_between,
    _time_limit_argument,
    _with_position,
    find_duckdb_cli,
    interruptible,
    lock_down,
)
from sdoml_sql.query.sqlfiles import example, sql_string
from sdoml_sql.query.sqlguard import check_read_only, literal_filters, one_line
from sdoml_sql.query.views import CatalogViews, _locator, _quote


class Catalog(CatalogViews):
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
        self._known: dict[str, list] | None = None
        self._channels: dict[str, str] | None = None

    @classmethod
    def pending(cls, location, manifest: dict[str, Any]) -> Catalog:
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
        result = self._run(checked, params, limit=query_timeout,
                           read=lambda r: _rows_between(r, offset, offset + limit))
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
            close = closest_names(value, values)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            hints.append(f"no {column} {value!r} in the catalog; {column}s are "
                         f"{', '.join(map(str, values)) or 'none'}{guess}")
        return list(dict.fromkeys(hints))

    def _known_values(self) -> dict[str, list]:
        """The instruments, channels and years the catalog holds (kept: the manifest is fixed)."""
        if self._known is None:
            rows = self._catalog_rows(
                "SELECT DISTINCT instrument, channel, year FROM partitions ORDER BY instrument, "
                "try_cast(regexp_extract(channel, '^[0-9]+') AS INTEGER) NULLS LAST, channel, year")
            self._known = {"instrument": list(dict.fromkeys(r[0] for r in rows)),
                           "channel": list(dict.fromkeys(r[1] for r in rows)),
                           "year": sorted({r[2] for r in rows})}
        return self._known

    def _catalog_rows(self, sql: str) -> list[tuple]:
        """The rows of one of the catalog's own statements (introspection), a DuckDB error as
        one :class:`QueryError` line naming the catalog."""
        try:
            return self._cursor().execute(sql).fetchall()
        except duckdb.Error as error:
            raise QueryError(f"catalog {self.directory}: {one_line(error)}") from None

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
        column and type of the full view: when those years' files declare fewer columns or
        other types, an empty typed row leads the union by name (binding it costs ~3 ms and
        the query ~5 ms more, so it is left out when the columns already match)."""
        partitions = {key: entry for key, entry in self._present.partitions.items()
                      if entry.get("instrument") != instrument or entry.get("year") in years}
        narrowed = self._present.with_partitions(partitions)
        scan = scans.frame_scan(narrowed, instrument, _locator(sql_string(self._base)))
        if scan and scans.view_columns(narrowed, instrument) == self._view_columns[instrument]:
            return scan
        columns = ", ".join(f"NULL::{kind} AS {_quote(name)}" for name, kind in self._view_columns[instrument])
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
        if self._channels is None:  # kept: the manifest is fixed
            self._channels = dict(self._catalog_rows("SELECT DISTINCT channel, instrument FROM partitions"))
        return dict(self._channels)

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


def derive_copies(location, manifest: dict[str, Any], min_frames: int | None = None) -> dict[str, Any]:
    """The materialized copies of the catalog ``manifest`` describes, written before it is
    committed (:func:`sdoml_sql.query.copies.derive` on :meth:`Catalog.pending`); returns the
    manifest to commit.  The ``derive`` of the builder's and the stats pass's commits."""
    return copies.derive(Catalog.pending(location, manifest), min_frames)


def _describe(connection, view: str) -> list[tuple[str, str]]:
    rows = connection.execute(f"DESCRIBE {_quote(view)}").fetchall()
    return [(r[0], r[1]) for r in rows]


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
