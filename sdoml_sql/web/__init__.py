"""Stage 8, the web explorer: a catalog in a browser (``sdoml-sql serve``).

In: a catalog (local or remote) and HTTP requests.  Out: HTML pages (plain HTML, CSS and a
little JavaScript shipped in ``static/``), a JSON API that mirrors them, PNG pictures and
FITS files of frames.

Modules: :mod:`~sdoml_sql.web.api` (what each request answers, as functions of a catalog),
:mod:`~sdoml_sql.web.app` (the Starlette application: routes, bounded thread pools, errors)
and :mod:`~sdoml_sql.web.server` (uvicorn, ``--get``).

May import: :mod:`sdoml_sql.query` (every query goes through ``Catalog.page``/``Catalog.text``
on the locked-down connection), :mod:`sdoml_sql.fido` (FITS names as ``Fido.fetch`` gives
them), :mod:`sdoml_sql.quality`, :mod:`sdoml_sql.fetch` and the earlier stages.
"""

from sdoml_sql.web.app import Settings, create_app
from sdoml_sql.web.server import get, serve

__all__ = ["Settings", "create_app", "get", "serve"]
