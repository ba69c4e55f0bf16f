"""Where a catalog lives, and its manifest: light enough for ``sdoml-sql query`` to import.

The builder writes the manifest (:mod:`sdoml_sql.catalog_builder.build`); the query stage
reads it through :func:`read_manifest` without importing the builder (pyarrow compute,
numpy, the store layer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from sdoml_sql.exceptions import CatalogError

MANIFEST = "manifest.json"


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The catalog's manifest, or ``None`` if the directory has none."""
    path = Path(directory) / MANIFEST
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as error:
        raise CatalogError(f"catalog {directory}: {MANIFEST} is corrupt ({error})") from None
