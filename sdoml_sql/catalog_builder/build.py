"""Build and rebuild the Parquet catalog: incremental, atomic per partition, one build at a time.

A build plans one partition per source array (``aia/year=2010/channel=171A``), skips those
whose source fingerprint is unchanged, harvests the rest concurrently into a staging
directory, and only when every partition succeeded swaps each file in with ``os.replace``
(readers see the old or the new file, never half of one) and writes the manifest last.  A
failed or interrupted build leaves the previous catalog as it was.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from sdoml_sql import config
from sdoml_sql.catalog_builder import remote
from sdoml_sql.catalog_builder.harvest import (
    eve_array_path,
    eve_groups,
    harvest_array,
    harvest_eve,
)
from sdoml_sql.catalog_builder.layout import (
    DATA_FILE,
    FRAME_INSTRUMENTS,
    LOCK_FILE,
    MANIFEST,
    STAGING_DIR,
    STATS_DIR,
    STATS_FINGERPRINT_KEY,
    Manifest,
    eve_group_name,
    eve_key,
    identity,
    open_source,
    partition_key,
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
from sdoml_sql.catalog_builder.variants import source_variant, variant_changes
from sdoml_sql.config import default_catalog_dir
from sdoml_sql.exceptions import CatalogError, StoreError, items, unknown_names, years_list
from sdoml_sql.files import move_into_place, write_atomically
from sdoml_sql.stores.sample import AIA_CHANNELS, HMI_COMPONENTS
from sdoml_sql.stores.source import Source, open_store, resolve_url
from sdoml_sql.version import __version__

SCHEMA_VERSION = 1
#: The arrays of a year group that tell an AIA store from an HMI store.
STORE_CHANNELS = {"aia": AIA_CHANNELS, "hmi": HMI_COMPONENTS}
SECRET_OPTION_WORDS = ("secret", "token", "key", "password", "credential")


@dataclass
class Partition:
    """One unit of the catalog: a source array (or EVE group) and where its rows go."""

    key: str  # "aia/year=2010/channel=171A"
    instrument: str
    array_path: str  # "2010/171A" or "MEGS-A"
    year: int | None = None
    channel: str | None = None
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


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
        todo, keep = _split_changed(planned, old.partitions, full)
        report.skipped = sorted(keep)
        build_id = remote.new_build_id()
        if client is not None:
            publish = (location.url, location.source.storage_options, build_id)
            results = _harvest_distributed(client, sources, todo, None, progress, publish)
        else:
            staging = remote.private_staging()
            try:
                results = _harvest_all(sources, todo, staging, progress, read_ahead)
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
            todo, keep = _split_changed(planned, old.partitions, full)
            report.skipped = sorted(keep)
            if client is not None:
                results = _harvest_distributed(client, sources, todo, staging, progress)
            else:
                results = _harvest_all(sources, todo, staging, progress, read_ahead)
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


def plan_sources(plan: dict[str, dict], sources: dict[str, Source]) -> dict[str, list[Partition]]:
    """The partitions of every planned source, after checking that each store holds what its
    instrument's stores hold (an HMI store given as ``aia`` is refused) and that every channel
    of the filter is an array of one of them (``171`` is refused, with a did-you-mean)."""
    listed = {name: _list_arrays(name, sources[name], plan[name]["filters"]) for name in plan if name != "eve"}
    wanted = set()
    for name in plan:
        wanted.update(plan[name]["filters"].get("channels") or ())
    if wanted and listed:
        held = [a for name in listed for arrays in listed[name].values() for a in arrays]
        where = (f"the {' and '.join(listed)} stores have" if len(listed) > 1
                 else f"the {next(iter(listed))} store has")
        message = unknown_names("channel", sorted(wanted), sorted(set(held), key=_channel_order), where)
        if message:
            raise StoreError(message)
    return {name: _plan_eve(sources[name]) if name == "eve" else
            _plan_partitions(name, sources[name], listed[name], plan[name]["filters"]) for name in plan}


def _channel_order(name: str):
    digits = "".join(c for c in name if c.isdigit())
    return (not digits, int(digits or 0), name)


def _list_arrays(instrument: str, source: Source, filters: dict) -> dict[str, list[str]]:
    """``{year: arrays}`` of the store's year groups chosen by the filter; the store's kind,
    told from its array names, must be ``instrument``."""
    years = filters.get("years")
    groups, _ = source.children()
    year_names = sorted(g for g in groups if g.isdigit() and (not years or int(g) in years))
    if not year_names:
        if any(g.isdigit() for g in groups) or not groups:
            raise StoreError(f"store {source.url} has no year groups" + (f" among {years}" if years else ""))
        raise StoreError(f"{instrument}: store {source.url} is not an {instrument.upper()} store: it has groups "
                         f"{', '.join(sorted(groups)[:5])} and no year groups (an EVE store? use --eve)")
    listed = {year: source.children(year)[1] for year in year_names}
    kind = store_kind(a for arrays in listed.values() for a in arrays)
    if kind is not None and kind != instrument:
        raise StoreError(f"{instrument}: store {source.url} is an {kind.upper()} store (its arrays are "
                         f"{', '.join(sorted({a for v in listed.values() for a in v}, key=_channel_order)[:9])}); "
                         f"give it as --{kind}")
    return listed


def store_kind(array_names) -> str | None:
    """``"aia"`` or ``"hmi"`` when every array name is one of that instrument's channels,
    else None (a store of another layout: the build reads it as given)."""
    names = set(array_names)
    for kind, channels in STORE_CHANNELS.items():
        if names and names <= set(channels):
            return kind
    return None


def _plan_partitions(instrument: str, source: Source, listed: dict[str, list[str]], filters: dict) -> list[Partition]:
    wanted_channels = set(filters.get("channels") or ())
    partitions = []
    for year, arrays in listed.items():
        chosen = [a for a in arrays if a in wanted_channels] if wanted_channels & set(arrays) else arrays
        for channel in chosen:
            path = f"{year}/{channel}"
            partitions.append(Partition(
                key=partition_key(instrument, year, channel), instrument=instrument,
                array_path=path, year=int(year), channel=channel, fingerprint=fingerprint(source, [path]),
            ))
    return partitions


def _plan_eve(source: Source) -> list[Partition]:
    """One partition per place holding EVE lines, found by content (:func:`eve_groups`): the
    ``MEGS-A`` group of SDOML v2, or the root of SDOMLv2a's flat EVE_legacy (``group=root``)."""
    groups, _ = source.children()
    if groups and all(g.isdigit() for g in groups):
        kind = store_kind(source.children(groups[0])[1])
        raise StoreError(f"eve: store {source.url} is not an EVE store: it has year groups "
                         f"{', '.join(sorted(groups)[:5])}; give it as " + (f"--{kind}" if kind else "--aia or --hmi"))
    partitions = []
    for group in eve_groups(source):
        _, arrays = source.children(group)
        paths = [eve_array_path(group, a) for a in arrays]
        partitions.append(Partition(key=eve_key(eve_group_name(group)), instrument="eve", array_path=group,
                                    fingerprint=fingerprint(source, paths)))
    return partitions


