"""Harvest per-frame headers (AIA, HMI) and EVE samples into Arrow tables.

An AIA or HMI array's ``.attrs`` maps every FITS keyword to a list with one value per frame.
:func:`harvest_array` turns that into one row per frame: ``idx`` plus one typed column per
keyword (see :func:`keyword_column`).  Lists whose length differs from the frame count are
not index-aligned: they are returned whole as ``ragged`` and reported in ``warnings``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sdoml_sql.catalog_builder.layout import TIME_SUFFIX
from sdoml_sql.catalog_builder.times import TIME_KEYS, TimeParseError, looks_like_times, parse_times
from sdoml_sql.exceptions import HarvestError, StoreError
from sdoml_sql.stores.source import Source, parse_json

NAN_STRINGS = frozenset({"nan", "NaN", "NAN", "-nan", "+nan"})
RESERVED_COLUMNS = frozenset({"idx", "year", "channel", "instrument"})
TYPE_NAMES = {
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT",
    pa.string(): "VARCHAR",
    pa.timestamp("us"): "TIMESTAMP",
    pa.null(): "NULL",
}


@dataclass
class Harvest:
    """The harvest of one array: its rows, what each key became, and what did not fit."""

    table: pa.Table
    keys: dict[str, dict[str, Any]]
    ragged: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    source_bytes: int = 0


@dataclass
class Column:
    """One keyword as catalog columns: the typed values, and the raw strings of a time key."""

    values: pa.Array
    info: dict[str, Any]
    raw_strings: pa.Array | None = None
    warning: str | None = None


def read_attrs(source: Source, array_path: str) -> tuple[dict[str, Any], int]:
    """Read and parse an array's ``.attrs`` (``.zattrs``, or ``.zmetadata`` without it)."""
    items, size = iter_attrs(source, array_path)
    return dict(items), size


def iter_attrs(source: Source, array_path: str, raw: bytes | None = None) -> tuple[Iterator[tuple[str, Any]], int]:
    """An array's attributes as ``(key, value)`` pairs parsed one key at a time, and the size.

    A full-year AIA ``.zattrs`` is ~221 MB of JSON; parsing it whole holds every value as a
    Python object at once (about 3× the file).  zarr writes indented JSON, where each
    top-level key starts a line with exactly one indent, so the file is cut there and each
    key parsed on its own; any other layout is parsed whole.
    """
    where = f"store {source.url}: array {array_path}"
    try:
        raw = raw if raw is not None else source.read_bytes(f"{array_path}/.zattrs")
    except FileNotFoundError:
        consolidated = source.consolidated or {}
        if f"{array_path}/.zattrs" in consolidated:
            return iter(consolidated[f"{array_path}/.zattrs"].items()), 0
        if f"{array_path}/.zarray" in consolidated or source.exists(f"{array_path}/.zarray"):
            return iter(()), 0
        raise HarvestError(f"{where}: no such array") from None
    segments = _top_level_segments(raw)
    if segments is not None:
        return _parse_segments(raw, segments, where), len(raw)
    return iter(_parse_whole(raw, where).items()), len(raw)


_TOP_LEVEL_KEY = re.compile(rb"^\{\n( +)\"")


def _top_level_segments(raw: bytes) -> list[int] | None:
    """Start offsets of the top-level key lines of indented JSON, or None for other layouts."""
    head = _TOP_LEVEL_KEY.match(raw)
    if not head:
        return None
    marker = b"\n" + head.group(1) + b'"'
    return [m.start() + 1 for m in re.finditer(re.escape(marker), raw)]


def _parse_segments(raw: bytes, starts: list[int], where: str) -> Iterator[tuple[str, Any]]:
    ends = starts[1:] + [len(raw)]
    done: set[str] = set()
    for start, end in zip(starts, ends):
        segment = raw[start:end].rstrip()
        if end == len(raw):
            segment = segment.removesuffix(b"}").rstrip()
        try:
            parsed = orjson.loads(b"{" + segment.removesuffix(b",") + b"}")
        except orjson.JSONDecodeError:
            # NaN literals, or a file that is not what it looked like: parse it whole.
            yield from ((k, v) for k, v in _parse_whole(raw, where).items() if k not in done)
            return
        done.update(parsed)
        yield from parsed.items()


def _parse_whole(raw: bytes, where: str) -> dict[str, Any]:
    try:
        attrs = parse_json(raw, f"{where}: .zattrs")
    except StoreError as error:
        raise HarvestError(f"{error} (truncated or corrupt?)") from None
    if not isinstance(attrs, dict):
        raise HarvestError(f"{where}: .zattrs is a {type(attrs).__name__}, not an object of keyword lists")
    return attrs


