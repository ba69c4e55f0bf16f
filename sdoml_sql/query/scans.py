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

from typing import Any, Callable

#: Hive columns of a frame partition path (``aia/year=2010/channel=171A``).
FRAME_HIVE_TYPES = "{'year': INTEGER, 'channel': VARCHAR}"

DATA_FILE = "data.parquet"


def frame_partitions(manifest: dict[str, Any], instrument: str) -> list[tuple[str, dict]]:
    """``(key, entry)`` of the instrument's partitions in the manifest, in key order."""
    return sorted((key, entry) for key, entry in (manifest.get("partitions") or {}).items()
                  if entry.get("instrument") == instrument and entry.get("year") is not None)


def present(manifest: dict[str, Any], exists: Callable[[str], bool]) -> dict[str, Any]:
    """The manifest without the frame partitions whose file ``exists`` does not find (a
    catalog copied in part)."""
    partitions = {key: entry for key, entry in (manifest.get("partitions") or {}).items()
                  if entry.get("year") is None or exists(partition_file(key, entry))}
    return {**manifest, "partitions": partitions}


def partition_file(key: str, entry: dict[str, Any]) -> str:
    """Path of a partition's Parquet file relative to the catalog."""
    return f"{key}/{entry.get('file') or DATA_FILE}"


def frame_scan(manifest: dict[str, Any], instrument: str, locate: Callable[[str], str]) -> str | None:
    """The ``SELECT`` behind the instrument's view (``None`` if it has no partitions).

    ``locate`` turns a path relative to the catalog into what ``read_parquet`` is given
    (already an SQL string literal's inside)."""
    branches: dict[tuple, list[tuple[str, dict]]] = {}
    for key, entry in frame_partitions(manifest, instrument):
        signature = (entry["year"], tuple((name, info.get("type")) for name, info in (entry.get("keys") or {}).items()))
        branches.setdefault(signature, []).append((key, entry))
    if not branches:
        return None
    selects = []
    for members in branches.values():
        selects.extend(_branch(members, locate))
    union = "\n    UNION ALL BY NAME\n    ".join(selects)
    # union_by_name put the hive columns last: keep that column order
    return f"SELECT * EXCLUDE (year, channel), year, channel FROM (\n    {union}\n)"


def _branch(members: list[tuple[str, dict]], locate: Callable[[str], str]) -> list[str]:
    ranges = [entry.get("time_range") for _, entry in members]
    indexed = all("time_range" in entry and "T_OBS" in (entry.get("keys") or {}) for _, entry in members)
    if not indexed:
        return [f"SELECT * FROM {_read(members, locate)}"]
    timed = [(key, entry) for key, entry in members if entry.get("time_range")]
    selects = []
    if timed:
        first = min(r[0] for r in ranges if r)
        last = max(r[1] for r in ranges if r)
        selects.append(f"SELECT * FROM {_read(timed, locate)} "
                       f"WHERE T_OBS BETWEEN TIMESTAMP '{first}' AND TIMESTAMP '{last}'")
    untimed = [(key, entry) for key, entry in members if entry.get("untimed_rows")]
    if untimed:
        selects.append(f"SELECT * FROM {_read(untimed, locate)} WHERE T_OBS IS NULL")
    return selects


def _read(members: list[tuple[str, dict]], locate: Callable[[str], str]) -> str:
    files = ", ".join(f"'{locate(partition_file(key, entry))}'" for key, entry in members)
    return f"read_parquet([{files}], hive_partitioning = true, hive_types = {FRAME_HIVE_TYPES})"


def partitions_rows(manifest: dict[str, Any], locate: Callable[[str], str]) -> str:
    """``VALUES`` rows (instrument, year, channel, file) of every AIA/HMI partition."""
    rows = [f"('{instrument}', {entry['year']}, '{_sql_string(entry['channel'])}', "
            f"'{locate(partition_file(key, entry))}')"
            for instrument in ("aia", "hmi") for key, entry in frame_partitions(manifest, instrument)]
    return ",\n       ".join(rows)


def _sql_string(text: str) -> str:
    return text.replace("'", "''")
