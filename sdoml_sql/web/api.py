"""What the explorer's JSON API answers, as plain functions of a catalog (no HTTP here).

Every query goes through :meth:`Catalog.page` / :meth:`Catalog.text` (one read-only
statement on the locked-down connection, with the time limit); every frame is read through
the fetch stage (:mod:`sdoml_sql.fetch.images`, :mod:`sdoml_sql.fetch.output`); path
parameters are checked against the catalog's manifest before anything is read, so no
request names a file.  Errors are the one-line :class:`~sdoml_sql.exceptions.SdomlError`
messages the command line prints; :class:`NotFound` and :class:`BadRequest` name what was
wrong with a request.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sdoml_sql.catalog_builder.layout import partition_key
from sdoml_sql.exceptions import EmptyResultWarning, SdomlError
from sdoml_sql.fetch import images
from sdoml_sql.fetch.images import one_frame
from sdoml_sql.fetch.maps import header
from sdoml_sql.fetch.output import fits_frames, write_fits
from sdoml_sql.quality.plot import FLAGS, channel_order, quality_counts
from sdoml_sql.query.sqlfiles import example, example_names
from sdoml_sql.query.text import plain

FRAME_INSTRUMENTS = ("aia", "hmi")
#: Rows a result page shows unless asked, and the most it may show.
PAGE_ROWS = 100
MAX_PAGE_ROWS = 1000
#: The furthest a page may start: paging further means streaming past that many rows.
MAX_OFFSET = 1_000_000
#: How far from a frame's time the frame page looks for the other channels' frames.
NEIGHBOUR_WINDOW = pd.Timedelta(days=1)


class NotFound(SdomlError):
    """A path names no frame, page or file the explorer has (HTTP 404)."""


class BadRequest(SdomlError):
    """A request parameter is malformed or out of bounds (HTTP 400)."""


@dataclass(frozen=True)
class Frame:
    """A frame located and checked against the catalog's manifest."""

    instrument: str
    year: int
    channel: str
    idx: int

    def locator(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "year": self.year, "channel": self.channel, "idx": self.idx}

    @property
    def path(self) -> str:
        return f"{self.instrument}/{self.year}/{self.channel}/{self.idx}"


def check_frame(catalog, instrument: str, year: str, channel: str, idx: str) -> Frame:
    """The :class:`Frame` named by path parameters, or :class:`NotFound` naming what does not
    exist: an instrument, a year or channel the catalog lacks, an idx outside the array."""
    if instrument not in FRAME_INSTRUMENTS:
        raise NotFound(f"no instrument {instrument!r}: frames are aia or hmi")
    if not year.isdigit():
        raise NotFound(f"no year {year!r} in the catalog")
    entry = (catalog.manifest.get("partitions") or {}).get(partition_key(instrument, int(year), channel))
    if entry is None:
        held = [e for e in (catalog.manifest.get("partitions") or {}).values() if e.get("instrument") == instrument]
        pairs = pd.DataFrame([(instrument, str(e.get("channel"))) for e in held], columns=["instrument", "channel"])
        channels = ", ".join(channel for _, channel in channel_order(pairs)) or "none"
        years = ", ".join(str(y) for y in sorted({int(e.get("year")) for e in held})) or "none"
        raise NotFound(f"no {instrument} array {year}/{channel} in the catalog: its {instrument} channels are "
                       f"{channels}, its years {years}")
    rows = int(entry.get("rows") or 0)
    if not idx.isdigit() or int(idx) >= rows:
        raise NotFound(f"no frame {idx!r} in {instrument} {year}/{channel}: idx runs from 0 to {rows - 1}")
    return Frame(instrument, int(year), channel, int(idx))


def page_bounds(offset: str | None, limit: str | None) -> tuple[int, int]:
    """``offset`` and ``limit`` of a result page, checked: whole numbers, ``limit`` at most
    :data:`MAX_PAGE_ROWS`, ``offset`` at most :data:`MAX_OFFSET`."""
    values = []
    for name, text, default, most in (("offset", offset, 0, MAX_OFFSET), ("limit", limit, PAGE_ROWS, MAX_PAGE_ROWS)):
        if text is None or text == "":
            values.append(default)
            continue
        if not text.isdigit():
            raise BadRequest(f"{name} {text[:40]!r} is not a whole number of rows")
        if int(text) > most:
            raise BadRequest(f"{name} {int(text):,} is over the explorer's limit of {most:,} rows: narrow the query "
                             "(WHERE, LIMIT) or use sdoml-sql query for whole results")
        values.append(int(text))
    return values[0], values[1]


# --- queries --------------------------------------------------------------------------------

