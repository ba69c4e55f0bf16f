"""The catalog's views and macros as SQL text, and the DuckDB shell's ``init.sql``.

:class:`CatalogViews` is the "SQL text" part of :class:`~sdoml_sql.query.catalog.Catalog`:
the ``CREATE VIEW`` statements for a catalog's files, the script of every view and macro,
and the relocatable ``init.sql`` the DuckDB shell starts from.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from sdoml_sql.catalog_builder.layout import INIT_SQL, Manifest
from sdoml_sql.config import SHELL_CATALOG_ENV, user_cache_dir
from sdoml_sql.exceptions import CatalogError
from sdoml_sql.query import scans
from sdoml_sql.query.sqlfiles import read_sql, render, sql_string

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


class CatalogViews:
    """The SQL text of a catalog's views and macros; a base of
    :class:`~sdoml_sql.query.catalog.Catalog`, which provides ``location`` (the opened
    catalog location), ``directory`` (its ``Path``, or URL when remote), ``manifest`` (a
    :class:`Manifest`), ``_copies`` (``{view: copy file}``) and ``_refuse_remote_shell()``."""

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


def _locator(base: str):
    """A function from a path relative to the catalog to the inside of the SQL string literal
    that names it under ``base`` (itself the inside of a literal, or an SQL expression splice)."""
    return lambda relative: f"{base}/{sql_string(relative)}"


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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
