"""Stage 6, SQL over the catalog: the front door that turns SQL into a selection.

In: a catalog directory (Parquet + ``manifest.json``) and the views and macros in ``sql/``.
Out: a :class:`~sdoml_sql.query.selection.Selection` — the rows DuckDB returned and the
frame locators (instrument, year, channel, idx) they name.  A selection's verbs
(``fetch``, ``maps``, ``animate`` …) hand those locators to the stages below, which is why
this stage sits on top of :mod:`sdoml_sql.fetch` in the import order although SQL comes
before fetching in the data's path.

Modules: :mod:`~sdoml_sql.query.sqlguard` (one read-only statement, one-line errors),
:mod:`~sdoml_sql.query.catalog` (DuckDB views, macros, locked connections, the shell) and
:mod:`~sdoml_sql.query.selection`.

May import: every earlier stage (:mod:`sdoml_sql.fetch`, :mod:`sdoml_sql.catalog_builder`,
:mod:`sdoml_sql.stores`) and the base modules.

``sdoml_sql.query`` is both this subpackage and the function
:func:`~sdoml_sql.query.catalog.query`: ``sdoml_sql.query("SELECT …")`` runs a statement.
"""

import importlib
import sys
import types

from sdoml_sql.query.catalog import Catalog, open_catalog, query, query_text

__all__ = ["Catalog", "Selection", "open_catalog", "query", "query_text"]


class _CallableModule(types.ModuleType):
    # Importing this subpackage binds ``sdoml_sql.query`` to the module, which would hide
    # the public function of the same name; calling the module runs the function instead.
    def __call__(self, sql, catalog=None, params=None, timeout=None):
        return query(sql, catalog, params, timeout)

    def __getattr__(self, name):
        # Selection (pyarrow, pandas on use) is imported on first use: `sdoml-sql query`
        # prints without it.
        if name == "Selection":
            return importlib.import_module("sdoml_sql.query.selection").Selection
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _CallableModule