def fingerprint(source: Source, array_paths: list[str]) -> str:
    """A digest of the arrays' ``.zarray`` and of their ``.zattrs`` identity.

    The attributes are identified by size plus what the backend offers (ETag, md5,
    generation, mtime) so that an unchanged year costs a metadata request, not a 221 MB
    download; backends that offer none are hashed by content.
    """
    digest = hashlib.sha256()
    for path in array_paths:
        digest.update(orjson.dumps(source.zarray(path), option=orjson.OPT_SORT_KEYS))
        digest.update(_attrs_identity(source, f"{path}/.zattrs"))
    return digest.hexdigest()[:32]


def _attrs_identity(source: Source, key: str) -> bytes:
    try:
        info = source.info(key)
    except FileNotFoundError:
        attrs = (source.consolidated or {}).get(key)
        return orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS) if attrs is not None else b"-"
    stamp = identity(info)
    if len(stamp) == 1:  # the size alone: the backend offers no content identity
        stamp["sha256"] = hashlib.sha256(source.read_bytes(key)).hexdigest()
    return orjson.dumps(stamp, option=orjson.OPT_SORT_KEYS)


def _split_changed(planned: dict[str, list[Partition]], old: dict[str, dict], full: bool):
    todo, keep = [], []
    for partitions in planned.values():
        for partition in partitions:
            previous = old.get(partition.key)
            if not full and previous and previous.get("fingerprint") == partition.fingerprint:
                keep.append(partition.key)
            else:
                todo.append(partition)
    return todo, keep


