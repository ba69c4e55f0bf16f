"""The explorer as a Starlette (ASGI) application: pages, the JSON API, bounded work.

Pages are plain HTML, CSS and JavaScript from ``static/`` (loaded once, served by name from a
fixed list: no request path reaches the file system) that draw themselves from the JSON API:

=============================================  ==============================================
``/``, ``/sql?q=SQL``                          the SQL page
``/frame/{instrument}/{year}/{channel}/{idx}``  a frame page
``/timeline``                                  frames, gaps and flagged frames over time
``/api/query?sql=&offset=&limit=``             a page of rows (JSON)
``/api/query.csv``, ``/api/query.json``        every row, as ``sdoml-sql query`` prints them
``/api/frames/…/{idx}``                        the frame page's data (JSON)
``/api/frames/…/{idx}.png`` ``.fits``          the frame as ``maps()`` colours it; as FITS
``/api/frames/…/{idx}/thumbnail.png``          a 128×128 thumbnail
``/api/frames/…/{idx}/header``                 the FITS header (JSON)
``/api/coverage?start=&stop=&bucket=&gap=``    the timeline's data (JSON)
``/api/examples``                              the example queries (JSON)
=============================================  ==============================================

Work runs in threads, three pools: queries (the SQL page's DuckDB work), frame pages' data
(their neighbours in time: DuckDB too, but a backlog of frame pages must not hold up the SQL
page) and frames (store reads, maps, PNG and FITS), so a slow store delays frames only.  Each
pool runs at most ``workers`` requests and lets at most ``waiting`` wait, for at most
``wait_s`` seconds; beyond that the answer is 503 at once.  A frame read that takes longer
than ``frame_timeout`` answers 504 (its thread finishes in the background).  Every error is
one line: ``{"error": "…"}``.

Answers are kept per catalog version (:mod:`sdoml_sql.web.cache`): a kept answer is served
from the event loop without waiting for a worker; pictures, headers and frame data carry the
version in their ``ETag`` (``Cache-Control: no-cache``: browsers ask again and get ``304``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdoml_sql.exceptions import FetchError, QueryError, SdomlError, StoreError
from sdoml_sql.web import api
from sdoml_sql.web.cache import MISSING, Answers, LiveCatalog, etag, repeatable

#: The files of ``static/`` the server answers, by name, with their content types.
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
#: The pages: title and the file of their ``<main>``, each put in ``static/page.html`` (:func:`page_html`).
PAGES = {"sql": ("SQL", "sql.html"), "frame": ("frame", "frame.html"), "timeline": ("timeline", "timeline.html")}
#: The links of every page's navigation bar: page, path, label.
NAV_LINKS = (("sql", "/sql", "SQL"), ("timeline", "/timeline", "Timeline"))
#: The longest SQL text the API takes (the Python API parses anything; a URL or form this long is abuse).
MAX_SQL_CHARS = 1_000_000


@dataclass
class Settings:
    """How the explorer bounds its work (see the module docstring)."""

    query_timeout: float = 10.0
    frame_timeout: float = 30.0
    query_workers: int = 4
    page_workers: int = 2
    frame_workers: int = 4
    waiting: int = 64
    wait_s: float = 15.0
    cache_bytes: int = 128 * 1024 * 1024


class Busy(SdomlError):
    """Every worker of a pool is busy and its queue is full (HTTP 503)."""


class Late(SdomlError):
    """A request ran past its time limit (HTTP 504)."""


class DaemonThreads(Executor):
    """A fixed set of daemon threads: work stuck on an unreachable store cannot keep the
    process alive after the server stops (``ThreadPoolExecutor`` joins its threads at exit)."""

    def __init__(self, workers: int, name: str):
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        for n in range(workers):
            threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True).start()
        self.workers = workers

    def _serve(self) -> None:
        while (item := self.work.get()) is not None:
            function, args, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as error:  # handed to the awaiting request
                    future.set_exception(error)

    def submit(self, function, *args, **kwargs) -> Future:
        future: Future = Future()
        self.work.put((functools.partial(function, **kwargs) if kwargs else function, args, future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in range(self.workers):
            self.work.put(None)


class Pool:
    """Threads for one kind of work, with a bounded queue in front of them."""

    def __init__(self, name: str, workers: int, waiting: int, wait_s: float):
        self.name, self.workers, self.most_waiting, self.wait_s = name, workers, waiting, wait_s
        self.executor = DaemonThreads(workers, f"sdoml-web-{name}")
        self.free = asyncio.Semaphore(workers)
        self.waiting = 0

    async def run(self, function: Callable, *args, timeout: float | None = None):
        if self.free.locked() and self.waiting >= self.most_waiting:
            raise Busy(f"the explorer is busy: {self.workers} {self.name} requests running and {self.waiting} "
                       "waiting; try again in a moment")
        self.waiting += 1
        try:
            await asyncio.wait_for(self.free.acquire(), self.wait_s)
        except TimeoutError:
            raise Busy(f"the explorer is busy: waited {self.wait_s:g} s for one of {self.workers} "
                       f"{self.name} workers; try again in a moment") from None
        finally:
            self.waiting -= 1
        future = asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        future.add_done_callback(lambda _: self.free.release())  # the slot is freed when the thread is
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise Late(f"reading the frame took longer than {timeout:g} s: the store is slow or unreachable") from None

    def close(self) -> None:
        self.executor.shutdown(wait=False)


def static_text(name: str) -> str:
    return (resources.files("sdoml_sql.web") / "static" / name).read_text(encoding="utf-8")


def page_html(name: str) -> str:
    """A page: the common head and navigation bar of ``static/page.html`` around its ``<main>``."""
    title, file = PAGES[name]
    links = "".join(f'<a href="{path}"' + (' class="here"' if page == name else "") + f">{label}</a>"
                    for page, path, label in NAV_LINKS)
    return Template(static_text("page.html")).substitute(title=title, page=name, links=links,
                                                        main=static_text(file).strip())


def status_of(error: BaseException) -> int:
    """The HTTP status of an error raised on purpose."""
    if isinstance(error, api.NotFound):
        return 404
    if isinstance(error, (api.BadRequest, QueryError)):
        return 400
    if isinstance(error, Busy):
        return 503
    if isinstance(error, Late):
        return 504
    if isinstance(error, (StoreError, FetchError)):
        return 502
    return 400


def error_response(message: str, status: int) -> Response:
    return Response(json.dumps({"error": message}, ensure_ascii=False) + "\n", status,
                    media_type="application/json", headers=_busy_headers(status))


def _busy_headers(status: int) -> dict[str, str]:
    return {"Retry-After": "1"} if status == 503 else {}


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=str).encode()


def json_response(value: Any) -> Response:
    """``value`` as JSON (bytes already encoded go as they are)."""
    return Response(value if isinstance(value, bytes) else json_bytes(value), 200, media_type="application/json")


def as_json(function: Callable) -> Callable[..., bytes]:
    """``function`` whose answer is encoded as JSON (in the worker, and kept encoded)."""
    return lambda *args: json_bytes(function(*args))


def create_app(catalog, settings: Settings | None = None) -> Starlette:
    """The explorer over ``catalog`` (a :class:`~sdoml_sql.query.Catalog`)."""
    settings = settings or Settings()
    pages = {name: page_html(name) for name in PAGES}
    assets = {name: static_text(name) for name in STATIC_FILES}
    pools: dict[str, Pool] = {}
    live = LiveCatalog(catalog)
    answers = Answers(settings.cache_bytes)

    def pool(kind: str) -> Pool:  # made inside the server's event loop
        if kind not in pools:
            workers = {"query": settings.query_workers, "frame page": settings.page_workers,
                       "frame": settings.frame_workers}[kind]
            pools[kind] = Pool(kind, workers, settings.waiting, settings.wait_s)
        return pools[kind]

    async def queries(function: Callable, *args):
        return await pool("query").run(function, *args)

    async def page_data(function: Callable, *args):
        return await pool("frame page").run(function, *args)

    async def frames(function: Callable, *args):
        return await pool("frame").run(function, *args, timeout=settings.frame_timeout)

    async def kept(key: tuple, run: Callable, function: Callable, *args):
        """The answer kept under ``key`` (no worker needed), else ``run(function, *args)``, kept."""
        found = answers.peek(key)
        if found is MISSING:
            found = await run(function, *args)
            answers.put(key, found)
        return found

    def frame_of(request: Request):
        """``(catalog, version, frame)`` of a frame request, checked against the current manifest."""
        catalog, version = live.current()
        p = request.path_params
        return catalog, version, api.check_frame(catalog, p["instrument"], p["year"], p["channel"], p["idx"])

    def unchanged(request: Request, tag: str) -> Response | None:
        if tag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
        return None

    async def sql_of(request: Request) -> str:
        sql = request.query_params.get("sql")
        if sql is None and request.method == "POST":
            form = await request.form()
            sql = form.get("sql")
        if not isinstance(sql, str):
            raise api.BadRequest("no query: give the SQL as the sql parameter")
        if len(sql) > MAX_SQL_CHARS:
            raise api.BadRequest(f"query of {len(sql):,} characters is over the explorer's limit of {MAX_SQL_CHARS:,}")
        return sql

    # --- pages --------------------------------------------------------------------------

    async def sql_page(request: Request) -> Response:
        return Response(pages["sql"], media_type="text/html")

    async def frame_page(request: Request) -> Response:
        frame_of(request)
        return Response(pages["frame"], media_type="text/html")

    async def timeline_page(request: Request) -> Response:
        return Response(pages["timeline"], media_type="text/html")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            raise api.NotFound(f"no file {name!r}")
        return Response(assets[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    # --- API ----------------------------------------------------------------------------

    async def query(request: Request) -> Response:
        offset, limit = api.page_bounds(request.query_params.get("offset"), request.query_params.get("limit"))
        sql = await sql_of(request)
        catalog, version = live.current()
        if not repeatable(sql):
            return json_response(await queries(api.run_query, catalog, sql, offset, limit, settings.query_timeout))
        return json_response(await kept((version, "query", sql, offset, limit), queries, as_json(api.run_query),
                                        catalog, sql, offset, limit, settings.query_timeout))

    def download(format: str, media_type: str):
        async def endpoint(request: Request) -> Response:
            sql = await sql_of(request)
            catalog, _ = live.current()
            text = await queries(api.query_text, catalog, sql, format, settings.query_timeout)
            return Response(text, media_type=media_type,
                            headers={"Content-Disposition": f'attachment; filename="query.{format}"'})
        return endpoint

    async def examples(request: Request) -> Response:
        return json_response(api.examples())

    def frame_answer(kind: str, run: Callable, answer: Callable, media_type: str):
        """An answer about one frame, kept per catalog version and sent with its ``ETag``."""
        async def endpoint(request: Request) -> Response:
            catalog, version, frame = frame_of(request)
            tag = etag(version, frame.path, kind)
            if (not_modified := unchanged(request, tag)) is not None:
                return not_modified
            body = await kept((version, kind, frame.path), run, answer, catalog, frame)
            return Response(body, media_type=media_type, headers={"ETag": tag, "Cache-Control": "no-cache"})
        return endpoint

    def info_json(catalog, frame) -> bytes:
        return json_bytes(api.frame_info(catalog, frame, settings.query_timeout))

    def header_json(catalog, frame) -> bytes:
        return json_bytes({**frame.locator(), "header": api.frame_header(catalog, frame)})

    def picture(thumbnail: bool):
        return frame_answer("thumbnail" if thumbnail else "png", frames,
                            lambda catalog, frame: api.frame_png(catalog, frame, thumbnail), "image/png")

    async def frame_fits(request: Request) -> Response:
        catalog, _, frame = frame_of(request)
        name, data = await frames(api.frame_fits, catalog, frame)
        return Response(data, media_type="application/fits",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def coverage(request: Request) -> Response:
        q = request.query_params
        catalog, version = live.current()
        bounds = tuple(q.get(name) for name in ("start", "stop", "bucket", "gap"))
        return json_response(await kept((version, "coverage", *bounds), queries, as_json(api.coverage), catalog,
                                        *bounds, settings.query_timeout))

    frame_path = "/{instrument}/{year}/{channel}/{idx}"
    routes = [
        Route("/", sql_page), Route("/sql", sql_page), Route("/timeline", timeline_page),
        Route("/frame" + frame_path, frame_page),
        Route("/static/{name}", asset),
        Route("/api/query", query, methods=["GET", "POST"]),
        Route("/api/query.csv", download("csv", "text/csv"), methods=["GET", "POST"]),
        Route("/api/query.json", download("json", "application/x-ndjson"), methods=["GET", "POST"]),
        Route("/api/examples", examples),
        Route("/api/coverage", coverage),
        Route("/api/frames/{instrument}/{year}/{channel}/{idx}.png", picture(False)),
        Route("/api/frames/{instrument}/{year}/{channel}/{idx}.fits", frame_fits),
        Route("/api/frames" + frame_path + "/thumbnail.png", picture(True)),
        Route("/api/frames" + frame_path + "/header", frame_answer("header", frames, header_json, "application/json")),
        Route("/api/frames" + frame_path, frame_answer("info", page_data, info_json, "application/json")),
    ]

    async def sdoml_error(request: Request, error: SdomlError) -> Response:
        return error_response(str(error), status_of(error))

    async def not_found(request: Request, error: Exception) -> Response:
        return error_response(f"no page {request.url.path[:200]!r}", 404)

    async def unexpected(request: Request, error: Exception) -> Response:
        first_line = str(error).splitlines()[0] if str(error) else ""
        return error_response(f"internal error: {type(error).__name__}: {first_line}", 500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for running in pools.values():
            running.close()

    app = Starlette(routes=routes, exception_handlers={SdomlError: sdoml_error, 404: not_found, 405: not_found,
                                                      Exception: unexpected},
                    lifespan=lifespan, max_body_size=2 * MAX_SQL_CHARS)
    app.state.catalog = live
    app.state.settings = settings
    app.state.answers = answers
    return app
