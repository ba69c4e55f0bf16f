"""Build and rebuild the Parquet catalog: incremental, atomic per partition, one build at a time.

A build plans one partition per source array (``aia/year=2010/channel=171A``), skips those
whose source fingerprint is unchanged, harvests the rest concurrently into a staging
directory, and only when every partition succeeded swaps each file in with ``os.replace``
(readers see the old or the new file, never half of one) and writes the manifest last.  A
failed or interrupted build leaves the previous catalog as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sdoml_sql import config
from sdoml_sql.catalog_builder import remote
from sdoml_sql.catalog_builder.layout import (
    DATA_FILE,
    FRAME_INSTRUMENTS,
    LOCK_FILE,
    MANIFEST,
    STAGING_DIR,
    STATS_DIR,
    STATS_FINGERPRINT_KEY,
    Manifest,
    open_source,
    per_array_key,
    side_keys,
)
from sdoml_sql.catalog_builder.location import (
    CatalogLocation,
    is_remote,
    local_directory,
    manifest_bytes,
    open_location,
    parse_manifest,
    read_manifest,
)
from sdoml_sql.catalog_builder.partition_files import (
    ROW_GROUP_ROWS,
    harvest_all,
    harvest_distributed,
    now_utc,
    time_index,
    write_parquet,
    write_partition_file,
)
from sdoml_sql.catalog_builder.plan import (
    STORE_CHANNELS,
    Partition,
    fingerprint,
    plan_sources,
    split_changed,
    store_kind,
)
from sdoml_sql.catalog_builder.variants import source_variant, variant_changes
from sdoml_sql.config import default_catalog_dir
from sdoml_sql.exceptions import CatalogError, items, years_list
from sdoml_sql.files import move_into_place, write_atomically
from sdoml_sql.stores.source import resolve_url
from sdoml_sql.version import __version__

SCHEMA_VERSION = 1
SECRET_OPTION_WORDS = ("secret", "token", "key", "password", "credential")


@dataclass
class BuildReport:
    """What a build did: partitions written and skipped, rows, warnings, time taken."""

    catalog: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rows: int = 0
    source_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: one line each: a source that changed variant (v2 ↔ v2a), statistics made out of date by this build
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people: counts and speed."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (f"catalog {self.catalog}: {len(self.written)} partitions written, {len(self.skipped)} unchanged, "
                f"{len(self.removed)} removed; {self.rows:,} rows in {self.seconds:.1f} s ({rate:,.0f} rows/s); "
                f"{len(self.warnings)} warnings")


def build_catalog(
    aia: str | None = None,
    hmi: str | None = None,
    eve: str | None = None,
    catalog: str | os.PathLike | None = None,
    *,
    years: list[int] | None = None,
    channels: list[str] | None = None,
    full: bool = False,
    progress: bool = True,
    read_ahead: int | None = None,
    client=None,
    storage_options: dict[str, Any] | None = None,
    billing_project: str | None = None,
    mirror: str | None = None,
    break_lock: bool = False,
    derive: Callable[[CatalogLocation, dict], dict] | None = None,
    store_timeout: float | None = None,
    retries: int | None = None,
) -> BuildReport:
    """Harvest the named stores (URLs or preset names) into the catalog directory.

    Partitions whose source is unchanged since the last build are kept (``full=True``
    rewrites them).  ``years`` and ``channels`` limit which arrays are read (one value or a
    list); a channel filter applies to the instruments that have arrays of those names, and a
    channel that none of the named stores has is refused (``StoreError``, with a did-you-mean),
    as is a store whose arrays are another instrument's (an HMI store given as ``aia``).  Instruments not
    named keep their partitions.  ``client`` (a ``dask.distributed.Client``) spreads the
    harvest over its workers, which must see a local catalog directory (a shared filesystem);
    into an object store they need no shared disk.  ``catalog`` may be an ``s3://`` or
    ``gs://`` prefix (see :mod:`sdoml_sql.catalog_builder.remote`; ``break_lock`` clears the
    expired lock of a build that died).  ``store_timeout`` (seconds one remote object may
    take, retries included) and ``retries`` bound the reads of the stores and of a remote
    catalog (unset: :mod:`sdoml_sql.config`).  ``derive(location, manifest)`` is called at the
    commit, the new partition files in place and before the manifest is written (again if a
    remote commit rebases): it writes files computed from the new catalog and returns the
    manifest to commit (:func:`sdoml_sql.build_catalog` passes the query stage's materialized
    copies, :func:`sdoml_sql.query.catalog.derive_copies`).  Raises :class:`HarvestError`,
    :class:`StoreError` or :class:`CatalogError`; the catalog is then unchanged.
    """
    requests = {name: absolute_local(url, mirror) for name, url in (("aia", aia), ("hmi", hmi), ("eve", eve)) if url}
    if not requests:
        raise CatalogError("nothing to build: name at least one of the aia, hmi or eve stores")
    target = catalog if catalog else default_catalog_dir()
    years, channels = years_list(years), items(channels, "channels")
    filters = {"years": sorted(set(years)) if years else None,
               "channels": sorted(set(map(str, channels))) if channels else None}
    plan = {
        name: {"url": url, "storage_options": storage_options or {}, "billing_project": billing_project,
               "mirror": mirror, "filters": filters}
        for name, url in requests.items()
    }
    return _run_any_build(target, plan, full=full, progress=progress, read_ahead=read_ahead, client=client,
                          break_lock=break_lock, store_access={"store_timeout": store_timeout, "retries": retries},
                          derive=derive)


def absolute_local(url: str, mirror: str | None = None) -> str:
    """A local store path (or ``file://`` URL) made absolute, so that the manifest names the
    store from any working directory; preset names and remote URLs are returned as given."""
    resolved = resolve_url(str(url), mirror)
    if resolved.startswith("file://"):
        return "file://" + os.path.abspath(os.path.expanduser(resolved[len("file://"):]))
    if "://" in resolved:
        return str(url)
    return os.path.abspath(os.path.expanduser(resolved))


def rebuild_catalog(
    catalog: str | os.PathLike | None = None,
    *,
    sources: dict[str, str] | None = None,
    full: bool = False,
    progress: bool = True,
    read_ahead: int | None = None,
    client=None,
    storage_options: dict[str, Any] | None = None,
    billing_project: str | None = None,
    break_lock: bool = False,
    derive: Callable[[CatalogLocation, dict], dict] | None = None,
    store_timeout: float | None = None,
    retries: int | None = None,
) -> BuildReport:
    """Re-read the sources named in the catalog's manifest and rewrite what changed.

    New arrays (a new year) are added, changed ones rewritten, vanished ones removed;
    ``full=True`` rewrites every partition.  ``sources`` re-points instruments to stores that
    moved (``{"aia": "/new/place/sdomlv2_small.zarr"}``); the manifest records the new place.
    ``catalog`` may be remote, ``store_timeout``/``retries`` given and ``derive`` called at the
    commit, as for :func:`build_catalog`.
    """
    target = catalog if catalog else default_catalog_dir()
    manifest = read_manifest(target)
    if manifest is None:
        raise CatalogError(f"catalog {target} has no {MANIFEST}: build it first with `sdoml-sql build`")
    known = manifest.sources
    unknown = sorted(set(sources or {}) - set(known))
    if unknown:
        raise CatalogError(f"catalog {target} has no {unknown[0]} source to re-point: it has "
                           f"{', '.join(sorted(known)) or 'none'}")
    moved = {name: absolute_local(url) for name, url in (sources or {}).items()}
    plan = {
        name: {"url": moved.get(name, entry["url"]),
               "storage_options": {**entry.get("storage_options", {}), **(storage_options or {})},
               "billing_project": billing_project, "mirror": None, "filters": entry.get("filters") or {}}
        for name, entry in known.items()
    }
    return _run_any_build(target, plan, full=full, progress=progress, read_ahead=read_ahead, client=client,
                          break_lock=break_lock, store_access={"store_timeout": store_timeout, "retries": retries},
                          derive=derive)


# --- the build -----------------------------------------------------------------------------

def _run_any_build(target, plan: dict[str, dict], *, break_lock: bool, store_access: dict[str, Any],
                   **options) -> BuildReport:
    with config.using(**store_access):
        if is_remote(target):
            return _run_remote_build(open_location(target), plan, break_lock=break_lock, **options)
        return _run_build(local_directory(target), plan, **options)


def _run_remote_build(location: CatalogLocation, plan: dict[str, dict], *, full: bool, progress: bool,
                      read_ahead: int | None, client=None, break_lock: bool = False, derive=None) -> BuildReport:
    """Build into an object store (see :mod:`sdoml_sql.catalog_builder.remote`)."""
    started = time.perf_counter()
    report = BuildReport(catalog=location.url)
    with remote.remote_lock(location, break_lock) as lease:
        raw, base_version = location.read_versioned(MANIFEST) if lease.conditional else (None, None)
        old = (parse_manifest(raw) if raw else None) if lease.conditional else read_manifest(location)
        old = old or Manifest.empty()
        sources = {name: open_source(name, entry) for name, entry in plan.items()}
        planned = plan_sources(plan, sources)
        todo, keep = split_changed(planned, old.partitions, full)
        report.skipped = sorted(keep)
        build_id = remote.new_build_id()
        if client is not None:
            publish = (location.url, location.source.storage_options, build_id)
            results = harvest_distributed(client, sources, todo, None, progress, publish)
        else:
            staging = remote.private_staging()
            try:
                results = harvest_all(sources, todo, staging, progress, read_ahead)
                for partition in results:
                    remote.upload_partition(location, staging, partition, side_keys(partition.key), build_id,
                                            DATA_FILE)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        new_manifest = _next_manifest(old, plan, sources, results, keep)
        report.removed = sorted(set(old.partitions) - set(new_manifest.partitions))
        report.notes = _variant_notes(old, new_manifest, results, report.removed, keep)
        remote.commit(location, new_manifest, old, [s for key in report.removed for s in side_keys(key)], DATA_FILE,
                      lease=lease, base_version=base_version,
                      derive=(lambda manifest: derive(location, manifest)) if derive else None)
    report = _finish_report(report, results, started)
    report.warnings += [lease.warning] if lease.warning else []
    return report


def _finish_report(report: BuildReport, results: list[Partition], started: float) -> BuildReport:
    report.written = sorted(p.key for p in results)
    report.rows = sum(p.meta["rows"] for p in results)
    report.source_bytes = sum(p.meta.get("source_bytes", 0) for p in results)
    report.warnings = [w for p in results for w in p.meta.get("warnings", [])]
    report.seconds = time.perf_counter() - started
    return report


def _run_build(directory: Path, plan: dict[str, dict], *, full: bool, progress: bool, read_ahead: int | None,
               client=None, derive=None) -> BuildReport:
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    report = BuildReport(catalog=directory)
    with exclusive(directory):
        old = read_manifest(directory) or Manifest.empty()
        sources = {name: open_source(name, entry) for name, entry in plan.items()}
        planned = plan_sources(plan, sources)
        staging = directory / STAGING_DIR / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            todo, keep = split_changed(planned, old.partitions, full)
            report.skipped = sorted(keep)
            if client is not None:
                results = harvest_distributed(client, sources, todo, staging, progress)
            else:
                results = harvest_all(sources, todo, staging, progress, read_ahead)
            new_manifest = _next_manifest(old, plan, sources, results, keep)
            report.removed = sorted(set(old.partitions) - set(new_manifest.partitions))
            report.notes = _variant_notes(old, new_manifest, results, report.removed, keep)
            _swap_in(directory, staging, results, report.removed)
            if derive:
                new_manifest = derive(open_location(directory), new_manifest)
            _write_manifest(directory, new_manifest)
            report.notes += stale_statistics(directory, new_manifest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.parent.rmdir()
    return _finish_report(report, results, started)


def stale_statistics(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """One line naming the partitions whose ``frame_stats`` were computed from other headers
    than the manifest's (the views count their frames as without statistics), or none."""
    stale = []
    for key, entry in Manifest.of(manifest).partitions.items():
        if entry.get("instrument") not in FRAME_INSTRUMENTS:
            continue
        path = directory / per_array_key(STATS_DIR, entry["instrument"], entry["year"], entry["channel"]) / DATA_FILE
        if path.is_file():
            try:
                recorded = (pq.read_schema(path).metadata or {}).get(STATS_FINGERPRINT_KEY, b"").decode()
            except (OSError, pa.ArrowInvalid):
                recorded = ""
            if recorded.split(":")[0] != entry.get("fingerprint"):
                stale.append(key)
    if not stale:
        return []
    named = ", ".join(sorted(stale)[:3]) + (", …" if len(stale) > 3 else "")
    return [f"frame_stats of {len(stale)} partition(s) ({named}) "
            "were computed from other headers or pixels: their frames count as has_stats=false until "
            "`sdoml-sql stats` runs again"]


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold the catalog's build lock; a second build (or stats pass) at the same time is refused."""
    lock_path = directory / LOCK_FILE
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise CatalogError(f"catalog {directory} is being built by {holder}; try again when it has finished") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {now_utc()}")
        handle.flush()
        shutil.rmtree(directory / STAGING_DIR, ignore_errors=True)  # leftovers of a killed build
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _swap_in(directory: Path, staging: Path, results: list[Partition], removed: list[str]) -> None:
    """Move staged files over the catalog's, one rename each (atomic per file)."""
    for partition in results:
        for key in [partition.key, *side_keys(partition.key)]:
            staged, final = staging / key / DATA_FILE, directory / key / DATA_FILE
            if staged.exists():
                move_into_place(staged, final)
            elif final.exists():
                _remove_partition_dir(directory, key)
    for key in removed:
        for side in [key, *side_keys(key)]:
            _remove_partition_dir(directory, side)


def _remove_partition_dir(directory: Path, key: str) -> None:
    path = directory / key
    shutil.rmtree(path, ignore_errors=True)
    for parent in list(path.parents)[: key.count("/")]:
        with contextlib.suppress(OSError):
            parent.rmdir()  # only if empty


def _next_manifest(old, plan, sources, results: list[Partition], keep: list[str]) -> Manifest:
    rebuilt = set(plan)
    partitions = {
        key: entry for key, entry in old.partitions.items()
        if entry.get("instrument") not in rebuilt or key in keep
    }
    for partition in results:
        partitions[partition.key] = dict(partition.meta)
    source_entries = dict(old.sources)
    for name, entry in plan.items():
        variant, evidence = source_variant(name, sources[name].url,
                                           [p for p in partitions.values() if p.get("instrument") == name])
        source_entries[name] = {
            "url": sources[name].url,
            "storage_options": _public_options(sources[name].storage_options),
            "filters": entry["filters"],
            "variant": variant,
            "variant_evidence": evidence,
        }
    return Manifest({
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "built_at": now_utc(),
        "sources": source_entries,
        "partitions": dict(sorted(partitions.items())),
        "warnings": remote.manifest_warnings(partitions),
    })


def _variant_notes(old, new_manifest, results: list[Partition], removed: list[str], keep: list[str]) -> list[str]:
    """The report's lines for sources that changed variant, with their partition counts."""
    def count(keys, name):
        return sum(1 for key in keys if key.split("/", 1)[0] == name)

    written = [p.key for p in results]
    counts = {name: (count(written, name), count(removed, name), count(keep, name)) for name in new_manifest["sources"]}
    return variant_changes(old.get("sources", {}), new_manifest["sources"], counts)


def _public_options(options: dict[str, Any]) -> dict[str, Any]:
    """Storage options worth recording: no secrets (keys, tokens, passwords)."""
    return {k: v for k, v in options.items() if not any(word in k.lower() for word in SECRET_OPTION_WORDS)
            and isinstance(v, (str, int, float, bool, type(None)))}


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    write_atomically(directory / MANIFEST, manifest_bytes(manifest))


__all__ = ["build_catalog", "rebuild_catalog", "read_manifest", "fingerprint", "BuildReport", "open_source",
           "Partition", "ROW_GROUP_ROWS", "STORE_CHANNELS", "now_utc", "plan_sources", "store_kind", "time_index",
           "write_parquet", "write_partition_file"]
