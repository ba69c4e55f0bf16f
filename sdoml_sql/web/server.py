"""Run the explorer: uvicorn on a local port (:func:`serve`), or one request in-process (:func:`get`)."""

from __future__ import annotations

import asyncio
import threading
import time
import webbrowser
from urllib.parse import unquote, urlsplit

from sdoml_sql.exceptions import SdomlError
from sdoml_sql.web.app import Settings, create_app

#: Connections uvicorn holds at once; past it a new one is answered 503.
MAX_CONNECTIONS = 256


def serve(catalog, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          settings: Settings | None = None, ready=None) -> None:
    """Serve the explorer over ``catalog`` on ``http://host:port/`` until interrupted.

    ``host`` is the loopback address unless told otherwise: anyone who can reach the port can
    run read-only queries.  ``open_browser`` opens the SQL page in the default browser;
    ``ready(url)`` is called once the server listens.
    """
    import uvicorn

    app = create_app(catalog, settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
            bound = sockets[0].getsockname()[1] if sockets else port
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}/"
            if ready:
                ready(url)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    except SystemExit as stop:  # uvicorn exits 1 when it cannot bind
        if stop.code:
            raise SdomlError(f"cannot serve on {host}:{port}: the address is in use or not available") from None


def get(catalog, path: str, settings: Settings | None = None) -> tuple[int, str, bytes]:
    """Answer one GET request for ``path`` (``/api/query?sql=…``) in-process, without a
    server: ``(status, content type, body)``."""
    app = create_app(catalog, settings)
    return asyncio.run(_request(app, path))


async def _request(app, path: str) -> tuple[int, str, bytes]:
    parts = urlsplit(path if path.startswith("/") else "/" + path)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(parts.path), "raw_path": parts.path.encode(), "query_string": parts.query.encode(),
             "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 0),
             "server": ("127.0.0.1", 0)}
    answer = {"status": 500, "type": "", "body": bytearray()}
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["type"] = dict(message.get("headers", [])).get(b"content-type", b"").decode()
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["type"], bytes(answer["body"])
