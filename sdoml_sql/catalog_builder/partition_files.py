"""Harvesting planned partitions into staged Parquet files: in threads or on a dask cluster, with progress."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from sdoml_sql.catalog_builder import remote
from sdoml_sql.catalog_builder.harvest import harvest_array, harvest_eve
from sdoml_sql.catalog_builder.layout import DATA_FILE, eve_group_name, side_keys
from sdoml_sql.catalog_builder.location import open_location
from sdoml_sql.catalog_builder.plan import Partition
from sdoml_sql.stores.source import Source, open_store


def harvest_all(sources, todo: list[Partition], staging: Path, progress: bool,
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
                done.append(harvest_partition(source, partition, staging, downloaded))
                del downloaded, future
                bar.advance(done[-1])
        finally:
            for future in downloads.values():
                future.cancel()
            bar.close()
    return sorted(done, key=lambda p: p.key)


def harvest_distributed(client, sources, todo: list[Partition], staging: Path | None, progress: bool,
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
        return harvest_partition(source, partition, Path(staging))
    catalog_url, catalog_options, build_id = publish
    location = open_location(catalog_url, storage_options=catalog_options)
    private = remote.private_staging()
    try:
        partition = harvest_partition(source, partition, private)
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


def harvest_partition(source: Source, partition: Partition, staging: Path, downloaded=None) -> Partition:
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


def now_utc() -> str:
    """The current UTC time as ``2026-11-26T15:00:00Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
