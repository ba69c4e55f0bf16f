"""Every example in sql/examples and every query in the docs runs and agrees with brute force."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

import sql_brute as brute
from sdoml_sql.query.sqlfiles import example_names
from sdoml_sql.query.sqlguard import check_read_only as guard

#: The document whose ```sql blocks and `sdoml-sql query` lines must all run.
DOCS = Path(__file__).resolve().parent.parent / "README.md"


def test_every_example_is_checked():
    assert set(example_names()) == set(CHECKS)


def check_short_exposures(got, source, eve):
    pool = source[(source.channel == "171A") & (source.EXPTIME < 2.0)
                  & source.T_OBS.between(pd.Timestamp("2010-08-27"), pd.Timestamp("2010-08-29"))]
    assert len(got) > 0
    assert list(got.idx) == list(pool.sort_values("T_OBS").idx)


def check_index_range(got, source, eve):
    pool = source[(source.channel == "171A") & (source.year == 2010) & source.idx.between(100, 124)]
    assert list(got.idx) == list(pool.idx) and len(got) > 0
    assert (got.T_OBS.values == pool.T_OBS.values).all()


def check_one_day_12min(got, source, eve):
    expected = brute.nearest(source, "171A", "2010-08-27", "2010-08-28", "12 minutes", "6 minutes")
    pd.testing.assert_series_equal(got.idx, expected.idx, check_names=False)
    hits = got.idx.notna()
    exptime = source.set_index(["year", "channel", "idx"]).EXPTIME
    keys = list(zip(got.year[hits].astype(int), got.channel[hits], got.idx[hits].astype(int)))
    assert list(got.EXPTIME[hits]) == [exptime[k] for k in keys]


def check_hmi_3min(got, source, eve):
    expected = brute.nearest(source, "Bz", "2010-08-27", "2010-08-28", "12 minutes", "3 minutes")
    pd.testing.assert_series_equal(got.idx, expected.idx, check_names=False)


def check_eve_peaks_aia(got, source, eve):
    peaks = eve.dropna(subset=["Fe XVIII"]).sort_values(["Fe XVIII", "time"], ascending=[False, True]).head(5)
    assert list(got.eve_idx) == list(peaks.idx)
    pool = source[source.channel == "171A"].sort_values(["T_OBS", "year", "idx"])
    for row in got.itertuples():
        nearest = pool.iloc[(pool.T_OBS - row.time).abs().values.argmin()]
        assert (row.year, row.idx) == (nearest.year, nearest.idx)


def check_aligned_samples(got, source, eve):
    for column, channel in (("idx_171", "171A"), ("idx_193", "193A"), ("idx_bz", "Bz")):
        expected = brute.nearest(source, channel, "2010-08-27", "2010-08-28", "12 minutes", "6 minutes")
        pd.testing.assert_series_equal(got[column], expected.idx, check_names=False)
    expected_eve = brute.nearest_eve(eve, "2010-08-27", "2010-08-28", "12 minutes", "6 minutes")
    pd.testing.assert_series_equal(got.eve_idx.astype("Int64"), expected_eve, check_names=False)


def check_coverage_holes(got, source, eve):
    full = brute.coverage(source, "2010-08-27", "2010-08-28", "1h", "30min")
    expected = full[(full.frames == 0) | (full.gaps > 0)].reset_index(drop=True)
    assert len(got) == len(expected) > 0
    assert list(got.channel) == list(expected.channel) and list(got.frames) == list(expected.frames)


SDOFM_CHANNELS = ["131A", "1600A", "1700A", "171A", "193A", "211A", "304A", "335A", "94A", "Bx", "By", "Bz"]


def check_sdofm_aligndata(got, source, eve):
    expected = brute.sdofm_aligndata(source, eve, SDOFM_CHANNELS)
    assert list(got.columns) == ["Time", *[f"idx_{c}" for c in SDOFM_CHANNELS], "idx_eve"]
    assert len(got) > 0
    pd.testing.assert_frame_equal(got.astype({c: "Int64" for c in got.columns if c != "Time"}), expected,
                                  check_dtype=False)


CHECKS = {name[len("check_"):]: f for name, f in globals().items() if name.startswith("check_")}
#: The sample layout each example runs on (default v2): SDO-FM's table needs SDOMLv2a's nine aligned channels.
EXAMPLE_LAYOUTS = {"sdofm_aligndata": "v2a"}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_matches_brute_force(request, name):
    prefix = "" if EXAMPLE_LAYOUTS.get(name, "v2") == "v2" else "v2a_"
    catalog, source, eve = (request.getfixturevalue(prefix + f) for f in ("catalog", "source", "eve_source"))
    got = catalog.example(name).to_pandas()
    CHECKS[name](got, source, eve)


def sql_blocks(text: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


#: The catalogs README commands name, as the session fixtures that hold the same frames.
README_CATALOGS = {"demo-output/catalog": "catalog", "demo-output/v2a-catalog": "v2a_catalog"}


def cli_queries(text: str) -> list[tuple[str, str]]:
    """``(SQL, --catalog)`` of every `$ sdoml-sql query "…"` line and `$ echo "…" | sdoml-sql query -` line."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line.removeprefix("$ "))
            catalog = words[words.index("--catalog") + 1] if "--catalog" in words else "demo-output/catalog"
            if "query" in words and words[0] == "sdoml-sql":
                argument = words[words.index("query") + 1]
                found.append((argument, catalog))
            elif words[:1] == ["echo"] and "query" in words:
                found.append((words[1], catalog))
    return found


def test_docs_have_queries():
    text = DOCS.read_text()
    assert len(sql_blocks(text)) >= 5 and len(cli_queries(text)) >= 3


@pytest.mark.parametrize("number", range(len(sql_blocks(DOCS.read_text()))))
def test_documented_sql_runs(catalog, number):
    sql = sql_blocks(DOCS.read_text())[number]
    assert len(catalog.query(sql)) > 0


def test_documented_cli_queries_run(request):
    root = DOCS.parent
    for argument, catalog in cli_queries(DOCS.read_text()):
        sql = (root / argument[1:]).read_text() if argument.startswith("@") else argument
        assert len(request.getfixturevalue(README_CATALOGS[catalog]).query(guard(sql))) > 0, argument
