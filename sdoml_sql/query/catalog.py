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

import difflib
import os
import shutil
import subprocess
import sys
import threading
import warnings
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from sdoml_sql.catalog_builder.build import read_manifest
from sdoml_sql.config import default_catalog_dir
from sdoml_sql.exceptions import CatalogError, EmptyResultWarning, QueryError, StoreError
from sdoml_sql.query import quality_cache
from sdoml_sql.query.sqlguard import check_read_only, literal_filters, one_line

#: Views created from ``sql/views/<name>.sql`` in this order (``frames`` needs aia and hmi).
VIEWS = ("aia", "hmi", "eve", "eve_lines", "array_attrs", "partitions", "frame_times", "frames",
         "frame_stats", "frame_quality")

#: The Parquet files behind each view; a view whose files are missing uses ``views/empty/``.
VIEW_FILES = {
    "aia": "aia/*/*/*.parquet",
    "hmi": "hmi/*/*/*.parquet",
    "eve": "eve/*/*.parquet",
    "eve_lines": "eve_lines/*/*.parquet",
    "array_attrs": "array_attrs/*/*/*/*.parquet",
    "frame_stats": "frame_stats/*/*/*/*.parquet",
}

#: Columns that lead the ``frames`` view; the other common columns follow in AIA order.
FRAMES_LEAD = ("year", "channel", "idx")

INIT_SQL = "init.sql"

#: Set by ``sdoml-sql shell`` for the DuckDB shell it starts: the catalog ``init.sql`` reads.
SHELL_CATALOG_ENV = "SDOML_SHELL_CATALOG"

