"""DuckDB connection helpers of the query stage: locking a connection down, Ctrl-C and
time limits, reading results (rows, pages), remote reads in small blocks, the DuckDB shell."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import duckdb

from sdoml_sql.exceptions import CatalogError, QueryError
from sdoml_sql.query.sqlfiles import sql_string

# Catalog._run fetches Arrow from an executed statement rather than from a relation
# (con.sql(q).to_arrow_table()), which binds the statement twice: once to make the relation,
# once to run it. Binding a view over many Parquet files costs milliseconds, while the copy
# DuckDB warns about is cheap for all but very large and wide results. Measured on the
# bench_serve catalog (DuckDB 2.0, CPU a query): a day of `frames` (1,935 rows) 25.7 ms
# executed vs 29.2 ms as a relation; a week of `aia` (1,504 rows x 184 columns) 41.0 vs 47.8 ms;
# reading through to_arrow_reader() warns and costs the same. The warning is silenced for the
# calls of the catalog and of this module (_python_rows, _rows_between) only.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning,
                        module=r"sdoml_sql\.query\.(catalog|connection)")


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
    # events waited on, not the thread: an interrupted join() marks it stopped
    began, finished = threading.Event(), threading.Event()

    def target():
        began.set()
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error
        finally:
            finished.set()

    worker = threading.Thread(target=target, name="sdoml-sql-query", daemon=True)
    try:
        worker.start()  # inside the try: a Ctrl-C while it waits for the thread to begin must stop the query too
        while not finished.wait(0.25):
            pass
        worker.join()  # finished: let it end before going on (a thread still unwinding at exit aborts)
    except KeyboardInterrupt:
        deadline = time.monotonic() + 10
        if began.wait(1):  # else the thread never began: there is no query to stop
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


#: Bytes fetched per read of a remote Parquet file: DuckDB asks for footers and column chunks;
#: fsspec's defaults (5-50 MB blocks) would fetch whole files.
READ_BLOCK_BYTES = 64 * 1024


def _read_in_small_blocks(fs) -> None:
    for name in ("default_block_size", "block_size"):
        if hasattr(fs, name):
            setattr(fs, name, READ_BLOCK_BYTES)


def _posix(directory: Path | str) -> str:
    return directory.as_posix() if isinstance(directory, Path) else directory
