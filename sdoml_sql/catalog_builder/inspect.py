"""Looking inside a store: its tree of groups and arrays, and the keywords of one array."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdoml_sql.catalog_builder.harvest import keyword_column, read_attrs
from sdoml_sql.exceptions import StoreError
from sdoml_sql.stores.source import Source, open_store


def tree(url: str | Source, **open_options: Any) -> str:
    """The store's groups and arrays with shapes, dtypes and chunks, like ``zarr``'s ``tree()``.

    Only ``.zgroup``/``.zarray`` files are read, never attributes, so it is fast on the full
    stores.
    """
    source = url if isinstance(url, Source) else open_store(url, **open_options)
    lines = [source.url]
    _tree_lines(source, "", "", lines)
    return "\n".join(lines)


def _tree_lines(source: Source, group: str, indent: str, lines: list[str]) -> None:
    groups, arrays = source.children(group)
    entries = [(name, True) for name in groups] + [(name, False) for name in arrays]
    for position, (name, is_group) in enumerate(entries):
        last = position == len(entries) - 1
        branch, extension = ("└── ", "    ") if last else ("├── ", "│   ")
        path = f"{group}/{name}".strip("/")
        if is_group:
            lines.append(f"{indent}{branch}{name}")
            _tree_lines(source, path, indent + extension, lines)
        else:
            lines.append(f"{indent}{branch}{name} {_describe_array(source.zarray(path))}")


def _describe_array(meta: dict[str, Any]) -> str:
    shape = tuple(meta["shape"])
    chunks = tuple(meta["chunks"])
    return f"{shape} {np.dtype(meta['dtype']).name} chunks={chunks}"


def keywords(url: str | Source, array_path: str, **open_options: Any) -> list[dict[str, Any]]:
    """The per-frame header keys of one array: name, catalog type, value count, an example.

    ``type`` is what the catalog column will be (BIGINT, DOUBLE, VARCHAR, TIMESTAMP, NULL);
    ``values`` is the list length (different from the frame count for ragged keys, whose type
    is ``ragged``).
    """
    source = url if isinstance(url, Source) else open_store(url, **open_options)
    frames = int(source.zarray(array_path)["shape"][0]) if _is_array(source, array_path) else None
    if frames is None:
        raise StoreError(f"store {source.url}: no array {array_path}")
    attrs, _ = read_attrs(source, array_path)
    rows = []
    for key, values in attrs.items():
        rows.append(_keyword_row(key, values, frames, f"store {source.url}: array {array_path}"))
    return rows


def _is_array(source: Source, array_path: str) -> bool:
    try:
        source.zarray(array_path)
    except StoreError:
        return False
    return True


def _keyword_row(key: str, values: Any, frames: int, where: str) -> dict[str, Any]:
    if not isinstance(values, list):
        return {"key": key, "type": "scalar", "values": 1, "example": repr(values)}
    example = next((v for v in values if v is not None), None)
    if len(values) != frames:
        kind = "ragged"
    else:
        info = keyword_column(key, values, where).info
        kind = info["type"] + (f" ({info['scale']})" if info.get("scale") == "TAI" else "")
    return {"key": key, "type": kind, "values": len(values), "example": repr(example)}
