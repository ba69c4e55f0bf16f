"""Time strings of SDOML v2 headers → UTC timestamps, vectorised.

AIA writes ISO strings in UTC (``2010-08-27T15:00:08.07Z``, ``Z`` sometimes missing); HMI
writes JSOC strings in TAI (``2010.08.28_00:00:05_TAI``).  Both become naive
``timestamp[us]`` values meaning UTC, so one ``BETWEEN`` means the same on AIA and HMI.  TAI is
converted with the leap-second table that astropy uses (``erfa``).  A time inside a leap
second (UTC ``23:59:60.x``, or the TAI instants that map to it) becomes the last microsecond
before the leap, so it neither fails nor reorders frames.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Keys parsed as times wherever they occur; an unparseable value in one of them is an error.
TIME_KEYS = frozenset({
    "T_OBS", "DATE-OBS", "DATE_OBS", "T_REC", "ISPPKTIM", "DATE", "DATE_S", "DATE-BEG",
    "DATE-END", "DATE-AVG", "TRECEPOC", "T_REC_EPOCH", "T_EARTH", "DATE__OBS", "Time",
})

TIME_PATTERN = re.compile(
    r"^\d{4}[-.]\d{2}[-.]\d{2}([T_ ]\d{2}:\d{2}(:\d{2}(\.\d*)?)?)?(Z|_TAI|_UTC|_TT)?$"
)
_MICROSECOND = 1
_US_PER_S = 1_000_000


class TimeParseError(ValueError):
    """A string is not a time in any format the stores use; ``.position`` is its index."""

    def __init__(self, position: int, value: str):
        super().__init__(f"unparseable time string {value!r} at position {position}")
        self.position = position
        self.value = value


def looks_like_times(values: pa.Array) -> bool:
    """Whether every non-null string of ``values`` has the shape of a time string."""
    present = values.drop_null()
    if len(present) == 0 or not TIME_PATTERN.match(present[0].as_py()):
        return False
    return bool(pc.all(pc.match_substring_regex(present, TIME_PATTERN.pattern)).as_py())


def parse_times(values: pa.Array) -> tuple[pa.Array, str]:
    """Parse time strings to UTC ``timestamp[us]``; return the array and the source scale.

    Nulls and empty or ``'nan'`` strings become null.  The scale is ``"TAI"`` if any string
    carries ``_TAI`` (those are converted to UTC), else ``"UTC"``.  Raises
    :class:`TimeParseError` naming the first value that is not a time.
    """
    values = _nullify_missing(pc.cast(values, pa.string()))
    fast = _parse_plain_iso(values)
    if fast is not None:
        return fast, "UTC"
    is_tai = pc.fill_null(pc.ends_with(values, "_TAI"), False)
    iso = _to_iso(values)
    iso = pc.replace_substring_regex(iso, r":60(\.\d*)?$", ":59.999999")
    stamps = _cast_or_explain(iso, values)
    micros = pc.fill_null(stamps.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).copy()
    valid = ~np.asarray(pc.is_null(stamps).to_numpy(zero_copy_only=False), dtype=bool)
    tai = np.asarray(is_tai.to_numpy(zero_copy_only=False), dtype=bool) & valid
    if tai.any():
        micros[tai] = tai_to_utc_micros(micros[tai])
    scale = "TAI" if tai.any() else "UTC"
    result = pa.array(micros, type=pa.int64(), mask=~valid).cast(pa.timestamp("us"))
    return result, scale


def _parse_plain_iso(values: pa.Array) -> pa.Array | None:
    """ISO strings in UTC (AIA's, EVE's) in one cast; None if any needs the general path."""
    try:
        return pc.cast(pc.utf8_rtrim(values, characters="Z"), pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _nullify_missing(values: pa.Array) -> pa.Array:
    stripped = pc.utf8_trim_whitespace(values)
    missing = pc.is_in(pc.utf8_lower(stripped), value_set=pa.array(["", "nan", "none", "null"]))
    return pc.if_else(pc.fill_null(missing, False), pa.scalar(None, pa.string()), stripped)


def _to_iso(values: pa.Array) -> pa.Array:
    iso = pc.replace_substring_regex(values, r"(Z|_TAI|_UTC|_TT)$", "")
    iso = pc.replace_substring_regex(iso, r"^(\d{4})[-.](\d{2})[-.](\d{2})[T_ ]?", r"\1-\2-\3T")
    iso = pc.replace_substring_regex(iso, r"T$", "T00:00:00")
    return pc.replace_substring_regex(iso, r"T(\d{2}):(\d{2})$", r"T\1:\2:00")


def _cast_or_explain(iso: pa.Array, original: pa.Array) -> pa.Array:
    try:
        return pc.cast(iso, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for position, (text, raw) in enumerate(zip(iso.to_pylist(), original.to_pylist())):
        if text is None:
            continue
        try:
            pc.cast(pa.array([text]), pa.timestamp("us"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TimeParseError(position, raw) from None
    raise TimeParseError(-1, "?")


@lru_cache(maxsize=1)
def _leap_table() -> tuple[np.ndarray, np.ndarray]:
    """UTC instants (µs since 1970) where TAI−UTC changes, and the offset (s) from then on."""
    import erfa

    table = erfa.leap_seconds.get()
    table = table[table["year"] >= 1972]
    starts = np.array(
        [np.datetime64(f"{y:04d}-{m:02d}-01", "us") for y, m in zip(table["year"], table["month"])]
    ).astype(np.int64)
    offsets = np.rint(table["tai_utc"]).astype(np.int64)
    return starts, offsets


def tai_to_utc_micros(tai: np.ndarray) -> np.ndarray:
    """Convert TAI instants (µs since 1970, written as calendar times) to UTC instants.

    TAI instants that fall inside an inserted leap second map to the last microsecond before
    it, so the mapping never decreases.
    """
    starts, offsets = _leap_table()
    offsets_us = offsets * _US_PER_S
    switch_in_tai = starts + offsets_us  # TAI instant at which each new offset starts
    which = np.searchsorted(switch_in_tai, tai, side="right") - 1
    before_table = which < 0
    which = np.clip(which, 0, len(starts) - 1)
    offset = np.where(before_table, 10 * _US_PER_S, offsets_us[which])
    utc = tai - offset
    following = np.minimum(which + 1, len(starts) - 1)
    has_following = (which + 1) < len(starts)
    leap_start = starts[following]
    inside_leap = has_following & ~before_table & (utc >= leap_start)
    utc[inside_leap] = leap_start[inside_leap] - _MICROSECOND
    return utc