def harvest_array(source: Source, array_path: str, frames: int | None = None, raw: bytes | None = None) -> Harvest:
    """Harvest the per-frame headers of ``array_path`` (``"2010/171A"``) into a table.

    ``frames`` is the array's length along time (read from ``.zarray`` if not given); ``raw``
    the ``.zattrs`` bytes if already downloaded.  Raises
    :class:`HarvestError` naming the store, array, key and frame when a header is unusable.
    """
    where = f"store {source.url}: array {array_path}"
    if frames is None:
        try:
            frames = int(source.zarray(array_path)["shape"][0])
        except StoreError as error:
            raise HarvestError(str(error)) from None
    attrs, size = iter_attrs(source, array_path, raw)
    columns: dict[str, pa.Array] = {"idx": pa.array(np.arange(frames, dtype=np.int64))}
    keys: dict[str, dict[str, Any]] = {}
    ragged: dict[str, list] = {}
    warnings: list[str] = []
    taken = {"idx"}  # DuckDB names are case-insensitive
    for key, values in attrs:
        if not isinstance(values, list):
            raise HarvestError(f"{where}: key {key} is a {type(values).__name__}, not a list of per-frame values")
        if len(values) != frames:
            ragged[key] = values
            warnings.append(f"{where}: key {key} has {len(values)} values for {frames} frames: "
                            "kept whole in array_attrs")
            continue
        if key.lower() in RESERVED_COLUMNS or key.lower() in taken:
            warnings.append(f"{where}: key {key} collides with a catalog column name: kept whole in array_attrs")
            ragged[key] = values
            continue
        column = keyword_column(key, values, where)
        columns[key] = column.values
        keys[key] = column.info
        taken.add(key.lower())
        if column.raw_strings is not None:
            raw_name = key + TIME_SUFFIX
            if raw_name.lower() in taken:
                warnings.append(f"{where}: key {key}: column {raw_name} for its raw strings is taken by a key")
            else:
                columns[raw_name] = column.raw_strings
                taken.add(raw_name.lower())
        if column.warning:
            warnings.append(column.warning)
    return Harvest(pa.table(columns), keys, ragged, warnings, size)


def keyword_column(key: str, values: list, where: str = "") -> Column:
    """Type one keyword's per-frame values.

    Integers → BIGINT, floats (or ints mixed with floats) → DOUBLE, strings → VARCHAR;
    ``'nan'`` strings, JSON nulls and NaN floats are NULL in numeric columns; time keywords
    (by name, or strings that all look like times) → TIMESTAMP in UTC plus the raw strings.
    Values of mixed kinds (numbers and text) become VARCHAR, with a warning.
    """
    values_array, info, warning = _typed_values(values)
    if _is_time_key(key, values_array):
        try:
            stamps, scale = parse_times(values_array)
        except TimeParseError as error:
            raise HarvestError(
                f"{where}: key {key}: frame {error.position}: unparseable time string {error.value!r}"
            ) from None
        return Column(stamps, {"type": "TIMESTAMP", "scale": scale}, values_array.cast(pa.string()))
    return Column(values_array, info, None, warning and f"{where}: key {key}: {warning}")


def _is_time_key(key: str, values: pa.Array) -> bool:
    if not (pa.types.is_string(values.type) or pa.types.is_null(values.type)):
        return False
    if key in TIME_KEYS:
        return True
    return pa.types.is_string(values.type) and looks_like_times(values)


def _typed_values(values: list) -> tuple[pa.Array, dict[str, Any], str | None]:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _typed_mixed(values)
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return array.cast(pa.int64()), {"type": "BIGINT"}, None
    if pa.types.is_floating(kind):
        array = array.cast(pa.float64())
        nan = pc.fill_null(pc.is_nan(array), False)
        return pc.if_else(nan, pa.scalar(None, pa.float64()), array), {"type": "DOUBLE"}, None
    if pa.types.is_string(kind):
        present = array.drop_null()
        if len(present) and pc.all(pc.is_in(present, value_set=pa.array(sorted(NAN_STRINGS)))).as_py():
            return pa.nulls(len(array), pa.float64()), {"type": "DOUBLE", "nan_strings": True}, None
        return array, {"type": "VARCHAR"}, None
    if pa.types.is_null(kind):
        return array, {"type": "NULL"}, None
    # nested values (lists, objects) are kept as their JSON text
    return _as_json_text(values), {"type": "VARCHAR", "json": True}, "nested values kept as JSON text"


def _typed_mixed(values: list) -> tuple[pa.Array, dict[str, Any], str | None]:
    """The slow path: numbers mixed with 'nan' strings (numeric), or with other text."""
    nan_strings = False
    numbers: list[float | int | None] = []
    for value in values:
        if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers.append(value)
        elif isinstance(value, bool):
            numbers.append(int(value))
        elif isinstance(value, str) and value.strip() in NAN_STRINGS:
            nan_strings = True
            numbers.append(None)
        else:
            return _as_json_text(values, keep_strings=True), {"type": "VARCHAR", "mixed": True}, (
                "values of mixed types (numbers and text) kept as VARCHAR")
    info: dict[str, Any] = {"nan_strings": True} if nan_strings else {}
    if all(v is None or isinstance(v, int) for v in numbers) and _fits_int64(numbers):
        return pa.array(numbers, pa.int64()), {"type": "BIGINT", **info}, None
    floats = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in numbers]
    return pa.array(floats, pa.float64()), {"type": "DOUBLE", **info}, None


