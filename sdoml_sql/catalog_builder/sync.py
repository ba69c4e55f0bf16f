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

from sdoml_sql.catalog_builder.location import MANIFEST, open_location, partition_file
from sdoml_sql.exceptions import CatalogError

STATE_FILE = ".sync.json"
SKIPPED = (".lock", STATE_FILE, "init.sql")
IDENTITY_FIELDS = ("ETag", "etag", "generation", "md5Hash", "md5", "mtime", "LastModified", "updated")


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


def sync_catalog(source: str, directory: str | os.PathLike, *, progress: bool = True) -> SyncReport:
    """Copy or update the catalog at ``source`` (a URL or directory) into ``directory``."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    remote = open_location(source)
    target = Path(directory).expanduser().resolve()
    report = SyncReport(source=remote.url, directory=target)
    manifest = remote.read_bytes(MANIFEST)
    if manifest is None:
        raise CatalogError(f"{remote.url} is not a catalog: no {MANIFEST}")
    named = _frame_files(orjson.loads(manifest))
    listing = {path: info for path, info in remote.listing().items()
               if path != MANIFEST and not path.rsplit("/", 1)[-1].startswith(SKIPPED)
               and (path.split("/", 1)[0] not in ("aia", "hmi") or path in named)}
    target.mkdir(parents=True, exist_ok=True)
    state = _read_state(target)
    fresh: dict[str, str] = {}
    for path, info in tqdm(sorted(listing.items()), desc="sync", unit="file", disable=not progress):
        fresh[path] = _identity(info)
        if state.get(path) == fresh[path] and (target / path).is_file():
            report.unchanged.append(path)
            continue
        data = remote.read_bytes(path)
        _write_atomically(target / path, data)
        report.downloaded.append(path)
        report.bytes += len(data)
    _write_atomically(target / MANIFEST, manifest)  # the commit point
    for path in sorted(set(state) - set(fresh)):
        (target / path).unlink(missing_ok=True)
        report.removed.append(path)
    _write_atomically(target / STATE_FILE, orjson.dumps(fresh, option=orjson.OPT_INDENT_2))
    report.seconds = time.perf_counter() - started
    return report


def _frame_files(manifest: dict[str, Any]) -> set[str]:
    """The frame partition files the manifest names, and the files it retired (a remote
    catalog keeps the previous build's for :data:`~sdoml_sql.catalog_builder.remote.RETIRED_GRACE_S`,
    for readers still on the previous manifest: a mirror keeps them as long)."""
    named = {partition_file(key, entry) for key, entry in (manifest.get("partitions") or {}).items()
             if entry.get("instrument") in ("aia", "hmi")}
    return named | set(manifest.get("retired_files") or {})


def _identity(info: dict[str, Any]) -> str:
    stamp = {name: str(info[name]) for name in IDENTITY_FIELDS if info.get(name) is not None}
    stamp["size"] = str(info.get("size"))
    return orjson.dumps(stamp, option=orjson.OPT_SORT_KEYS).decode()


def _read_state(target: Path) -> dict[str, str]:
    try:
        return orjson.loads((target / STATE_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.sync-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


__all__ = ["sync_catalog", "SyncReport"]
