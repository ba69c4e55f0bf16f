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
