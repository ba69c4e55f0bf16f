"""The scans behind the ``aia``, ``hmi`` and ``partitions`` views, declared from the manifest.

A query's cost must not grow with the number of partition files (14 years x 12 channels
is 168 of them).  So a frame view does not list the catalog directory nor merge the
schemas of every file (``union_by_name``): it reads the files the manifest names, grouped
into *branches* of one year and one schema (the same keywords with the same types).  A
branch is one ``read_parquet`` of files that share a schema, which DuckDB binds from one
footer; branches are put together with ``UNION ALL BY NAME``, which gives the same columns
and types as ``union_by_name`` over all the files.

Each branch also carries its time range from the manifest's time index (``time_range``,
``untimed_rows`` per partition): ``WHERE T_OBS BETWEEN first AND last``.  DuckDB combines
that with a query's own time filter, and a branch whose range the filter excludes is dropped
while planning, its files never opened.  Inside a file, rows are in ``T_OBS`` order in row
groups of a few weeks, so the row-group statistics skip the rest.  Frames without a time
are in a branch of their own (``T_OBS IS NULL``), over only the files that have some.

Partitions written before the time index existed have no ``time_range``: their branch has
no time condition (correct, but opened by every query; ``rebuild --full`` adds the index).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from sdoml_sql.catalog_builder.layout import TIME_SUFFIX, Manifest, partition_file

#: Hive columns of a frame partition path (``aia/year=2010/channel=171A``).
FRAME_HIVE_TYPES = "{'year': INTEGER, 'channel': VARCHAR}"



def frame_partitions(manifest: dict[str, Any], instrument: str) -> list[tuple[str, dict]]:
    """``(key, entry)`` of the instrument's partitions in the manifest, in key order."""
    return sorted((key, entry) for key, entry in Manifest.of(manifest).frame_partitions([instrument]).items()
                  if entry.get("year") is not None)


def present(manifest: dict[str, Any], exists: Callable[[str], bool]) -> Manifest:
    """The manifest without the frame partitions whose file ``exists`` does not find (a
    catalog copied in part)."""
    manifest = Manifest.of(manifest)
    return manifest.with_partitions({key: entry for key, entry in manifest.partitions.items()
                                     if entry.get("year") is None or exists(partition_file(key, entry))})


def schema_groups(manifest: dict[str, Any], instrument: str) -> dict[bytes, list[tuple[str, dict]]]:
    """The instrument's partitions grouped by schema (the same keywords, types, order; the
    whole ``keys`` entry is compared, which never groups two different schemas together)."""
    groups: dict[bytes, list[tuple[str, dict]]] = {}
    for key, entry in frame_partitions(manifest, instrument):
        groups.setdefault(orjson.dumps(entry.get("keys") or {}), []).append((key, entry))
    return groups


def frame_scan(manifest: dict[str, Any], instrument: str, locate: Callable[[str], str]) -> str | None:
    """The ``SELECT`` behind the instrument's view (``None`` if it has no partitions).

    ``locate`` turns a path relative to the catalog into what ``read_parquet`` is given
    (already an SQL string literal's inside)."""
    branches = schema_groups(manifest, instrument)
    if not branches:
        return None
    if len(branches) == 1:
        return f"SELECT * FROM {_read(next(iter(branches.values())), locate)}"
    union = "\n    UNION ALL BY NAME\n    ".join(f"SELECT * FROM {_read(m, locate)}" for m in branches.values())
    # union_by_name puts the hive columns last, in name order: keep that column order
    return f"SELECT * EXCLUDE (channel, year), channel, year FROM (\n    {union}\n)"


#: Columns of an instrument view without partitions (``sql/views/empty/``).
EMPTY_COLUMNS = [("idx", "BIGINT"), ("T_OBS", "TIMESTAMP"), ("T_OBS_STR", "VARCHAR"), ("year", "INTEGER"),
                 ("channel", "VARCHAR")]  # as declared in views/empty/
_NUMERIC = {"BIGINT", "DOUBLE"}


def view_columns(manifest: dict[str, Any], instrument: str) -> list[tuple[str, str]]:
    """``(name, type)`` of the instrument view's columns as the manifest declares them — the
    order and types ``union_by_name`` gives — without opening a file."""
    columns: dict[str, str] = {}
    for (_, entry), *_ in schema_groups(manifest, instrument).values():
        declared = [("idx", "BIGINT")]
        for name, info in (entry.get("keys") or {}).items():
            declared.append((name, info.get("type") or "NULL"))
            if info.get("type") == "TIMESTAMP":
                declared.append((name + TIME_SUFFIX, "VARCHAR"))
        for name, kind in declared:
            columns[name] = _wider(columns.get(name), kind)
    if not columns:
        return EMPTY_COLUMNS
    return [*columns.items(), ("channel", "VARCHAR"), ("year", "INTEGER")]


def _wider(old: str | None, new: str) -> str:
    if old is None or old == new or new == "NULL":
        return old or new
    if old == "NULL":
        return new
    return "DOUBLE" if {old, new} <= _NUMERIC else "VARCHAR"


#: Year slack when a partition has no time index: no year is skipped.
UNKNOWN_SLACK = 10_000


def year_slack(manifest: dict[str, Any]) -> int:
    """The most whole years a frame's ``T_OBS`` lies from its partition's ``year`` (from
    the time index; frames just across New Year make it 1)."""
    slack = 0
    for instrument in ("aia", "hmi"):
        for _, entry in frame_partitions(manifest, instrument):
            if "time_range" not in entry:
                return UNKNOWN_SLACK
            for stamp in entry["time_range"] or ():
                slack = max(slack, abs(int(stamp[:4]) - entry["year"]))
    return slack


def years_within(manifest: dict[str, Any], instrument: str, first, last) -> list[int]:
    """Years of the instrument's partitions whose frames may lie in ``[first, last]``
    (datetimes, either may be None), from the manifest's time index; every year of a
    partition without an index entry."""
    years = set()
    for _, entry in frame_partitions(manifest, instrument):
        span = entry.get("time_range")
        if "time_range" not in entry:
            years.add(entry["year"])
        elif span and (last is None or span[0] <= last.isoformat(sep=" ")) and (
                first is None or span[1] >= first.isoformat(sep=" ")):
            years.add(entry["year"])
    return sorted(years)


def _read(members: list[tuple[str, dict]], locate: Callable[[str], str]) -> str:
    files = ", ".join(f"'{locate(partition_file(key, entry))}'" for key, entry in members)
    return f"read_parquet([{files}], hive_partitioning = true, hive_types = {FRAME_HIVE_TYPES})"


def partitions_rows(manifest: dict[str, Any], locate: Callable[[str], str]) -> str:
    """``VALUES`` rows (instrument, year, channel, file, fingerprint) of every AIA/HMI partition."""
    rows = [f"('{instrument}', {entry['year']}, '{_sql_string(entry['channel'])}', "
            f"'{locate(partition_file(key, entry))}', '{_sql_string(str(entry.get('fingerprint') or ''))}')"
            for instrument in ("aia", "hmi") for key, entry in frame_partitions(manifest, instrument)]
    return ",\n       ".join(rows)


def _sql_string(text: str) -> str:
    return text.replace("'", "''")
