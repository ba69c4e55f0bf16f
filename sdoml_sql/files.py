"""Writing a file whole or not at all: the one safe-write rule of every stage.

A file is written under a temporary sibling name (:func:`partial_name`) and renamed onto its
own name with one ``os.replace`` when it is complete, so a reader sees the old file or the
new one, never half of one, and a write that fails part-way leaves no temporary behind.
Missing parent directories are created; an existing output (a file or a directory such as
``OUT.zarr``) is replaced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

#: What marks a temporary name (``.data.parquet.partial-1f2e3d4c`` on the way to ``data.parquet``).
PARTIAL_MARK = ".partial-"


def partial_name(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """A fresh temporary sibling of ``path``, hidden (a leading dot) and unique:
    ``.data.parquet.partial-1f2e3d4c``, so no glob of the catalog's ``*.parquet`` (DuckDB's
    matches hidden files) ever reads a temporary.  ``keep_suffix`` puts the suffix last
    (``.movie.partial-1f2e3d4c.mp4``) for writers that choose the format from it (ffmpeg,
    matplotlib)."""
    path = Path(path)
    mark = f"{PARTIAL_MARK}{uuid.uuid4().hex[:8]}"
    if keep_suffix:
        return path.with_name(f".{path.stem}{mark}{path.suffix}")
    return path.with_name(f".{path.name}{mark}")


@contextlib.contextmanager
def written_atomically(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (:func:`partial_name`; by default with
    the suffix last, as output writers need), moved onto ``path`` only if the block succeeds;
    on any error (Ctrl-C included) the temporary is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_name(path, keep_suffix)
    try:
        yield partial
    except BaseException:
        remove(partial)
        raise
    move_into_place(partial, path)


def write_atomically(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` whole or not at all; return ``path``."""
    path = Path(path)
    with written_atomically(path, keep_suffix=False) as partial:
        partial.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def move_into_place(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename a complete file (or directory) ``staged`` onto ``final`` in one step, creating
    ``final``'s parents; a directory at ``final``, or a file or link in a staged directory's way,
    is removed first (a rename cannot replace those)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    elif Path(staged).is_dir() and (final.exists() or final.is_symlink()):
        final.unlink()
    os.replace(staged, final)


def remove(path: str | os.PathLike) -> None:
    """Remove a file or a directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


__all__ = ["PARTIAL_MARK", "move_into_place", "partial_name", "remove", "write_atomically", "written_atomically"]
