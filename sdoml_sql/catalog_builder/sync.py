"""A local mirror of a remote catalog: ``sync_catalog(SRC, DIR)`` copies what changed.

Each object of the source catalog is identified by its ETag (or generation, md5, else
size and modification time); ``DIR/.sync.json`` records what the mirror holds, so an
unchanged object is not downloaded again.  Files are written under temporary names and
renamed into place; the manifest is replaced last, and files it no longer names are
removed after it: a reader of ``DIR`` sees the old catalog or the new one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sdoml_sql.catalog_builder.layout import FRAME_INSTRUMENTS, INIT_SQL, LOCK_FILE, MANIFEST, Manifest, identity
from sdoml_sql.catalog_builder.location import open_location
from sdoml_sql.exceptions import CatalogError
from sdoml_sql.files import write_atomically

STATE_FILE = ".sync.json"
SKIPPED = (LOCK_FILE, STATE_FILE, INIT_SQL)


@dataclass
class SyncReport:
    """What a sync did: objects downloaded, unchanged, removed; bytes downloaded."""

    source: str
    directory: Path
    downloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people."""
        return (f"synced {self.source} to {self.directory}: {len(self.downloaded)} downloaded "
                f"({self.bytes / 1e6:,.1f} MB), {len(self.unchanged)} unchanged, {len(self.removed)} removed "
                f"in {self.seconds:.1f} s")


def sync_catalog(source: str, directory: str | os.PathLike, *, progress: bool = True,
                 store_timeout: float | None = None, retries: int | None = None) -> SyncReport:
    """Copy or update the catalog at ``source`` (a URL or directory) into ``directory``;
    ``store_timeout`` and ``retries`` bound each read of a remote ``source`` (unset:
    :mod:`sdoml_sql.config`)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    remote = open_location(source, timeout=store_timeout, retries=retries)
    target = Path(directory).expanduser().resolve()
    report = SyncReport(source=remote.url, directory=target)
    manifest = remote.read_bytes(MANIFEST)
    if manifest is None:
        raise CatalogError(f"{remote.url} is not a catalog: no {MANIFEST}")
    # a remote catalog keeps the previous build's frame files for readers still on the
    # previous manifest: only the files this manifest names are mirrored
    named = Manifest(orjson.loads(manifest)).frame_files()
    listing = {path: info for path, info in remote.listing().items()
               if path != MANIFEST and not path.rsplit("/", 1)[-1].startswith(SKIPPED)
               and (path.split("/", 1)[0] not in FRAME_INSTRUMENTS or path in named)}
    target.mkdir(parents=True, exist_ok=True)
    state = _read_state(target)
    fresh: dict[str, str] = {}
    for path, info in tqdm(sorted(listing.items()), desc="sync", unit="file", disable=not progress):
        fresh[path] = _identity(info)
        if state.get(path) == fresh[path] and (target / path).is_file():
            report.unchanged.append(path)
            continue
        data = remote.read_bytes(path)
        write_atomically(target / path, data)
        report.downloaded.append(path)
        report.bytes += len(data)
    write_atomically(target / MANIFEST, manifest)  # the commit point
    for path in sorted(set(state) - set(fresh)):
        (target / path).unlink(missing_ok=True)
        report.removed.append(path)
    write_atomically(target / STATE_FILE, orjson.dumps(fresh, option=orjson.OPT_INDENT_2))
    report.seconds = time.perf_counter() - started
    return report


def _identity(info: dict[str, Any]) -> str:
    return orjson.dumps(identity(info), option=orjson.OPT_SORT_KEYS).decode()


def _read_state(target: Path) -> dict[str, str]:
    try:
        return orjson.loads((target / STATE_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}


__all__ = ["sync_catalog", "SyncReport"]
