"""Settings shared by every stage: where the catalog lives by default."""

from __future__ import annotations

import os
from pathlib import Path

CATALOG_ENV = "SDOML_CATALOG"


def default_catalog_dir() -> Path:
    """The catalog directory used when none is given.

    ``$SDOML_CATALOG`` if set, else ``$XDG_DATA_HOME/sdoml-sql/catalog`` (by default
    ``~/.local/share/sdoml-sql/catalog``).
    """
    if os.environ.get(CATALOG_ENV):
        return Path(os.environ[CATALOG_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "sdoml-sql" / "catalog"


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


def cache_dir() -> Path:
    """The per-user cache directory of sdoml-sql: ``$XDG_CACHE_HOME/sdoml-sql`` (by default
    ``~/.cache/sdoml-sql``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdoml-sql"


def duckdb_config() -> dict[str, str]:
    """The settings every DuckDB connection of sdoml-sql opens with: ``temp_directory`` (this
    process's own directory under ``$SDOML_DUCKDB_TEMP``, default ``CACHE/duckdb-tmp``,
    removed when the process ends), ``max_temp_directory_size`` (``$SDOML_DUCKDB_MAX_TEMP``,
    default 4GB) and ``memory_limit`` (``$SDOML_DUCKDB_MEMORY``, default 25 % of the RAM)."""
    return {"temp_directory": str(_process_temp_directory()),
            "max_temp_directory_size": os.environ.get(DUCKDB_MAX_TEMP_ENV, "").strip() or DEFAULT_DUCKDB_MAX_TEMP,
            "memory_limit": _memory_limit(os.environ.get(DUCKDB_MEMORY_ENV, "").strip() or DEFAULT_DUCKDB_MEMORY)}


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

    base = Path(os.environ.get(DUCKDB_TEMP_ENV, "").strip() or cache_dir() / "duckdb-tmp").expanduser()
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
