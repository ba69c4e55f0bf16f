"""``SDOMLClient``: Fido's search and fetch over an sdoml-sql catalog."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
import parfive
import pyarrow as pa
import sunpy
import sunpy.net.attrs as a
from astropy.table import vstack
from astropy.time import Time
from sunpy import log
from sunpy.net.attr import and_
from sunpy.net.base_client import BaseClient, QueryResponseTable

from sdoml_sql.catalog_builder.layout import MANIFEST, Manifest
from sdoml_sql.catalog_builder.location import read_manifest
from sdoml_sql.config import default_catalog_dir
from sdoml_sql.exceptions import InputError, SdomlError, SearchErrorWarning
from sdoml_sql.fetch.output import fits_frames, write_fits_file
from sdoml_sql.fetch.stack import FlatSelection
from sdoml_sql.fido import attrs as sa
from sdoml_sql.fido.search import (
    PHYSOBS,
    SearchTerms,
    channel_physobs,
    channel_wavelength,
    search_sql,
    walker,
    wanted_channels,
)
from sdoml_sql.query.catalog import open_catalog

#: The SDOML v2 arrays, listed by ``register_values`` when there is no default catalog.
PUBLISHED_CHANNELS = sa.CHANNELS

INSTRUMENTS = {"aia": "Atmospheric Imaging Assembly (SDOML v2: 512x512 px, 6-minute cadence)",
               "hmi": "Helioseismic and Magnetic Imager vector field (SDOML v2: 512x512 px, 12-minute cadence)"}

#: SunPy 8's Fido.search catches a client's exception and keeps it in ``results.errors``
#: (SunPy 7 raised it): the client then also warns, so the error reaches the user.
FIDO_KEEPS_ERRORS = int(sunpy.__version__.split(".")[0]) >= 8

#: Hidden column naming the catalog a row came from (Fido.fetch reads it).
CATALOG_COLUMN = "Catalog"


def _value_is_ours(attr) -> bool:
    checks = {a.Instrument: INSTRUMENTS, a.Provider: {"sdoml"}, a.Source: {"sdo"}, a.Physobs: PHYSOBS}
    for kind, values in checks.items():
        if isinstance(attr, kind):
            return str(attr.value).lower() in values
    return True


def manifest_channels(manifest: dict[str, Any]) -> dict[str, str]:
    """``{channel: instrument}`` of a catalog manifest's AIA and HMI partitions."""
    partitions = Manifest.of(manifest).frame_partitions(INSTRUMENTS).values()
    return {p["channel"]: p["instrument"] for p in partitions}


def catalog_values(channels: dict[str, str]) -> dict:
    """The ``register_values`` of a ``{channel: instrument}`` mapping."""
    instruments = list(dict.fromkeys(channels.values()))
    wavelengths = {}
    for channel, instrument in channels.items():
        wavelengths.setdefault(f"{channel_wavelength(instrument, channel):g} Angstrom", []).append(channel)
    return {
        a.Instrument: [(i.upper(), INSTRUMENTS[i]) for i in instruments],
        a.Wavelength: [(w, f"SDOML {', '.join(c)}") for w, c in wavelengths.items()],
        a.Physobs: [(channel_physobs(i), f"SDOML {i.upper()}") for i in instruments],
        a.Provider: [("SDOML", "The SDO ML v2 dataset, searched in an sdoml-sql catalog")],
        a.Source: [("SDO", "Solar Dynamics Observatory")],
        # "AIA_171A": SunPy names it aia_171a (a name from "171A" would be one_71a)
        sa.Channel: [(f"{i.upper()}_{c}", f"{i.upper()} {c}") for c, i in channels.items()],
    }


def default_catalog_available() -> bool:
    """Whether the default catalog (``$SDOML_CATALOG``, then the user default) exists."""
    return os.path.isfile(default_catalog_dir() / MANIFEST)