def run_query(catalog, sql: str, offset: int = 0, limit: int = PAGE_ROWS, timeout: float | None = None) -> dict:
    """One page of a query's rows: ``columns``, ``rows`` (JSON values as ``sdoml-sql query
    --format json`` writes them), ``frames`` (the frame locators of each row, for thumbnails),
    ``row_count`` (all rows), ``offset``, ``limit``, ``elapsed_ms`` and ``hints``."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyResultWarning)  # answered as "hints"
        selection, total = catalog.page(sql, offset, limit, query_timeout=timeout)
    columns, rows = selection.to_records()
    return {"columns": columns, "rows": rows, "frames": row_frames(selection), "row_count": total,
            "offset": offset, "limit": limit, "kind": selection.kind, "hints": selection.hints,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}


def row_frames(selection) -> list[list[dict[str, Any]]]:
    """Per result row, the frames it names (none, one, or one per channel of an aligned row)."""
    kind = selection.kind
    if kind not in ("frames", "aligned") or not len(selection):
        return [[] for _ in range(len(selection))]
    locators = selection.locators()
    per_row: list[list[dict[str, Any]]] = [[] for _ in range(len(selection))]
    rows = locators["row"] if kind == "aligned" else pd.Series(range(len(locators)))
    first_row = int(rows.iloc[0]) if kind == "aligned" and len(rows) else 0
    for position, locator in zip(rows, locators.itertuples(index=False)):
        if pd.isna(locator.idx) or locator.instrument not in FRAME_INSTRUMENTS:
            continue
        target = int(position) - first_row if kind == "aligned" else int(position)
        if 0 <= target < len(per_row):
            per_row[target].append({"instrument": str(locator.instrument), "year": int(locator.year),
                                    "channel": str(locator.channel), "idx": int(locator.idx)})
    return per_row


def query_text(catalog, sql: str, format: str, timeout: float | None = None) -> str:
    """The whole result as ``sdoml-sql query --format FORMAT`` prints it (csv or json)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyResultWarning)
        return catalog.text(sql, format, query_timeout=timeout)


def examples() -> list[dict[str, str]]:
    """The example queries shipped in ``sql/examples`` (name and SQL), for the editor."""
    return [{"name": name, "sql": example(name).strip()} for name in example_names()]


# --- frames ---------------------------------------------------------------------------------

def frame_png(catalog, frame: Frame, thumbnail: bool = False) -> bytes:
    """The frame as ``maps()`` colours it, full size or as a 128×128 thumbnail."""
    return (images.thumbnail_png if thumbnail else images.frame_png)(catalog, *_where(frame))


def frame_fits(catalog, frame: Frame) -> tuple[str, bytes]:
    """``(file name, bytes)`` of the frame's FITS file as ``Fido.fetch`` writes it."""
    for _, _, pixels, meta in fits_frames(one_frame(catalog, *_where(frame))):
        buffer = io.BytesIO()
        write_fits(buffer, pixels, meta)
        return _fits_name(catalog, frame), buffer.getvalue()
    raise NotFound(f"no frame {frame.path}")


def _fits_name(catalog, frame: Frame) -> str:
    """The file name ``Fido.fetch`` gives the frame (``aia_171a_2010_08_27t00_00_09_37.fits``)."""
    from sdoml_sql.fido.client import fits_names, response_table

    row = catalog.query("SELECT instrument, year, channel, idx, T_OBS FROM frame_times "
                        "WHERE instrument = $i AND year = $y AND channel = $c AND idx = $x",
                        {"i": frame.instrument, "y": frame.year, "c": frame.channel, "x": frame.idx}).to_arrow()
    if not row.num_rows or row.column("T_OBS")[0].as_py() is None:
        return f"{frame.instrument}_{frame.channel.lower()}_{frame.year}_{frame.idx}.fits"
    return fits_names(response_table(row, False, str(catalog.directory)))[0]


def frame_header(catalog, frame: Frame) -> list[list[Any]]:
    """The frame's FITS header as the store has it, ``[key, value]`` pairs in source order."""
    return [[key, plain(value)] for key, value in header(one_frame(catalog, *_where(frame)), 0).items()]


def _where(frame: Frame) -> tuple[str, int, str, int]:
    return frame.instrument, frame.year, frame.channel, frame.idx


