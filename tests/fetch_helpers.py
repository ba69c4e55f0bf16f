"""Helpers for the fetch-layer tests: a store wrapper that counts chunk reads, and
selections built from plain locator tables over a real catalog's sources."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from zarr.storage import WrapperStore

CHUNK_KEY = re.compile(r"(^|/)\d+(\.\d+)*$")


class CountingStore(WrapperStore):
    """A read-only zarr store wrapper that counts chunk reads: ``reads`` gets one key per
    whole-chunk ``get`` or partial read (the read of its header, bytes from 0; those keys
    also go to ``headers``), ``ranges`` the block ranges partial reads then take."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: list[str] = []
        self.headers: list[str] = []
        self.ranges: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    async def get(self, key, prototype, byte_range=None):
        if CHUNK_KEY.search(key):
            start = getattr(byte_range, "start", 0)
            with self._lock:
                if start == 0:
                    self.reads.append(key)
                if byte_range is not None and start == 0:
                    self.headers.append(key)
                elif byte_range is not None:
                    self.ranges.append((key, start, byte_range.end))
        return await self._store.get(key, prototype, byte_range)


def count_chunk_reads(catalog) -> dict[str, CountingStore]:
    """Wrap the zarr store of every AIA/HMI source of ``catalog`` in a :class:`CountingStore`."""
    counters = {}
    for instrument in ("aia", "hmi"):
        source = catalog.source(instrument)
        counter = CountingStore(source.zarr_store)
        source.__dict__["zarr_store"] = counter  # overrides the cached_property
        counters[instrument] = counter
    return counters


@dataclass
class LocatorSelection:
    """The smallest object the fetch layer accepts: locators plus a catalog."""

    catalog: object
    table: pd.DataFrame
    kind: str = "frames"
    extra: dict = field(default_factory=dict)

    def locators(self) -> pd.DataFrame:
        return self.table.copy()

    def __len__(self) -> int:
        return len(self.table)


def locators(rows, **columns) -> pd.DataFrame:
    """A locator table from ``(instrument, year, channel, idx)`` tuples (idx None = miss)."""
    table = pd.DataFrame(rows, columns=["instrument", "year", "channel", "idx"])
    table["year"] = table["year"].astype("int64")
    table["idx"] = table["idx"].astype("Int64")
    for name, values in columns.items():
        table[name] = values
    return table


def direct_frame(catalog, instrument: str, year: int, channel: str, idx: int) -> np.ndarray:
    """One frame read straight from the Zarr array with zarr (the reference for pixel identity)."""
    import zarr

    source = catalog.source(instrument)
    array = zarr.open_array(str(Path(source.root) / str(year) / channel), mode="r", zarr_format=2)
    return np.asarray(array[idx], dtype=np.float32)
