"""Building into an object store: partitions under new names, the manifest as commit point,
and a lock object instead of ``flock``.

A remote build harvests into a private temporary directory (the driver's, or each dask
worker's: no shared disk), uploads every frame partition under a name no reader uses yet
(``aia/year=2010/channel=171A/data-<build>.parquet``), then writes ``manifest.json`` — one
PUT, atomic — naming the new files.  A reader opens the manifest and then only the files it
names, so it sees the old catalog or the new one, never a mix; a build killed before the
manifest leaves the old catalog as it was.  A file a rebuild replaced is kept for
:data:`RETIRED_GRACE_S` (15 min) for readers still on an older manifest, then deleted by a
later build; files no manifest named (a killed build's) are deleted at the next commit.  EVE
tables and ``array_attrs`` keep fixed names and are replaced object by object.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sdoml_sql.catalog_builder.layout import FRAME_INSTRUMENTS, MANIFEST
from sdoml_sql.catalog_builder.layout import LOCK_FILE as LOCK_OBJECT
from sdoml_sql.catalog_builder.location import CatalogLocation, manifest_bytes, parse_manifest
from sdoml_sql.exceptions import CatalogError, CommitConflict

#: Seconds a build lock lives without a refresh; refreshed every third of that.
LOCK_TTL_S = 300.0
#: Seconds a frame file stays after a rebuild replaced it, for readers of the older manifest.
RETIRED_GRACE_S = 900.0


def new_build_id() -> str:
    return uuid.uuid4().hex[:12]


def frame_file_name(build_id: str) -> str:
    return f"data-{build_id}.parquet"


@dataclass
class Lease:
    """A build's hold on the lock object: ``owner`` (host, pid, build), the lock's ``version``
    as last written (ETag or generation), ``conditional`` (whether the store honours
    preconditions) and ``warning``, one line when it ignores them."""

    owner: str
    version: str | None = None
    conditional: bool = False
    warning: str | None = None

    def __str__(self) -> str:
        return self.owner


@contextlib.contextmanager
def remote_lock(location: CatalogLocation, break_lock: bool = False) -> Iterator[Lease]:
    """Hold the catalog's lock object for the block; yields the :class:`Lease` (its ``str``
    is the owner)."""
    lease = Lease(f"{socket.gethostname()} pid {os.getpid()} build {new_build_id()}")
    _take(location, lease, break_lock)
    stop = threading.Event()
    refresher = threading.Thread(target=_refresh, args=(location, lease, stop), daemon=True)
    refresher.start()
    try:
        yield lease
    finally:
        stop.set()
        refresher.join(timeout=5)
        if lease.conditional:
            location.delete_if(LOCK_OBJECT, lease.version)
        elif (_read_lock(location) or {}).get("owner") == lease.owner:
            location.delete(LOCK_OBJECT)


def _take(location: CatalogLocation, lease: Lease, break_lock: bool) -> None:
    """Create the lock object: create-only where the store has conditional writes (two
    builders starting together: exactly one create succeeds); a stale lock is replaced only
    with a compare-and-swap on the version that was read, so two breakers cannot both win."""
    held = _read_lock(location)
    if held:
        _refuse(location, held, break_lock)
    if not location.conditional:
        return _write_and_check(location, lease)
    lease.conditional = True
    body = _lock_body(lease.owner)
    for _ in range(3):
        try:
            lease.version = location.write_if(LOCK_OBJECT, body, expected=None)
            break
        except CommitConflict:
            raw, held_version = location.read_versioned(LOCK_OBJECT)
            if raw is None:
                continue  # released in between: create it again
            _refuse(location, _parse_lock(raw), break_lock)
            try:
                lease.version = location.write_if(LOCK_OBJECT, body, expected=held_version)
                break
            except CommitConflict:
                owner = (_read_lock(location) or {}).get("owner")
                raise CatalogError(f"catalog {location.url} is being built by {owner}: "
                                   "it broke the stale lock first") from None
    else:
        raise CatalogError(f"catalog {location.url}: its lock object keeps changing; try again")
    try:  # a store that ignores If-None-Match / ifGenerationMatch lets this second create through
        location.write_if(LOCK_OBJECT, body, expected=None)
    except CommitConflict:
        return None
    lease.conditional = False
    lease.warning = (f"catalog {location.url}: the store ignores conditional writes (If-None-Match): the lock "
                     f"and the manifest are written without preconditions, as by sdoml-sql before 0.2")
    return _write_and_check(location, lease)


def _write_and_check(location: CatalogLocation, lease: Lease) -> None:
    """A store without conditional writes: write, wait, read back (two builders within
    ~50 ms of each other can both pass)."""
    _write_lock(location, lease.owner)
    time.sleep(0.05)  # two builders writing at once: the last write wins, the other backs off
    if (_read_lock(location) or {}).get("owner") != lease.owner:
        raise CatalogError(f"catalog {location.url} is being built by {(_read_lock(location) or {}).get('owner')}")


def _refuse(location: CatalogLocation, held: dict[str, Any], break_lock: bool) -> None:
    """Raise unless ``held`` (a lock read back) has expired and ``break_lock`` clears it."""
    if held.get("expires", 0) > time.time():
        raise CatalogError(f"catalog {location.url} is being built by {held.get('owner')} (lock until "
                           f"{_iso(held['expires'])}); try again when it has finished")
    if not break_lock:
        raise CatalogError(f"catalog {location.url} has a stale build lock from {held.get('owner')} (expired "
                           f"{_iso(held.get('expires', 0))}): if that build is dead, clear it with --break-lock")


def _refresh(location: CatalogLocation, lease: Lease, stop: threading.Event) -> None:
    while not stop.wait(LOCK_TTL_S / 3):
        with contextlib.suppress(Exception):
            if not lease.conditional:
                _write_lock(location, lease.owner)
                continue
            try:
                lease.version = location.write_if(LOCK_OBJECT, _lock_body(lease.owner), expected=lease.version)
            except CommitConflict:
                return  # taken over after an expiry: the manifest's compare-and-swap still guards the commit


def _lock_body(owner: str) -> bytes:
    return orjson.dumps({"owner": owner, "expires": time.time() + LOCK_TTL_S, "since": _iso(time.time())})


def _write_lock(location: CatalogLocation, owner: str) -> None:
    location.write_bytes(LOCK_OBJECT, _lock_body(owner))


def _read_lock(location: CatalogLocation) -> dict[str, Any] | None:
    raw = location.read_bytes(LOCK_OBJECT)
    return _parse_lock(raw) if raw else None


def _parse_lock(raw: bytes) -> dict[str, Any]:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"owner": "an unreadable lock object", "expires": 0}


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
           removed_side_keys: list[str], data_file: str, *, lease: Lease | None = None,
           base_version: str | None = None, derive: Callable[[dict], dict] | None = None) -> dict[str, Any]:
    """Write the manifest (the commit point), then delete frame files no reader can need;
    returns the manifest committed.

    With a conditional lease the manifest is a compare-and-swap on ``base_version``, the
    version of ``previous`` the build started from (None: the catalog had no manifest).  If
    another build committed in between (its lock expired while this one was stalled), this
    build *rebases*, as Iceberg and Delta Lake commits do: it re-reads the manifest and, when
    the partitions and sources each build changed do not overlap, applies its own changes to
    the new manifest and commits again; when they overlap it fails with one line, and its
    uploads, named by no manifest, are deleted.  ``derive`` (given the manifest about to be
    committed, every time) uploads files computed from the new catalog and returns the
    manifest naming them.

    A file the previous manifest named and this one does not is *retired*: listed in the
    manifest's ``retired_files`` with the time it left, and deleted only by a later build
    once :data:`RETIRED_GRACE_S` has passed, so a reader that opened an older manifest keeps
    its files for its query.  Files no manifest named (a killed build's, or those of a build
    still running) are deleted once :data:`ORPHAN_AGE_S` old."""
    conditional = bool(lease and lease.conditional)
    for _attempt in range(COMMIT_ATTEMPTS):
        listing = {path: info for folder in _collected_folders(previous, manifest)
                   for path, info in location.listing(folder).items()}
        uploaded = {path for path in _named(manifest, data_file) - _named(previous, data_file) - set(listing)
                    if path.startswith(tuple(f"{i}/" for i in FRAME_INSTRUMENTS))}
        if uploaded:
            _discard(location, manifest, previous, data_file)
            raise CatalogError(f"catalog {location.url}: {len(uploaded)} file(s) this build uploaded are gone "
                               f"({sorted(uploaded)[0]}, …): it was stalled past the lock's expiry; nothing of it "
                               f"was committed, run it again")
        final = with_retired(derive(manifest) if derive else manifest, previous, data_file)
        try:
            if conditional:
                location.write_if(MANIFEST, manifest_bytes(final), expected=base_version)
            else:
                location.write_bytes(MANIFEST, manifest_bytes(final))
            break
        except CommitConflict:
            raw, base_version = location.read_versioned(MANIFEST)
            current = parse_manifest(raw) if raw else {"partitions": {}, "sources": {}}
            for entry in (final.get("copies") or {}).values():  # derived from a manifest never committed
                if entry.get("file") and entry["file"] not in _named(current, data_file):
                    location.delete(entry["file"])
            try:
                manifest = rebase(location.url, manifest, previous, current)
            except CommitConflict:
                _discard(location, manifest, current, data_file)
                raise
            previous = current
    else:
        _discard(location, manifest, previous, data_file)
        raise CommitConflict(f"catalog {location.url}: other builds committed {COMMIT_ATTEMPTS} times while this "
                             f"one tried to; nothing of it was committed, run it again")
    keep, now = _named(final, data_file) | set(final["retired_files"]), time.time()
    committed = _named(previous, data_file) | set(previous.get("retired_files") or {})  # past their grace now
    for path, info in listing.items():
        if path.endswith(".parquet") and path not in keep and (path in committed or _age(info, now) > ORPHAN_AGE_S):
            location.delete(path)
    for key in removed_side_keys:
        location.delete(f"{key}/{data_file}")
    return final


#: Tries of a manifest commit that keeps finding another build's commit first.
COMMIT_ATTEMPTS = 5
#: Age (seconds) after which a frame file no manifest names is deleted by a commit: a killed
#: build's uploads, never those of a build still running (a build stalled longer finds its
#: files gone and commits nothing).
ORPHAN_AGE_S = 24 * 3600.0


def with_retired(manifest: dict[str, Any], previous: dict[str, Any], data_file: str) -> dict[str, Any]:
    """``manifest`` with ``retired_files``: the frame files ``previous`` named (or retired) and
    this one does not, with the time they left, for :data:`RETIRED_GRACE_S`."""
    now = time.time()
    current = _named(manifest, data_file)
    retired = {path: since for path, since in (previous.get("retired_files") or {}).items() if path not in current}
    retired.update({path: now for path in _named(previous, data_file) - current if path not in retired})
    return {**manifest, "retired_files": {path: since for path, since in retired.items()
                                          if now - since < RETIRED_GRACE_S}}


def rebase(url: str, mine: dict[str, Any], base: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``mine`` (a manifest computed from ``base``) re-applied on ``current``, the manifest
    another build committed since: the partitions and sources this build changed replace or
    leave ``current``'s.  Raises :class:`CommitConflict` when both builds changed one."""
    mine_parts, base_parts, their_parts = (m.get("partitions") or {} for m in (mine, base, current))
    changed = _changed(mine_parts, base_parts)
    theirs = _changed(their_parts, base_parts)
    sources = _changed(mine.get("sources") or {}, base.get("sources") or {})
    their_sources = _changed(current.get("sources") or {}, base.get("sources") or {})
    overlap = sorted(changed & theirs) or sorted(f"the {name} source" for name in sources & their_sources)
    if overlap:
        raise CommitConflict(f"catalog {url}: another build committed {overlap[0]}"
                             f"{f' and {len(overlap) - 1} more' if len(overlap) > 1 else ''} while this one ran; "
                             f"nothing of this build was committed, run it again")
    partitions = dict(their_parts)
    for key in changed:
        if key in mine_parts:
            partitions[key] = mine_parts[key]
        else:
            partitions.pop(key, None)
    partitions = dict(sorted(partitions.items()))
    return {**mine, "partitions": partitions, "warnings": manifest_warnings(partitions),
            "sources": {**(current.get("sources") or {}),
                        **{n: mine["sources"][n] for n in sources if n in mine["sources"]}}}