class SDOMLClient(BaseClient):
    """SDO ML v2 frames found in an sdoml-sql catalog, fetched as FITS files.

    ``Fido.search(a.Time(...), a.Instrument.aia, a.Wavelength(171 * u.AA), a.Sample(12 * u.min))``
    searches the default catalog (``$SDOML_CATALOG``, then the user default) beside the
    other clients; a query with an ``a.sdoml`` attr (``a.sdoml.Catalog(path)``,
    ``a.sdoml.Channel``, ``a.sdoml.Keyword``, ``a.sdoml.Tolerance``) is answered by this
    client alone.  ``Fido.fetch`` writes one FITS file per row, read chunk-aware.
    """

    def search(self, *query, **kwargs) -> QueryResponseTable:
        """One row per frame: Start Time, Instrument, Channel, Wavelength, Physobs, Exposure
        Time (AIA), Sample Time and Sample Offset (with ``a.Sample``), Provider and the
        locator year, Channel, idx."""
        try:
            tables = [self._search_branch(terms) for terms in walker.create(and_(*query))]
        except SdomlError as error:
            if FIDO_KEEPS_ERRORS:  # the exception would end up in results.errors, unseen
                warnings.warn(f"SDOML search failed: {error}", SearchErrorWarning, stacklevel=2)
            raise
        table = vstack(tables) if len(tables) > 1 else tables[0]
        response = QueryResponseTable(table, client=self)
        response.hide_keys = [CATALOG_COLUMN]
        return response

    def _search_branch(self, terms: SearchTerms):
        catalog = open_catalog(terms.catalog)
        channels = wanted_channels(terms, catalog.channels())
        columns = {instrument: catalog.columns(instrument) for instrument in INSTRUMENTS}
        sql, params = search_sql(terms, channels, columns)
        table = catalog.query(sql, params).table if sql else None
        if table is None or table.num_rows == 0:
            log.info(f"SDOML: no frames for this query in {catalog.directory}; it covers {coverage(catalog)}")
        return response_table(table, terms.sampled, str(catalog.directory))

    def fetch(self, query_results, *, path, downloader, **kwargs) -> parfive.Results:
        """Write one FITS file per row to ``path`` (a ``{file}`` template, as Fido gives it);
        return the paths written as ``parfive.Results``, failures in its ``errors``.

        Chunks are read once for the whole fetch; an existing file is kept (and its frame not
        read) unless ``Fido.fetch(..., overwrite=True)``."""
        if isinstance(downloader, parfive.Downloader):
            downloader.download = lambda: download_in_a_closed_loop(downloader)
        results = parfive.Results()
        rows = query_results if isinstance(query_results, QueryResponseTable) else query_results.as_table()
        names = fits_names(rows)
        targets = [fits_target(path, name, row) for name, row in zip(names, rows)]
        urls = frame_urls(rows)
        config = getattr(downloader, "config", None)
        if config is not None and not getattr(downloader, "queued_downloads", 0):
            config.progress = False  # we download nothing through parfive: no "Files Downloaded: 0file" bar
        overwrite = getattr(config, "overwrite", False) is True  # "unique" keeps the existing file too
        progress = bool(getattr(config, "progress", False))
        catalogs = [str(row[CATALOG_COLUMN]) for row in rows]
        for directory in dict.fromkeys(catalogs):
            mine = [i for i, c in enumerate(catalogs) if c == directory]
            kept = [i for i in mine if not overwrite and targets[i].exists()]
            for i in kept:
                results.append(path=str(targets[i]), url=urls[i])
            todo = [i for i in mine if i not in kept]
            if todo:
                _write_rows(directory, rows, todo, targets, urls, results, progress)
        return results

    @classmethod
    def _can_handle_query(cls, *query) -> bool:
        """Standard attrs (Time with AIA/HMI) when a default catalog exists; any query with an
        ``a.sdoml`` attr.  a.Time is required; JSOC's, VSO's own attrs are never claimed."""
        ours = (sa.Catalog, sa.Channel, sa.KeywordFilter, sa.Tolerance)
        optional = {a.Instrument, a.Wavelength, a.Physobs, a.Sample, a.Provider, a.Source, *ours}
        if not cls.check_attr_types_in_query(query, {a.Time}, optional):
            return False
        if not all(_value_is_ours(attr) for attr in query):
            return False
        if any(isinstance(attr, ours) for attr in query):
            return True
        has_instrument = any(isinstance(attr, a.Instrument) for attr in query)
        return has_instrument and default_catalog_available()

    @classmethod
    def _attrs_module(cls):
        return "sdoml", "sdoml_sql.fido.attrs"

    @classmethod
    def register_values(cls) -> dict:
        """Instruments, wavelengths, physobs and channels of the default catalog (of SDOML v2
        as published when there is none)."""
        try:  # called when the class is made, on import: a broken catalog must not stop it
            manifest = read_manifest(default_catalog_dir())
        except (OSError, SdomlError):
            manifest = None
        return catalog_values(manifest_channels(manifest) if manifest else PUBLISHED_CHANNELS)