def _harvest_all(sources, todo: list[Partition], staging: Path, progress: bool,
                 read_ahead: int | None) -> list[Partition]:
    """Harvest partitions one at a time while the next ``read_ahead`` sources download.

    Parsing holds the GIL, so parsing two arrays at once gains nothing and doubles peak
    memory; overlapping remote downloads with parsing is what pays.  By default local
    stores read nothing ahead (there is no latency to hide) and remote ones read one array
    ahead.
    """
    if read_ahead is None:
        read_ahead = 0 if all(s.is_local for s in sources.values()) else 1
    bar = _ProgressBar(len(todo), progress)
    done = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, read_ahead)) as pool:
        downloads: dict[int, concurrent.futures.Future] = {}
        try:
            for position, partition in enumerate(todo):
                for ahead in range(position + 1, min(position + 1 + read_ahead, len(todo))):
                    if ahead not in downloads:
                        downloads[ahead] = pool.submit(_download, sources[todo[ahead].instrument], todo[ahead])
                source = sources[partition.instrument]
                future = downloads.pop(position, None)
                downloaded = future.result() if future else _download(source, partition)
                done.append(_harvest_partition(source, partition, staging, downloaded))
                del downloaded, future
                bar.advance(done[-1])
        finally:
            for future in downloads.values():
                future.cancel()
            bar.close()
    return sorted(done, key=lambda p: p.key)


def _harvest_distributed(client, sources, todo: list[Partition], staging: Path | None, progress: bool,
                         publish: tuple | None = None) -> list[Partition]:
    """Harvest each partition as a task on a dask.distributed cluster; workers reopen the stores.

    ``staging`` is a shared directory the workers write into; with ``publish`` (a remote
    catalog's URL, storage options and build id) each worker harvests into its own temporary
    directory and uploads the partition itself."""
    from distributed import as_completed

    bar = _ProgressBar(len(todo), progress)
    futures = [
        client.submit(_harvest_on_worker, sources[p.instrument].url, sources[p.instrument].storage_options,
                      p, str(staging) if staging else None, publish,
                      key=f"harvest-{p.key}-{uuid.uuid4().hex[:8]}", pure=False)
        for p in todo
    ]
    done = []
    try:
        for future in as_completed(futures):
            done.append(future.result())
            bar.advance(done[-1])
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    return sorted(done, key=lambda p: p.key)


def _harvest_on_worker(url: str, storage_options: dict, partition: Partition, staging: str | None,
                       publish: tuple | None = None) -> Partition:
    source = open_store(url, storage_options=storage_options, check=False)
    if publish is None:
        return _harvest_partition(source, partition, Path(staging))
    catalog_url, catalog_options, build_id = publish
    location = open_location(catalog_url, storage_options=catalog_options)
    private = remote.private_staging()
    try:
        partition = _harvest_partition(source, partition, private)
        remote.upload_partition(location, private, partition, side_keys(partition.key), build_id, DATA_FILE)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return partition


class _ProgressBar:
    """Arrays done, frames and source megabytes harvested, on stderr (tqdm)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="array", desc="harvest", disable=not enabled or not total)
        self.frames = 0
        self.megabytes = 0.0

    def advance(self, partition: Partition) -> None:
        self.frames += partition.meta["rows"]
        self.megabytes += partition.meta.get("source_bytes", 0) / 1e6
        self.bar.set_postfix(frames=f"{self.frames:,}", MB=f"{self.megabytes:,.0f}")
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def _download(source: Source, partition: Partition) -> tuple[dict, bytes | None] | None:
    """The array's ``.zarray`` and raw ``.zattrs`` bytes (None for EVE, read while harvesting)."""
    if partition.instrument == "eve":
        return None
    zarray = source.zarray(partition.array_path)
    try:
        return zarray, source.read_bytes(f"{partition.array_path}/.zattrs")
    except FileNotFoundError:
        return zarray, None


