"""Run the explorer for the tests: a real uvicorn server on a free 127.0.0.1 port, in a thread."""

from __future__ import annotations

import contextlib
import io
import threading
import time

import numpy as np
import uvicorn

from emulators import free_port, wait_until


@contextlib.contextmanager
def running_server(catalog, settings=None):
    """Serve ``catalog`` (a Catalog) with ``settings``; yield the base URL (``http://127.0.0.1:PORT``)."""
    from sdoml_sql.web import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(catalog, settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the explorer")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def timed_get(session, url: str, **params):
    """``(response, seconds)`` of one GET."""
    started = time.perf_counter()
    response = session.get(url, params=params, timeout=60)
    return response, time.perf_counter() - started


def png_pixels(data: bytes) -> np.ndarray:
    """A PNG's pixels as ``(H, W, 4)`` uint8."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