def download_in_a_closed_loop(downloader: parfive.Downloader) -> parfive.Results:
    """What ``downloader.download()`` does (Fido calls it once the clients have queued their
    files), in an event loop that is closed when it returns.

    parfive leaves its loop open, with SIGINT/SIGTERM handlers on it and Python's signal wakeup
    fd on the loop's socket.  The garbage collector frees that loop later on whatever thread it
    runs (a query's helper thread, a dask worker), where the close fails ("Exception ignored …
    signal only works in main thread") and leaves the wakeup fd on a closed descriptor: the next
    signal (a loader worker's SIGCHLD) prints "OSError: Bad file descriptor", or writes a byte
    into a file that got that number.  Ctrl-C still cancels the download."""
    def run():
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:  # leaves the thread's loop alone
            return runner.run(downloader.run_download())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(max_workers=1) as pool:  # called under a running loop (a notebook cell)
        return pool.submit(run).result()


def coverage(catalog) -> str:
    """What a catalog holds, in one line: ``aia 171A, 193A 2010-08-27 … 2010-08-28; hmi …``."""
    spans = dict((i, (lo, hi)) for i, lo, hi in catalog.sql(
        "SELECT instrument, min(T_OBS), max(T_OBS) FROM frame_times GROUP BY 1").fetchall())
    parts = []
    for instrument in INSTRUMENTS:
        channels = [c for c, i in catalog.channels().items() if i == instrument]
        if not channels or instrument not in spans:
            parts.append(f"no {instrument.upper()}")
            continue
        lo, hi = spans[instrument]
        parts.append(f"{instrument.upper()} {', '.join(sorted(channels, key=_channel_order))} "
                     f"from {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M}")
    return "; ".join(parts)


def _channel_order(channel: str):
    return (0, float(channel[:-1])) if channel[:-1].isdigit() else (1, channel)


# --- results --------------------------------------------------------------------------------

def response_table(table: pa.Table | None, sampled: bool, catalog_dir: str):
    """The astropy table of search results from the SQL result ``table`` (None: no rows)."""
    from astropy.table import QTable

    frame = table.to_pandas() if table is not None else pd.DataFrame(
        columns=["instrument", "year", "channel", "idx", "T_OBS", "sample_time", "offset_s", "exptime"])
    instruments = frame["instrument"].astype(str).tolist()
    channels = frame["channel"].astype(str).tolist()
    columns: dict[str, Any] = {
        "Start Time": _times(frame["T_OBS"]),
        "Instrument": np.array([i.upper() for i in instruments], dtype=str),
        "Channel": np.array(channels, dtype=str),
        "Wavelength": [channel_wavelength(i, c) for i, c in zip(instruments, channels)] * u.AA,
        "Physobs": np.array([channel_physobs(i) for i in instruments], dtype=str),
    }
    if "exptime" in frame and frame["exptime"].notna().any():
        columns["Exposure Time"] = frame["exptime"].astype(float).to_numpy() * u.s
    if sampled:
        columns["Sample Time"] = _times(frame["sample_time"])
        columns["Sample Offset"] = frame["offset_s"].astype(float).to_numpy() * u.s
    columns["Provider"] = np.array(["SDOML"] * len(frame), dtype=str)
    columns["year"] = frame["year"].astype(int).to_numpy()
    columns["idx"] = frame["idx"].astype(int).to_numpy()
    columns[CATALOG_COLUMN] = np.array([catalog_dir] * len(frame), dtype=str)
    return QTable(columns)


def _times(values: pd.Series) -> Time:
    times = Time(pd.to_datetime(values).to_numpy(dtype="datetime64[ns]"), format="datetime64", scale="utc")
    times.format, times.precision = "iso", 3
    return times


