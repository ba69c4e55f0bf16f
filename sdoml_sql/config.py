"""Every setting of sdoml-sql, in one place: where the catalog lives, how stores are read,
how long a query may run.

Each setting is an argument of the Python function that uses it; when the argument is not
given, the value comes from the command line's options (:func:`using`, set by ``cli.py`` for
one command) or else from its ``SDOML_*`` environment variable, read here and nowhere else.

| setting | argument | option | environment |
|---|---|---|---|
| catalog | ``catalog=`` | ``--catalog`` | ``SDOML_CATALOG`` |
| store-read timeout (s)¹ | ``store_timeout=`` | ``--store-timeout`` (``--timeout``) | ``SDOML_TIMEOUT`` |
| store-read retries | ``retries=`` | ``--retries`` | ``SDOML_RETRIES`` |
| chunk cache directory | ``cache_dir=`` | ``--cache-dir`` | ``SDOML_CACHE`` |
| object-store endpoint | ``storage_options`` | ``--endpoint-url`` | ``SDOML_ENDPOINT_URL``² |
| GCS billing project | ``billing_project=`` | ``--billing-project`` | ``SDOML_BILLING_PROJECT`` |
| mirror of preset names | ``mirror=`` | ``--mirror`` | ``SDOML_MIRROR`` |
| query time limit (s) | ``query_timeout=`` (``timeout=``) | ``--query-timeout`` | ``SDOML_QUERY_TIMEOUT`` |
| DuckDB spill directory³ | | | ``SDOML_DUCKDB_TEMP`` (``~/.cache/sdoml-sql/duckdb-tmp``) |
| DuckDB spill limit per connection | | | ``SDOML_DUCKDB_MAX_TEMP`` (``4GB``) |
| DuckDB memory limit per connection | | | ``SDOML_DUCKDB_MEMORY`` (``25%`` of the RAM) |

¹ seconds per object, retries included.  ² or ``SDOML_S3_ENDPOINT``, ``AWS_ENDPOINT_URL``,
``STORAGE_EMULATOR_HOST``.  ³ a per-process directory is made under it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sdoml_sql.exceptions import SdomlError

CATALOG_ENV = "SDOML_CATALOG"
STORE_TIMEOUT_ENV = "SDOML_TIMEOUT"
RETRIES_ENV = "SDOML_RETRIES"
CACHE_ENV = "SDOML_CACHE"
ENDPOINT_ENV = "SDOML_ENDPOINT_URL"  # any remote protocol; wins over the protocol-specific ones
S3_ENDPOINT_ENVS = ("SDOML_S3_ENDPOINT", "AWS_ENDPOINT_URL")
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # the variable gcsfs and the Google clients honour
BILLING_ENV = "SDOML_BILLING_PROJECT"
MIRROR_ENV = "SDOML_MIRROR"
QUERY_TIMEOUT_ENV = "SDOML_QUERY_TIMEOUT"
#: Set by ``sdoml-sql shell`` for the DuckDB shell it starts: the catalog ``init.sql`` reads.
SHELL_CATALOG_ENV = "SDOML_SHELL_CATALOG"

#: What the environment variable of each setting :func:`using` can override is called.
SETTING_ENVS = {"store_timeout": STORE_TIMEOUT_ENV, "retries": RETRIES_ENV, "cache_dir": CACHE_ENV,
                "endpoint_url": ENDPOINT_ENV}

_given: dict[str, Any] = {}


@contextlib.contextmanager
def using(**settings: Any) -> Iterator[None]:
    """Settings given for the block (the command line's options: ``store_timeout``,
    ``retries``, ``cache_dir``, ``endpoint_url``; ``None`` means not given): they win over the
    environment for every store the block opens, those named in a manifest included."""
    unknown = set(settings) - set(SETTING_ENVS)
    if unknown:
        raise TypeError(f"unknown setting {sorted(unknown)[0]!r}: choose from {', '.join(SETTING_ENVS)}")
    before = dict(_given)
    _given.update({name: value for name, value in settings.items() if value is not None})
    try:
        yield
    finally:
        _given.clear()
        _given.update(before)


def setting(name: str, default: Any = None) -> Any:
    """A setting given with :func:`using`, else the text of its environment variable
    (stripped; unset or empty is ``default``)."""
    if name in _given:
        return _given[name]
    return env_text(SETTING_ENVS[name]) or default


def env_text(name: str) -> str | None:
    """An environment variable's value, stripped; None when unset or empty."""
    return os.environ.get(name, "").strip() or None


def first_env(*names: str) -> str | None:
    """The first of the environment variables ``names`` that is set and not empty."""
    return next((value for value in map(env_text, names) if value), None)


def number(value: Any, kind: type, what: str, error: type[SdomlError] = SdomlError):
    """``value`` (a number, or text from the environment) as ``kind``; a one-line ``error``
    naming ``what`` when it is not one."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise error(f"{what}={value!r} is not a valid {kind.__name__}") from None


def store_timeout(given: float | None = None, error: type[SdomlError] = SdomlError) -> float | None:
    """Seconds one store object may take (``given``, else ``--store-timeout``, else
    ``$SDOML_TIMEOUT``); None for the store's default."""
    value = given if given is not None else setting("store_timeout")
    return None if value is None else number(value, float, STORE_TIMEOUT_ENV if given is None else "store_timeout",
                                             error)