# The DuckDB shell (duckdb-cli 1.5) resolves relative paths from its working directory, never
# from the init file's location, and no SQL can learn that location (the shell reads
# /proc/self/cmdline as an empty file). So init.sql finds its catalog when the shell starts:
# $SDOML_SHELL_CATALOG, else the working directory if it holds a catalog; views read their
# files under getvariable('sdoml_catalog'), bound when queried.
LOCATE_CATALOG = f"""-- sdoml-sql views and macros. Paths are relative to the catalog directory: start the shell
-- inside it (cd CATALOG && duckdb -init init.sql), or anywhere with sdoml-sql shell --catalog CATALOG.
SET VARIABLE sdoml_catalog = coalesce(nullif(getenv('{SHELL_CATALOG_ENV}'), ''), '.');
SET VARIABLE sdoml_catalog_found = CASE
    WHEN (SELECT count(*) FROM glob(getvariable('sdoml_catalog') || '/manifest.json')) > 0 THEN true
    ELSE error('no sdoml-sql catalog in ' || getvariable('sdoml_catalog') || ': start the shell inside the '
               || 'catalog directory (cd CATALOG && duckdb -init init.sql) or run sdoml-sql shell --catalog CATALOG')
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

#: The narrow scan behind ``frame_times`` (``{files}``: an instrument's Parquet files).
TIMES_SCAN = ("read_parquet('{files}', hive_partitioning = true, "
              "hive_types = {'year': INTEGER, 'channel': VARCHAR})")


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
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory if directory is not None else default_catalog_dir()).expanduser().resolve()
        self.manifest = _read_manifest(self.directory)
        self._lock = threading.Lock()
        self._sources: dict[str, Any] = {}
        self._quality_cached = False
        self._quality_cached = quality_cache.prepare(self)
        self._connection = self.connect()

    def __repr__(self) -> str:
        return f"Catalog({str(self.directory)!r})"

    # --- SQL text ---------------------------------------------------------------------

    def has(self, view: str) -> bool:
        """Whether the catalog holds Parquet files for ``view`` (aia, hmi, eve, …)."""
        return any(self.directory.glob(VIEW_FILES[view]))

    def view_sql(self, view: str, frames_columns: str = "", relocatable: bool = False) -> str:
        """The ``CREATE VIEW`` statement of ``view`` for this catalog: file paths under the
        catalog's absolute directory, or (``relocatable``) under the ``sdoml_catalog`` SQL
        variable that ``init.sql`` sets (see :data:`LOCATE_CATALOG`)."""
        name = f"views/{view}.sql" if view not in VIEW_FILES or self.has(view) else f"views/empty/{view}.sql"
        if view == "frame_quality" and self._quality_cached:
            name = "views/frame_quality_cached.sql"
        catalog = RELOCATABLE_DIRECTORY if relocatable else sql_string(self.directory.as_posix())
        times = {f"{i}_times": render(TIMES_SCAN, files=f"{catalog}/{VIEW_FILES[i]}") if self.has(i) else i
                 for i in ("aia", "hmi")}
        return render(read_sql(name), catalog=catalog, frames_columns=frames_columns, **times)

    def script(self, relocatable: bool = False) -> str:
        """Every view and macro as one SQL script.  ``relocatable=True`` gives what
        ``init.sql`` holds: paths relative to the catalog directory, found when the shell
        starts (:data:`LOCATE_CATALOG`), so a copied or moved catalog keeps working."""
        locate = [LOCATE_CATALOG] if relocatable else []
        return "\n".join(locate + self._view_statements(relocatable) + [read_sql("macros.sql")])

    def _view_statements(self, relocatable: bool = False) -> list[str]:
        statements = [self.view_sql(v, relocatable=relocatable) for v in VIEWS if v != "frames"]
        scratch = duckdb.connect()
        scratch.execute("\n".join(self.view_sql(v) for v in ("aia", "hmi")))
        columns = common_columns(_describe(scratch, "aia"), _describe(scratch, "hmi"))
        scratch.close()
        statements.append(self.view_sql("frames", ", ".join(_quote(c) for c in columns), relocatable))
        return statements

    def write_init_sql(self, path: str | os.PathLike | None = None) -> Path:
        """Write the views and macros to ``path`` (default ``CATALOG/init.sql``) for the DuckDB
        shell, relocatable: ``cd CATALOG && duckdb -init init.sql`` works wherever the
        catalog is copied or moved (``sdoml-sql shell`` works from any directory).  Falls back
        to a per-user cache file when the catalog directory is read-only.  Returns the path
        written."""
        text = self.script(relocatable=True)
        target = Path(path) if path else self.directory / INIT_SQL
        try:
            if not (target.is_file() and target.read_text(encoding="utf-8") == text):
                target.write_text(text, encoding="utf-8")
        except OSError:
            if path:
                raise CatalogError(f"cannot write {target}") from None
            target = _cache_dir() / f"init-{abs(hash(str(self.directory)))}.sql"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return target

    # --- connections ------------------------------------------------------------------

    def connect(self, locked: bool = True) -> duckdb.DuckDBPyConnection:
        """A new in-memory DuckDB connection with the views and macros.

        ``locked`` (the default) restricts file access to the catalog directory and locks
        the configuration; an unlocked connection is for your own scripts.
        """
        connection = duckdb.connect(":memory:")
        # Keep Parquet footers between queries (re-read when a file changes): binding a view
        # over many files otherwise re-reads every footer on every query.
        connection.execute("SET GLOBAL parquet_metadata_cache = true")
        try:
            connection.execute(self.script())
        except duckdb.Error as error:
            raise CatalogError(f"catalog {self.directory}: cannot create views: {one_line(error)}") from None
        if locked:
            lock_down(connection, [self.directory])
        return connection

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._connection.cursor()

    # --- queries ----------------------------------------------------------------------

    def query(self, sql: str, params: Any = None):
        """Run one read-only statement; return a :class:`~sdoml_sql.query.selection.Selection`.

        ``params`` fills ``?`` / ``$name`` placeholders (a list or a dict).  Raises
        :class:`QueryError` with a one-line message for refused or failing SQL.
        """
        from sdoml_sql.query.selection import Selection

        checked = check_read_only(sql)
        table = self._run(checked, params)
        hints = self.empty_result_hints(checked) if table.num_rows == 0 else []
        for hint in hints:
            warnings.warn(hint, EmptyResultWarning, stacklevel=2)
        return Selection(table, self, checked, hints)

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

    def _run(self, sql: str, params: Any):
        cursor = self._cursor()
        try:
            result = cursor.execute(sql, params) if params is not None else cursor.execute(sql)
            return result.to_arrow_table() if result.description is not None else pa.table({})
        except duckdb.Error as error:
            raise QueryError(one_line(_with_position(cursor, error, sql, params), sql, self.all_columns,
                                     self.all_names)) from None
        finally:
            cursor.close()

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
        executable = find_duckdb_cli()
        init = self.write_init_sql()
        environment = {**os.environ, SHELL_CATALOG_ENV: str(self.directory)}
        return subprocess.call([executable, "-init", str(init), *args], env=environment)

    # --- sources ----------------------------------------------------------------------

    def source(self, instrument: str):
        """The opened source store of ``instrument`` (aia, hmi, eve), from the manifest; cached."""
        if instrument not in self._sources:
            from sdoml_sql.stores.source import open_store

            entry = (self.manifest.get("sources") or {}).get(instrument)
            if not entry or not entry.get("url"):
                raise CatalogError(f"catalog {self.directory} has no {instrument} source in manifest.json")
            try:
                self._sources[instrument] = open_store(entry["url"], storage_options=entry.get("storage_options") or None)
            except StoreError as error:
                if "does not exist" not in str(error):
                    raise
                raise StoreError(f"{error}; if it moved, re-point the catalog: sdoml-sql rebuild --catalog "
                                 f"{self.directory} --source {instrument}=NEW_PLACE") from None
        return self._sources[instrument]


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


def lock_down(connection: duckdb.DuckDBPyConnection, directories: list[Path]) -> None:
    """Allow file access under ``directories`` only, then lock the configuration."""
    listed = ", ".join(f"'{sql_string(d.as_posix().rstrip('/') + '/')}'" for d in directories)
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


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise CatalogError(f"no catalog at {directory}: build one with `sdoml-sql build`")
    manifest = read_manifest(directory)
    if manifest is None:
        raise CatalogError(f"{directory} is not a catalog: no manifest.json")
    return manifest


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdoml-sql"


_DEFAULT: dict[Path, Catalog] = {}


def open_catalog(catalog: Catalog | str | os.PathLike | None = None) -> Catalog:
    """``catalog`` itself, or the (cached) :class:`Catalog` of a directory / the default one."""
    if isinstance(catalog, Catalog):
        return catalog
    directory = Path(catalog if catalog is not None else default_catalog_dir()).expanduser().resolve()
    if directory not in _DEFAULT:
        _DEFAULT[directory] = Catalog(directory)
    return _DEFAULT[directory]


def query(sql: str, catalog: Catalog | str | os.PathLike | None = None, params: Any = None):
    """Run one read-only SQL statement on a catalog and return a
    :class:`~sdoml_sql.query.selection.Selection`.

    ``catalog`` is a :class:`Catalog` or a directory; by default ``$SDOML_CATALOG``, then
    :func:`sdoml_sql.config.default_catalog_dir`.
    """
    return open_catalog(catalog).query(sql, params)