def _fits_int64(numbers: list) -> bool:
    limit = 2**63
    return all(v is None or -limit <= v < limit for v in numbers)


def _as_json_text(values: list, keep_strings: bool = False) -> pa.Array:
    def text(value):
        if value is None:
            return None
        if keep_strings and isinstance(value, str):
            return value
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()

    return pa.array([text(v) for v in values], pa.string())


def type_name(arrow_type: pa.DataType) -> str:
    """The DuckDB name of an Arrow type used in the catalog."""
    return TYPE_NAMES.get(arrow_type, str(arrow_type).upper())


# --- EVE -----------------------------------------------------------------------------------

EVE_TIME = "Time"


def eve_groups(source: Source) -> list[str]:
    """Where a store's EVE lines are, found by content, not by name: the places (``""``, the
    root, as in SDOMLv2a's flat EVE_legacy, or groups such as SDOML v2's ``MEGS-A``) whose
    arrays include ``Time``.  Any other layout is a :class:`HarvestError` naming what the
    store has."""
    groups, arrays = source.children()
    places = {"": arrays} if arrays else {}
    places.update((g, a) for g in groups for a in [source.children(g)[1]] if a)
    found = [place for place, names in places.items() if EVE_TIME in names]
    if found:
        return found
    expected = (f"expected a {EVE_TIME} array beside the line arrays, at the root (SDOMLv2a EVE_legacy) "
                f"or in a group (SDOML v2 MEGS-A)")
    if not places:
        seen = ", ".join(groups) if groups else "nothing"
        raise HarvestError(f"store {source.url} has no EVE arrays (groups: {seen}); {expected}")
    described = "; ".join(
        f"{'group ' + place if place else 'root'}: no {EVE_TIME} array ({len(names)} arrays: "
        f"{', '.join(names[:5])}{', …' if len(names) > 5 else ''})" for place, names in places.items())
    raise HarvestError(f"store {source.url}: {described}; {expected}")


def harvest_eve(source: Source, group: str) -> tuple[pa.Table, pa.Table, list[str]]:
    """Harvest an EVE group (``"MEGS-A"``; ``""``: the store's root, as in SDOMLv2a's flat
    EVE_legacy): ``(samples, lines, warnings)``.

    ``samples`` has ``idx``, ``time`` (UTC) and one float32 column per line, NULL where the
    source is negative (missing); ``lines`` has each line's name, ion, wavelength (nm), logT
    and its raw attributes as JSON.
    """
    where = f"store {source.url}: group {group}" if group else f"store {source.url}"
    try:
        _, arrays = source.children(group)
    except StoreError as error:
        raise HarvestError(f"{where}: {error}") from None
    if EVE_TIME not in arrays:
        raise HarvestError(f"{where}: no {EVE_TIME} array")
    times = source.array(eve_array_path(group, EVE_TIME))[:]
    try:
        stamps, _ = parse_times(pa.array(np.asarray(times).astype(str)))
    except TimeParseError as error:
        raise HarvestError(f"{where}: array {EVE_TIME}: sample {error.position}: "
                           f"unparseable time string {error.value!r}") from None
    columns: dict[str, pa.Array] = {"idx": pa.array(np.arange(len(times), dtype=np.int64)), "time": stamps}
    line_rows = []
    warnings: list[str] = []
    for name in (a for a in arrays if a != EVE_TIME):
        data = np.asarray(source.array(eve_array_path(group, name))[:], dtype=np.float32)
        if data.shape != (len(times),):
            raise HarvestError(f"{where}: array {name} has shape {data.shape}, {EVE_TIME} has {len(times)} samples")
        columns[name] = pa.array(data, mask=~(data >= 0))
        attrs, _ = read_attrs(source, eve_array_path(group, name))
        line_rows.append(_eve_line(name, attrs))
    lines = pa.Table.from_pylist(line_rows, schema=EVE_LINES_SCHEMA)
    return pa.table(columns), lines, warnings


def eve_array_path(group: str, name: str) -> str:
    """The path of array ``name`` of an EVE group (``""``: the root)."""
    return f"{group}/{name}" if group else name


EVE_LINES_SCHEMA = pa.schema([
    ("name", pa.string()), ("ion", pa.string()), ("wavelength", pa.float64()),
    ("logT", pa.float64()), ("attrs", pa.string()),
])


def _eve_line(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "ion": attrs.get("ion"),
        "wavelength": _leading_number(attrs.get("wavelength"), scale_units={"a": 0.1, "å": 0.1, "angstrom": 0.1}),
        "logT": _leading_number(attrs.get("logT")),
        "attrs": orjson.dumps(attrs).decode(),
    }


def _leading_number(text: Any, scale_units: dict[str, float] | None = None) -> float | None:
    """``'13.285 nm'`` → 13.285, ``'6.8 MK'`` → 6.8 (the unit label of logT is wrong: log10 K)."""
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str) or not text.strip():
        return None
    number, _, unit = text.strip().partition(" ")
    try:
        value = float(number)
    except ValueError:
        return None
    factor = (scale_units or {}).get(unit.strip().lower(), 1.0)
    return value * factor