def manifest_warnings(partitions: dict[str, Any]) -> list[str]:
    """The manifest's ``warnings``: every partition's, in key order."""
    return [w for entry in partitions.values() for w in entry.get("warnings", [])]


def _changed(new: dict[str, Any], old: dict[str, Any]) -> set[str]:
    return {key for key in set(new) | set(old) if new.get(key) != old.get(key)}


def _discard(location: CatalogLocation, manifest: dict[str, Any], current: dict[str, Any], data_file: str) -> None:
    """Delete this build's uploads that ``current`` (the committed manifest) does not name."""
    keep = _named(current, data_file) | set(current.get("retired_files") or {})
    for path in _named(manifest, data_file) - keep:
        location.delete(path)


def _age(info: dict[str, Any], now: float) -> float:
    """Seconds since an object was written, from its listing entry (0 if unknown)."""
    stamp = info.get("LastModified") or info.get("mtime") or info.get("updated")
    if isinstance(stamp, str):
        with contextlib.suppress(ValueError):
            stamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if isinstance(stamp, dt.datetime):
        stamp = stamp.replace(tzinfo=stamp.tzinfo or dt.UTC).timestamp()
    return now - stamp if isinstance(stamp, (int, float)) else 0.0


def _named(manifest: dict[str, Any], data_file: str) -> set[str]:
    """Files the manifest names: its partitions' and its materialized copies' (``copies``)."""
    return ({_frame_path(key, entry, data_file) for key, entry in (manifest.get("partitions") or {}).items()}
            | {entry["file"] for entry in (manifest.get("copies") or {}).values() if entry.get("file")})


def _collected_folders(*manifests: dict[str, Any]) -> list[str]:
    """Folders whose files a commit collects: the frame instruments' and the copies'."""
    copies = {entry["file"].split("/", 1)[0] for m in manifests for entry in (m.get("copies") or {}).values()
              if entry.get("file")}
    return [*FRAME_INSTRUMENTS, *sorted(copies)]


def _frame_path(key: str, entry: dict[str, Any], data_file: str) -> str:
    return f"{key}/{entry.get('file') or data_file}"