# --- fetch ----------------------------------------------------------------------------------

def fits_names(rows) -> list[str]:
    """SunPy-style file names: ``aia_171a_2010_08_27t00_00_09_58.fits`` (instrument, channel,
    UTC start time to 1/100 s); a name two rows share gets the locator (``_2020_17``)."""
    names = [_fits_name(row["Instrument"], row["Channel"], row["Start Time"]) for row in rows]
    counts = Counter(names)
    return [name if counts[name] == 1 else f"{name[:-5]}_{row['year']}_{row['idx']}.fits"
            for name, row in zip(names, rows)]


def _fits_name(instrument: str, channel: str, start: Time) -> str:
    stamp = pd.Timestamp(start.utc.datetime64)
    return f"{instrument.lower()}_{channel.lower()}_{stamp:%Y_%m_%dt%H_%M_%S}_{stamp.microsecond // 10000:02d}.fits"


def fits_target(path, name: str, row) -> Path:
    """``path`` (Fido's template) filled for one row: ``{file}``, SunPy's lower-case keys
    (``{instrument}``, ``{start_time}``) and the table's column names (``{Channel}``,
    ``{Start_Time}``); an unknown key is a one-line :class:`InputError` naming the valid ones."""
    keys = dict(row.response_block_map)
    for column in row.colnames:
        keys.setdefault(column.replace(" ", "_"), row[column])
    keys["file"] = name
    try:
        return Path(str(path).format(**keys))
    except KeyError as error:
        raise InputError(f"path template {str(path)!r}: no key {error.args[0]!r}; the keys are "
                         f"{', '.join('{' + k + '}' for k in keys)}") from None
    except (IndexError, ValueError) as error:
        raise InputError(f"path template {str(path)!r}: {error}") from None


def frame_urls(rows) -> list[str]:
    """Where each row's frame lives, as a URL-like locator (parfive's ``urls`` and errors):
    ``<store url>/2010/171A#idx=3``."""
    sources: dict[str, dict] = {}
    urls = []
    for row in rows:
        directory = str(row[CATALOG_COLUMN])
        if directory not in sources:
            sources[directory] = _read_sources(directory)
        instrument = str(row["Instrument"]).lower()
        store = (sources[directory].get(instrument) or {}).get("url", instrument)
        urls.append(f"{store}/{row['year']}/{row['Channel']}#idx={row['idx']}")
    return urls


def _read_sources(directory: str) -> dict:
    try:
        return Manifest.of(read_manifest(directory)).sources
    except Exception:  # a broken catalog is reported when its frames are read
        return {}


def row_locators(rows, positions: list[int] | None = None) -> pd.DataFrame:
    """The fetch layer's locators (instrument, year, channel, idx) of result rows."""
    positions = range(len(rows)) if positions is None else positions
    return pd.DataFrame({
        "instrument": [str(rows[i]["Instrument"]).lower() for i in positions],
        "year": pd.array([int(rows[i]["year"]) for i in positions], dtype="Int64"),
        "channel": [str(rows[i]["Channel"]) for i in positions],
        "idx": pd.array([int(rows[i]["idx"]) for i in positions], dtype="Int64"),
    })


def _write_rows(directory: str, rows, todo: list[int], targets: list[Path], urls: list[str],
                results: parfive.Results, progress: bool) -> None:
    """Fetch rows ``todo`` of one catalog into ``targets``; every failure goes to the results'
    errors (a failed read fails the frames not written yet)."""
    done: set[int] = set()
    try:
        selection = FlatSelection(open_catalog(directory), row_locators(rows, todo))
        for n, _, pixels, meta in fits_frames(selection, progress=progress):
            i = todo[n]
            done.add(i)
            _write_one(targets[i], pixels, meta, urls[i], results)
    except Exception as error:  # as a downloader does: report, do not raise
        for i in todo:
            if i not in done:
                results.add_error(str(targets[i]), urls[i], error)


def _write_one(target: Path, pixels: np.ndarray, meta: dict[str, Any], url: str, results: parfive.Results) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_fits_file(target, pixels, meta)
    except OSError as error:
        results.add_error(str(target), url, error)
        return
    results.append(path=str(target), url=url)
