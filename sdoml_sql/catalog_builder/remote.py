"""Building into an object store: partitions under new names, the manifest as commit point,
and a lock object instead of ``flock``.

A remote build harvests into a private temporary directory (the driver's, or each dask
worker's: no shared disk), uploads every frame partition under a name no reader uses yet
(``aia/year=2010/channel=171A/data-<build>.parquet``), then writes ``manifest.json`` — one
PUT, atomic — naming the new files.  A reader opens the manifest and then only the files it
names, so it sees the old catalog or the new one, never a mix; a build killed before the
manifest leaves the old catalog as it was.  A file a rebuild replaced is kept for
:data:`RETIRED_GRACE_S` (15 min) for readers still on an older manifest, then deleted by a
later build; files no manifest named (a killed build's) are deleted at the next commit.  EVE tables and ``array_attrs`` keep fixed names and are
replaced object by object.

One build at a time: ``.lock`` holds the builder's owner and an expiry, refreshed while the
build runs.  A live lock refuses a second builder; an expired one (its builder died) is
cleared with ``break_lock=True`` (``--break-lock``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import orjson

from sdoml_sql.catalog_builder.layout import FRAME_INSTRUMENTS, LOCK_FILE as LOCK_OBJECT, MANIFEST, Manifest
from sdoml_sql.catalog_builder.location import CatalogLocation, manifest_bytes
from sdoml_sql.exceptions import CatalogError

#: Seconds a build lock lives without a refresh; refreshed every third of that.
LOCK_TTL_S = 300.0
#: Seconds a frame file stays after a rebuild replaced it, for readers of the older manifest.
RETIRED_GRACE_S = 900.0


def new_build_id() -> str:
    return uuid.uuid4().hex[:12]


def frame_file_name(build_id: str) -> str:
    return f"data-{build_id}.parquet"


@contextlib.contextmanager
def remote_lock(location: CatalogLocation, break_lock: bool = False) -> Iterator[str]:
    """Hold the catalog's lock object for the block; yields the owner string."""
    owner = f"{socket.gethostname()} pid {os.getpid()} build {new_build_id()}"
    _take(location, owner, break_lock)
    stop = threading.Event()
    refresher = threading.Thread(target=_refresh, args=(location, owner, stop), daemon=True)
    refresher.start()
    try:
        yield owner
    finally:
        stop.set()
        refresher.join(timeout=5)
        if (_read_lock(location) or {}).get("owner") == owner:
            location.delete(LOCK_OBJECT)


def _take(location: CatalogLocation, owner: str, break_lock: bool) -> None:
    held = _read_lock(location)
    if held and held.get("expires", 0) > time.time():
        raise CatalogError(f"catalog {location.url} is being built by {held.get('owner')} (lock until "
                           f"{_iso(held['expires'])}); try again when it has finished")
    if held and not break_lock:
        raise CatalogError(f"catalog {location.url} has a stale build lock from {held.get('owner')} (expired "
                           f"{_iso(held.get('expires', 0))}): if that build is dead, clear it with --break-lock")
    _write_lock(location, owner)
    time.sleep(0.05)  # two builders writing at once: the last write wins, the other backs off
    if (_read_lock(location) or {}).get("owner") != owner:
        raise CatalogError(f"catalog {location.url} is being built by {(_read_lock(location) or {}).get('owner')}")


def _refresh(location: CatalogLocation, owner: str, stop: threading.Event) -> None:
    while not stop.wait(LOCK_TTL_S / 3):
        with contextlib.suppress(Exception):
            _write_lock(location, owner)


def _write_lock(location: CatalogLocation, owner: str) -> None:
    location.write_bytes(LOCK_OBJECT, orjson.dumps({"owner": owner, "expires": time.time() + LOCK_TTL_S,
                                                    "since": _iso(time.time())}))


def _read_lock(location: CatalogLocation) -> dict[str, Any] | None:
    raw = location.read_bytes(LOCK_OBJECT)
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return {"owner": "an unreadable lock object", "expires": 0}


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def private_staging() -> Path:
    """A fresh temporary directory on this machine (the driver's or a worker's)."""
    return Path(tempfile.mkdtemp(prefix="sdoml-sql-build-"))


def upload_partition(location: CatalogLocation, staging: Path, partition, side_keys: list[str], build_id: str,
                     data_file: str) -> None:
    """Upload one harvested partition: the frame file under a new name (recorded in the
    partition's manifest entry as ``file``), side tables under their fixed names."""
    if partition.instrument in FRAME_INSTRUMENTS:
        name = frame_file_name(build_id)
        location.upload(staging / partition.key / data_file, f"{partition.key}/{name}")
        partition.meta["file"] = name
    else:
        location.upload(staging / partition.key / data_file, f"{partition.key}/{data_file}")
    for key in side_keys:
        staged = staging / key / data_file
        if staged.exists():
            location.upload(staged, f"{key}/{data_file}")
        else:
            location.delete(f"{key}/{data_file}")


def commit(location: CatalogLocation, manifest: dict[str, Any], previous: dict[str, Any],
           removed_side_keys: list[str], data_file: str) -> None:
    """Write the manifest (the commit point), then delete frame files no reader can need.

    A file the previous manifest named and this one does not is *retired*: listed in the
    manifest's ``retired_files`` with the time it left, and deleted only by a later build
    once :data:`RETIRED_GRACE_S` has passed, so a reader that opened an older manifest keeps
    its files for its query.  Files no manifest ever named (a killed build's) go at once."""
    now = time.time()
    current = Manifest.of(manifest).frame_files()
    retired = {path: since for path, since in Manifest.of(previous).retired_files.items() if path not in current}
    retired.update({path: now for path in Manifest.of(previous).frame_files() - current if path not in retired})
    retired = {path: since for path, since in retired.items() if now - since < RETIRED_GRACE_S}
    location.write_bytes(MANIFEST, manifest_bytes({**manifest, "retired_files": retired}))
    for instrument in FRAME_INSTRUMENTS:
        for path in location.listing(instrument):
            if path.endswith(".parquet") and path not in current and path not in retired:
                location.delete(path)
    for key in removed_side_keys:
        location.delete(f"{key}/{data_file}")