def _harvest_partition(source: Source, partition: Partition, staging: Path, downloaded=None) -> Partition:
    if partition.instrument == "eve":
        return _harvest_eve_partition(source, partition, staging)
    zarray, raw = downloaded or _download(source, partition)
    harvest = harvest_array(source, partition.array_path, frames=int(zarray["shape"][0]), raw=raw)
    del raw
    write_partition_file(harvest.table, staging / partition.key / DATA_FILE)
    if harvest.ragged:
        write_parquet(_ragged_table(harvest.ragged), staging / side_keys(partition.key)[0] / DATA_FILE)
    partition.meta = {
        "instrument": partition.instrument, "year": partition.year, "channel": partition.channel,
        "array_path": partition.array_path, "rows": harvest.table.num_rows,
        "shape": zarray["shape"], "chunks": zarray["chunks"], "dtype": zarray["dtype"],
        "fingerprint": partition.fingerprint, "built_at": now_utc(), "keys": harvest.keys,
        "ragged_keys": sorted(harvest.ragged), "warnings": harvest.warnings,
        "source_bytes": harvest.source_bytes, **time_index(harvest.table),
    }
    return partition


def time_index(table: pa.Table) -> dict[str, Any]:
    """The partition's entry in the catalog's time index: ``time_range`` (first and last
    ``T_OBS``, ISO strings to the microsecond, or None when no frame has a time),
    ``untimed_rows`` (frames whose ``T_OBS`` is NULL) and ``time_ordered`` (whether the timed
    frames are in time order by ``idx``: SDOML v2's HMI is, SDOMLv2a's is not).  The query
    views skip a partition whose range a time filter excludes without opening its file."""
    import pyarrow.compute as pc

    if "T_OBS" not in table.column_names:
        return {"time_range": None, "untimed_rows": table.num_rows, "time_ordered": None}
    column = table.column("T_OBS")
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    time_range = [low.isoformat(sep=" "), high.isoformat(sep=" ")] if low is not None else None
    timed = column.drop_null()
    ordered = len(timed) < 2 or pc.all(pc.greater_equal(timed[1:], timed[:-1])).as_py()
    return {"time_range": time_range, "untimed_rows": column.null_count, "time_ordered": ordered}


def _harvest_eve_partition(source: Source, partition: Partition, staging: Path) -> Partition:
    samples, lines, warnings = harvest_eve(source, partition.array_path)
    write_parquet(samples, staging / partition.key / DATA_FILE)
    write_parquet(lines, staging / side_keys(partition.key)[0] / DATA_FILE)
    partition.meta = {
        "instrument": "eve", "group": eve_group_name(partition.array_path), "array_path": partition.array_path,
        "rows": samples.num_rows, "lines": lines.column("name").to_pylist(),
        "fingerprint": partition.fingerprint, "built_at": now_utc(), "warnings": warnings,
    }
    return partition


def _ragged_table(ragged: dict[str, list]) -> pa.Table:
    return pa.table({
        "key": pa.array(list(ragged), pa.string()),
        "n_values": pa.array([len(v) for v in ragged.values()], pa.int64()),
        "values": pa.array([orjson.dumps(v).decode() for v in ragged.values()], pa.string()),
    })


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` as zstd Parquet at ``path`` (a staging path: callers rename it in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


#: Rows per Parquet row group of a frame partition: with rows in time order, each row group's
#: min/max ``T_OBS`` statistics cover a few weeks, so a time filter skips the others.
ROW_GROUP_ROWS = 8192


def write_partition_file(table: pa.Table, path: Path) -> None:
    """Write an AIA/HMI partition: rows sorted by ``T_OBS`` (then ``idx``; frames without a
    time last), ``idx`` kept as a column, row groups of :data:`ROW_GROUP_ROWS` with statistics."""
    import pyarrow.compute as pc

    if "T_OBS" in table.column_names and table.num_rows:
        order = pc.sort_indices(table, sort_keys=[("T_OBS", "ascending"), ("idx", "ascending")])  # nulls last
        table = table.take(order)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=True)


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


def now_utc() -> str:
    """The current UTC time as ``2026-11-26T15:00:00Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["build_catalog", "rebuild_catalog", "read_manifest", "fingerprint", "BuildReport", "open_source"]