NEIGHBOURS_SQL = """
WITH this AS (SELECT T_OBS FROM frame_times
              WHERE instrument = $instrument AND year = $year AND channel = $channel AND idx = $idx),
same AS (SELECT year, idx, T_OBS FROM frame_times WHERE instrument = $instrument AND channel = $channel),
previous AS (SELECT 'previous' AS side, s.year, s.idx, s.T_OBS FROM same s, this t
             WHERE s.T_OBS < t.T_OBS OR (s.T_OBS = t.T_OBS AND (s.year < $year OR (s.year = $year AND s.idx < $idx)))
             ORDER BY s.T_OBS DESC, s.year DESC, s.idx DESC LIMIT 1),
following AS (SELECT 'next' AS side, s.year, s.idx, s.T_OBS FROM same s, this t
              WHERE s.T_OBS > t.T_OBS OR (s.T_OBS = t.T_OBS AND (s.year > $year OR (s.year = $year AND s.idx > $idx)))
              ORDER BY s.T_OBS, s.year, s.idx LIMIT 1)
SELECT 'this' AS side, $instrument AS instrument, $channel AS channel, $year AS year, $idx AS idx, T_OBS FROM this
UNION ALL SELECT side, $instrument, $channel, year, idx, T_OBS FROM previous
UNION ALL SELECT side, $instrument, $channel, year, idx, T_OBS FROM following
"""

OTHER_CHANNELS_SQL = """
SELECT instrument, channel,
       arg_min(year, abs(epoch(T_OBS) - epoch($time::TIMESTAMP))) AS year,
       arg_min(idx, abs(epoch(T_OBS) - epoch($time::TIMESTAMP))) AS idx,
       arg_min(T_OBS, abs(epoch(T_OBS) - epoch($time::TIMESTAMP))) AS T_OBS
FROM frame_times
WHERE T_OBS BETWEEN $time::TIMESTAMP - $window::INTERVAL AND $time::TIMESTAMP + $window::INTERVAL
  AND NOT (instrument = $instrument AND channel = $channel)
GROUP BY instrument, channel
"""


def frame_info(catalog, frame: Frame, timeout: float | None = None) -> dict:
    """The frame page's data: the frame, its time, the previous and next frame of its channel
    in time, and each other channel's frame nearest in time (within a day)."""
    params = {"instrument": frame.instrument, "year": frame.year, "channel": frame.channel, "idx": frame.idx}
    info: dict[str, Any] = {**frame.locator(), "T_OBS": None, "previous": None, "next": None, "others": []}
    when = None
    for row in catalog.query(NEIGHBOURS_SQL, params, query_timeout=timeout):
        side = row.pop("side")
        if side == "this":
            when = row["T_OBS"]
            info["T_OBS"] = plain(when)
        else:
            info[side] = {k: plain(v) for k, v in row.items()}
    if when is None:
        return info
    window = f"{int(NEIGHBOUR_WINDOW.total_seconds())} seconds"
    others = catalog.query(OTHER_CHANNELS_SQL, {"time": str(when), "window": window, "instrument": frame.instrument,
                                                "channel": frame.channel}, query_timeout=timeout)
    rows = [{k: plain(v) for k, v in row.items()} for row in others]
    for row in rows:
        row["offset_s"] = round((pd.Timestamp(row["T_OBS"]) - pd.Timestamp(when)).total_seconds(), 3)
    order = {pair: n for n, pair in enumerate(channel_order(pd.DataFrame(rows, columns=["instrument", "channel"])))}
    info["others"] = sorted(rows, key=lambda r: order[(r["instrument"], r["channel"])])
    return info


# --- coverage -------------------------------------------------------------------------------

def coverage(catalog, start: str | None = None, stop: str | None = None, bucket: str | None = None,
             gap: str | None = None, timeout: float | None = None) -> dict:
    """Per channel, frames and gaps per time bucket and flagged frames (from
    ``frame_quality`` when statistics exist): the data of ``sdoml-sql plot-quality``."""
    counts, flags, params, frames, checked = quality_counts(catalog, start=start or None, stop=stop or None,
                                                            bucket=bucket or None, gap=gap or None,
                                                            query_timeout=timeout)
    flagged: dict[tuple, dict[str, int]] = {}
    for row in flags.itertuples(index=False):
        flagged.setdefault((row.instrument, row.channel, pd.Timestamp(row.bucket)), {})[row.flag] = int(row.frames)
    channels = []
    for instrument, channel in channel_order(counts):
        rows = counts[(counts.instrument == instrument) & (counts.channel == channel)].sort_values("bucket")
        channels.append({"instrument": instrument, "channel": channel, "buckets": [
            {"start": plain(pd.Timestamp(b).to_pydatetime()), "frames": int(n), "gaps": int(g),
             "flagged": flagged.get((instrument, channel, pd.Timestamp(b)), {})}
            for b, n, g in zip(rows["bucket"], rows["frames"], rows["gaps"])]})
    return {**params, "frames": frames, "checked": checked,
            "flags": list(FLAGS), "channels": channels}