def store_retries(given: int | None = None, error: type[SdomlError] = SdomlError) -> int | None:
    """Retries of a failed store read (``given``, else ``--retries``, else ``$SDOML_RETRIES``)."""
    value = given if given is not None else setting("retries")
    return None if value is None else number(value, int, RETRIES_ENV if given is None else "retries", error)


def chunk_cache_dir(given: str | os.PathLike | None = None) -> str | None:
    """Where fetched chunks are kept (``given``, else ``--cache-dir``, else ``$SDOML_CACHE``)."""
    value = given or setting("cache_dir")
    return str(value) if value else None


def query_time_limit(given: float | None = None, error: type[SdomlError] = SdomlError) -> float | None:
    """Seconds a query may run: ``given``, else ``$SDOML_QUERY_TIMEOUT``, else None (no limit)."""
    if given is None:
        text = env_text(QUERY_TIMEOUT_ENV)
        if text is None:
            return None
        try:
            given = float(text)
        except ValueError:
            raise error(f"${QUERY_TIMEOUT_ENV} must be a number of seconds, not {text!r}") from None
    if not given > 0:
        raise error(f"the query time limit must be a positive number of seconds, not {given!r}")
    return float(given)


def default_catalog_dir() -> Path:
    """The catalog directory used when none is given.

    ``$SDOML_CATALOG`` if set, else ``$XDG_DATA_HOME/sdoml-sql/catalog`` (by default
    ``~/.local/share/sdoml-sql/catalog``).
    """
    if env_text(CATALOG_ENV):
        return Path(os.environ[CATALOG_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "sdoml-sql" / "catalog"


def user_cache_dir() -> Path:
    """The per-user cache (``$XDG_CACHE_HOME/sdoml-sql``, by default ``~/.cache/sdoml-sql``):
    where what a read-only catalog directory cannot hold is written instead."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdoml-sql"


# --- DuckDB resources ------------------------------------------------------------------------
# DuckDB's defaults spill to `.tmp` in the working directory, up to 90 % of the free disk, and
# use 80 % of the RAM; every connection sdoml-sql opens takes these settings instead.

#: Directory under which each process keeps its DuckDB spill files (default: the user cache).
DUCKDB_TEMP_ENV = "SDOML_DUCKDB_TEMP"
#: Most disk the spill files of one connection may take (a DuckDB size: ``4GB``, ``500MB``).
DUCKDB_MAX_TEMP_ENV = "SDOML_DUCKDB_MAX_TEMP"
DEFAULT_DUCKDB_MAX_TEMP = "4GB"
#: Memory one connection may use before it spills (a DuckDB size, or a percentage of the RAM).
DUCKDB_MEMORY_ENV = "SDOML_DUCKDB_MEMORY"
DEFAULT_DUCKDB_MEMORY = "25%"


def duckdb_config() -> dict[str, str]:
    """The settings every DuckDB connection of sdoml-sql opens with: ``temp_directory`` (this
    process's own directory under ``$SDOML_DUCKDB_TEMP``, default ``CACHE/duckdb-tmp``,
    removed when the process ends), ``max_temp_directory_size`` (``$SDOML_DUCKDB_MAX_TEMP``,
    default 4GB) and ``memory_limit`` (``$SDOML_DUCKDB_MEMORY``, default 25 % of the RAM)."""
    return {"temp_directory": str(_process_temp_directory()),
            "max_temp_directory_size": env_text(DUCKDB_MAX_TEMP_ENV) or DEFAULT_DUCKDB_MAX_TEMP,
            "memory_limit": _memory_limit(env_text(DUCKDB_MEMORY_ENV) or DEFAULT_DUCKDB_MEMORY)}


def _memory_limit(text: str) -> str:
    if not text.endswith("%"):
        return text
    try:
        share = float(text[:-1]) / 100
    except ValueError:
        return text  # DuckDB names the bad value
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(int(total * share) // 2**20, 64)}MB"


_TEMP: list[Path] = []


def _process_temp_directory() -> Path:
    """This process's spill directory (created lazily by DuckDB), removed at exit; directories
    left by processes that no longer run are removed the first time."""
    pid = os.getpid()
    if _TEMP and _TEMP[0].name.startswith(f"{pid}-"):
        return _TEMP[0]
    import atexit
    import shutil
    import uuid

    base = Path(env_text(DUCKDB_TEMP_ENV) or user_cache_dir() / "duckdb-tmp").expanduser()
    for left in base.glob("*-*") if base.is_dir() else ():
        owner = left.name.split("-", 1)[0]
        if owner.isdigit() and not _running(int(owner)):
            shutil.rmtree(left, ignore_errors=True)
    _TEMP[:] = [base.resolve() / f"{pid}-{uuid.uuid4().hex[:8]}"]
    atexit.register(shutil.rmtree, _TEMP[0], True)
    return _TEMP[0]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
