"""Typing of keyword values and time parsing, on examples and on generated values."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest
from astropy.time import Time
from hypothesis import given, settings
from hypothesis import strategies as st

from sdoml_sql.catalog_builder.harvest import keyword_column
from sdoml_sql.catalog_builder.times import parse_times
from sdoml_sql.exceptions import HarvestError


@pytest.mark.parametrize(("values", "kind", "expected"), [
    ([1, 2, 3], "BIGINT", [1, 2, 3]),
    ([512.0, 512.0], "DOUBLE", [512.0, 512.0]),
    ([1, 2.5], "DOUBLE", [1.0, 2.5]),
    (["nan", "nan"], "DOUBLE", [None, None]),
    ([1.5, "nan", None], "DOUBLE", [1.5, None, None]),
    ([3, "nan"], "BIGINT", [3, None]),
    ([float("nan"), 2.0], "DOUBLE", [None, 2.0]),
    (["AIA_3", None], "VARCHAR", ["AIA_3", None]),
    ([None, None], "NULL", [None, None]),
    ([1, "x"], "VARCHAR", ["1", "x"]),
    ([True, False], "BIGINT", [1, 0]),
    ([[1, 2], [3]], "VARCHAR", ["[1,2]", "[3]"]),
])
def test_keyword_types(values, kind, expected):
    column = keyword_column("KEY", values)
    assert column.info["type"] == kind
    assert column.values.to_pylist() == expected


def test_nan_strings_are_recorded():
    assert keyword_column("GCIEC_X", ["nan"] * 3).info == {"type": "DOUBLE", "nan_strings": True}
    assert keyword_column("OSCNMEAN", [1.0, "nan"]).info == {"type": "DOUBLE", "nan_strings": True}


def test_time_keys_keep_their_strings():
    column = keyword_column("T_OBS", ["2010-08-27T15:00:08.07Z", "2010-08-27T15:06:08.07", None])
    assert column.info == {"type": "TIMESTAMP", "scale": "UTC"}
    assert column.values.to_pylist()[:2] == [dt.datetime(2010, 8, 27, 15, 0, 8, 70000),
                                             dt.datetime(2010, 8, 27, 15, 6, 8, 70000)]
    assert column.raw_strings.to_pylist()[0] == "2010-08-27T15:00:08.07Z"


def test_unparseable_time_names_key_and_frame():
    with pytest.raises(HarvestError, match=r"store s: key T_REC: frame 1: unparseable time string 'soon'"):
        keyword_column("T_REC", ["2010.08.28_00:00:00_TAI", "soon"], "store s")


def test_times_in_unknown_keys_are_detected():
    assert keyword_column("T_SOMETHING", ["2011-01-01T00:00:00Z"]).info["type"] == "TIMESTAMP"
    assert keyword_column("ORIGIN", ["SDO/JSOC-SDP"]).info["type"] == "VARCHAR"


finite_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=True, width=64)
keyword_values = st.lists(st.one_of(st.none(), st.just("nan"), finite_ints, finite_floats), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(keyword_values)
def test_numeric_values_round_trip(values):
    column = keyword_column("KEY", values)
    kind = column.info["type"]
    got = column.values.to_pylist()
    assert len(got) == len(values)
    if any(isinstance(v, float) for v in values):
        assert kind == "DOUBLE"
    for value, stored in zip(values, got):
        if value is None or value == "nan":
            assert stored is None
        elif kind == "BIGINT":
            assert stored == value
        else:
            assert stored == float(value) or (math.isinf(value) and stored == value)
    assert column.info.get("nan_strings", False) == ("nan" in values)


instants = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2035, 1, 1))


@settings(max_examples=300, deadline=None)
@given(instants, st.sampled_from(["iso", "isoz", "jsoc_utc"]))
def test_utc_strings_parse_exactly(instant, style):
    instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    text = {
        "iso": instant.isoformat(timespec="milliseconds"),
        "isoz": instant.isoformat(timespec="milliseconds") + "Z",
        "jsoc_utc": instant.strftime("%Y.%m.%d_%H:%M:%S.") + f"{instant.microsecond // 1000:03d}_UTC",
    }[style]
    stamps, scale = parse_times(pa.array([text]))
    assert scale == "UTC"
    assert stamps[0].as_py() == instant


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2030, 1, 1)))
def test_tai_strings_agree_with_astropy(instant):
    instant = instant.replace(microsecond=0)
    text = instant.strftime("%Y.%m.%d_%H:%M:%S_TAI")
    stamps, scale = parse_times(pa.array([text]))
    reference = Time(instant, scale="tai").utc
    assert scale == "TAI"
    if reference.iso.endswith(":60.000"):  # inside a leap second: last microsecond before it
        assert stamps[0].as_py().strftime("%H:%M:%S.%f") == "23:59:59.999999"
    else:
        assert stamps[0].as_py() == reference.to_datetime()


@settings(max_examples=100, deadline=None)
@given(st.lists(instants, min_size=2, max_size=20))
def test_tai_conversion_never_reorders(moments):
    moments = sorted(m.replace(microsecond=0) for m in moments)
    texts = [m.strftime("%Y.%m.%d_%H:%M:%S_TAI") for m in moments]
    stamps = parse_times(pa.array(texts))[0].to_pylist()
    assert stamps == sorted(stamps)
