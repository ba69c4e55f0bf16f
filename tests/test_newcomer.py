"""Issue 13: what a newcomer hit, one reproduction per problem (each failed before the fix).

Everything runs on the session's sample stores and catalog (tests/conftest.py); the CLI runs
as a subprocess where a traceback could appear, otherwise through click's runner.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from sdoml_sql import Catalog
from sdoml_sql.cli import main
from sdoml_sql.exceptions import FetchError, QueryError

ROOT = Path(__file__).resolve().parent.parent
DUCKDB = Path(sys.executable).parent / "duckdb"
NEAREST_2015 = "SELECT * FROM nearest('aia', '171A', '2015-01-01', '2015-01-02', '12 minutes', '6 minutes')"
DAY_171 = "SELECT * FROM nearest('aia', '171A', '2010-08-27', '2010-08-27 06:00', '12 minutes', '6 minutes')"


def run(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (so a traceback would show on stderr)."""
    return subprocess.run([sys.executable, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd or ROOT, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})


def invoke(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error_line(result, *fragments: str) -> str:
    """Exit 1, exactly one stderr line starting ``error:`` (no traceback, no warning)."""
    stderr = result.stderr.strip()
    code = getattr(result, "returncode", getattr(result, "exit_code", None))
    assert code == 1, (code, stderr)
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)
    return stderr


# --- 1. data loss in JSON ----------------------------------------------------------------

EXACT_SQL = """SELECT "Fe XX_2", "Fe XX_2" * 1e-6 AS s, 1/3 AS third, time,
                      time + INTERVAL 123457 microseconds AS t_us, NULL::DOUBLE AS nothing,
                      CASE WHEN idx % 2 = 0 THEN idx END AS even_idx, 'x"y' AS text
               FROM eve ORDER BY idx LIMIT 5"""


def _equal_to_arrow(column: pa.ChunkedArray, values: list) -> None:
    expected = column.to_pylist()
    assert len(values) == len(expected)
    for got, want in zip(values, expected):
        if want is None:
            assert got is None or got == "" or (isinstance(got, float) and np.isnan(got)), (got, want)
        elif pa.types.is_floating(column.type):
            dtype = column.type.to_pandas_dtype()
            assert np.array(float(got), dtype=dtype) == np.array(want, dtype=dtype)
        elif pa.types.is_timestamp(column.type):
            assert pd.Timestamp(got) == pd.Timestamp(want), (got, want)
        elif pa.types.is_integer(column.type):
            assert int(got) == want
        else:
            assert str(got) == str(want)


def test_json_csv_table_parquet_keep_every_value_exactly(catalog, tmp_path):
    selection = catalog.query(EXACT_SQL)
    arrow = selection.to_arrow()
    rows = [json.loads(line) for line in selection.to_text("json").splitlines()]
    assert rows[0]["s"] != 0.0 and rows[0]["nothing"] is None
    assert rows[0]["t_us"].endswith(".607457") or "." in rows[0]["t_us"]
    for name in arrow.column_names:
        _equal_to_arrow(arrow.column(name), [row[name] for row in rows])
    csv = pd.read_csv(pd.io.common.StringIO(selection.to_text("csv")), dtype=str, keep_default_na=False)
    for name in arrow.column_names:
        _equal_to_arrow(arrow.column(name), [v if v != "" else None for v in csv[name]])
    table_lines = selection.to_text("table").splitlines()[1:]
    for line, want in zip(table_lines, arrow.column("s").to_pylist()):
        assert repr(want) in line  # full precision in the aligned text too
    selection.write(tmp_path / "rows.parquet")
    assert pq.read_table(tmp_path / "rows.parquet").equals(arrow)


def test_json_writes_every_duckdb_type(catalog):
    row = json.loads(catalog.query(
        "SELECT [1.5, NULL] AS l, {'a': 1e-300} AS s, DATE '2010-01-01' AS d, "
        "INTERVAL '1 month 2 days 3.5 seconds' AS i, 'inf'::DOUBLE AS inf, 12345678901234567890::HUGEINT AS h, "
        "0.1::FLOAT AS f").to_text("json"))
    assert row == {"l": [1.5, None], "s": {"a": 1e-300}, "d": "2010-01-01", "i": "P1M2DT3.5S", "inf": "Infinity",
                   "h": 12345678901234567890, "f": 0.1}


def test_cli_json_output_is_not_rounded(catalog_dir):
    result = invoke("query", 'SELECT "Fe XX_2", "Fe XX_2"*1e-6 AS s FROM eve ORDER BY idx LIMIT 1',
                    "--catalog", catalog_dir, "--format", "json")
    row = json.loads(result.stdout)
    expected = Catalog(catalog_dir).query('SELECT "Fe XX_2"*1e-6 AS s FROM eve ORDER BY idx LIMIT 1').to_arrow()
    assert row["s"] == expected.column("s")[0].as_py() != 0.0


# --- 2. one rule for every command that writes --------------------------------------------

#: Every CLI command, and whether it writes an output the user names (tested below).
WRITING = {"sample", "build", "query", "fetch", "movie", "plot", "plot-quality", "export", "sync"}
NOT_WRITING = {"tree", "keywords", "rebuild", "shell", "stats", "serve"}  # inside the catalog only, or nothing


def test_every_command_is_classified_for_the_write_rule():
    assert set(main.commands) == WRITING | NOT_WRITING, "classify the new command and test its output path"


def test_every_writing_command_creates_missing_parent_directories(catalog_dir, sample_paths, tmp_path):
    out = tmp_path / "a" / "b"
    frames = "SELECT year, channel, idx FROM aia WHERE channel = '171A' ORDER BY idx LIMIT 2"
    commands = {
        "sample": ["sample", out / "sample", "--frames", "3", "--channels", "171A", "--hmi-frames", "2",
                   "--eve-samples", "10", "--years", "2010", "--no-images"],
        "build": ["build", "--eve", sample_paths["eve"], "--catalog", out / "catalog", "--quiet"],
        "query": ["query", "SELECT 1 AS x", "--catalog", catalog_dir, "-o", out / "q" / "x.csv"],
        "fetch": ["fetch", frames, "--catalog", catalog_dir, "-o", out / "f" / "x.npy", "--quiet"],
        "movie": ["movie", frames, out / "m" / "x.gif", "--catalog", catalog_dir, "--quiet", "--downsample", "8"],
        "plot": ["plot", frames, out / "p" / "x.png", "--catalog", catalog_dir],
        "plot-quality": ["plot-quality", out / "pq" / "x.png", "--catalog", catalog_dir],
        "export": ["export", frames, out / "e" / "x.zarr", "--catalog", catalog_dir, "--quiet", "--downsample", "8"],
        "sync": ["sync", catalog_dir, out / "s" / "mirror", "--quiet"],
    }
    assert set(commands) == WRITING
    produced = {"sample": "sample/sdomlv2_small.zarr/.zgroup", "build": "catalog/manifest.json",
                "query": "q/x.csv", "fetch": "f/x.npy", "movie": "m/x.gif", "plot": "p/x.png",
                "plot-quality": "pq/x.png", "export": "e/x.zarr/.zgroup", "sync": "s/mirror/manifest.json"}
    for name, args in commands.items():
        result = invoke(*args)
        assert result.exit_code == 0, (name, result.output, result.exception)
        assert (out / produced[name]).exists(), name
        assert not list((out / produced[name]).parent.glob(".*partial*")), name


def test_query_output_in_missing_directory_and_unwritable_path(catalog_dir, tmp_path):
    result = run("query", "SELECT 1 AS x", "--catalog", str(catalog_dir), "-o", str(tmp_path / "nodir" / "x.csv"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "nodir" / "x.csv").read_text() == "x\n1\n"
    (tmp_path / "file").write_text("")
    result = run("query", "SELECT 1 AS x", "--catalog", str(catalog_dir), "-o", str(tmp_path / "file" / "x.csv"))
    assert_one_error_line(result, "file")
    result = run("movie", "SELECT year, channel, idx FROM aia ORDER BY idx LIMIT 2", str(tmp_path / "file" / "m.gif"),
                 "--catalog", str(catalog_dir), "--downsample", "8", "--quiet")
    assert_one_error_line(result, "file")  # and no matplotlib warning after it


# --- 3-6. one line, not a traceback --------------------------------------------------------

def test_missing_sql_file_is_one_line(catalog_dir, tmp_path):
    assert_one_error_line(run("query", "@missing.sql", "--catalog", str(catalog_dir)), "missing.sql")
    assert_one_error_line(run("query", "--file", "missing.sql", "--catalog", str(catalog_dir)), "missing.sql")


def test_example_paths_work_from_any_directory(catalog_dir, tmp_path):
    result = run("query", "@sql/examples/hmi_3min.sql", "--catalog", str(catalog_dir), "--format", "csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("row,time")


def test_unknown_plot_and_movie_formats_are_one_line(catalog_dir, tmp_path):
    frames = "SELECT year, channel, idx FROM aia ORDER BY idx LIMIT 2"
    assert_one_error_line(run("plot", frames, str(tmp_path / "x.xyz"), "--catalog", str(catalog_dir)), "x.xyz", ".png")
    assert_one_error_line(run("movie", frames, str(tmp_path / "x.avi"), "--catalog", str(catalog_dir)), "x.avi", ".mp4")
    assert_one_error_line(run("fetch", frames, "-o", str(tmp_path / "x.txt"), "--catalog", str(catalog_dir)), "x.txt")
    assert_one_error_line(run("fetch", frames, "-o", str(tmp_path / "fits"), "--missing", "nan",
                              "--catalog", str(catalog_dir)), "FITS")
    assert not list(tmp_path.iterdir())


def test_sql_starting_with_a_comment_is_sql(catalog_dir):
    result = invoke("query", "-- how many frames\nSELECT count(*) AS n FROM aia", "--catalog", catalog_dir,
                    "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("n\n")
    result = invoke("fetch", "-- a comment\n" + NEAREST_2015, "--catalog", catalog_dir, "-o", "never.npy")
    assert result.exit_code == 1 and "no frames" in result.stderr  # parsed as SQL, not as an option


def test_demo_help_prints_usage_and_creates_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sdoml_sql.demo", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert not list(tmp_path.iterdir())


# --- 7-10. silent empty or wrong results ----------------------------------------------------

def test_fetch_of_no_frame_names_the_range_and_the_catalog(catalog, catalog_dir, tmp_path):
    result = run("fetch", NEAREST_2015, "--missing", "drop", "--catalog", str(catalog_dir),
                 "-o", str(tmp_path / "e.npy"))
    message = assert_one_error_line(result, "2015-01-01 00:00:00", "2015-01-01 23:48:00", "aia 171A from 2010")
    assert "no frames" in message and not (tmp_path / "e.npy").exists()
    selection = catalog.query(NEAREST_2015)
    for missing in ("raise", "drop"):
        with pytest.raises(FetchError, match="the catalog has aia 171A from"):
            selection.fetch(missing=missing)
    with pytest.raises(FetchError, match="selected no rows"):
        catalog.query("SELECT year, channel, idx FROM aia WHERE false").fetch()


def test_all_nan_fetch_takes_the_frame_shape_from_the_store(catalog):
    array = catalog.query(NEAREST_2015).fetch(missing="nan", downsample=2)
    assert array.shape == (120, 256, 256)
    assert np.isnan(array[:3].compute()).all()


@pytest.mark.parametrize("cadence, tolerance, message", [
    ("'0 minutes'", "'6 minutes'", "cadence '0 minutes' must be positive"),
    ("'-12 minutes'", "'6 minutes'", "cadence '-12 minutes' must be positive"),
    ("'1 month'", "'6 minutes'", "cadence '1 month' has no fixed length"),
    ("NULL", "'6 minutes'", "cadence is NULL"),
    ("'12 minutes'", "'-6 minutes'", "must be zero or more"),
    ("'12 minutes'", "NULL", "tolerance( of 171A)? is NULL"),
    ("'12 minutes'", "'1 month'", "has no fixed length"),
])
@pytest.mark.parametrize("macro", ["nearest('aia', '171A', ", "nearest_eve(", "aligned(['171A', 'Bz'], "])
def test_bad_cadence_or_tolerance_is_one_line_naming_it(catalog, macro, cadence, tolerance, message):
    sql = f"SELECT * FROM {macro}'2010-08-27', '2010-08-28', {cadence}, {tolerance})"
    with pytest.raises(QueryError, match=message) as error:
        catalog.query(sql)
    assert "\n" not in str(error.value)


def test_valid_intervals_keep_their_answers(catalog):
    days = catalog.query("SELECT count(*) AS n, count(idx) AS hits FROM nearest('aia', '171A', '2010-08-27', "
                         "'2010-08-28', INTERVAL 1 day, INTERVAL 0 seconds)").to_pandas()
    assert days["n"].item() == 1
    same = [catalog.query(f"SELECT idx FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', {c}, {t})")
            .to_pandas()["idx"].tolist()
            for c, t in [("'12 minutes'", "'3 minutes'"), ("INTERVAL 12 minutes", "INTERVAL 180 seconds")]]
    assert same[0] == same[1]


def test_eve_plot_of_an_empty_range_is_an_error(catalog_dir, tmp_path):
    result = run("plot", "SELECT time, \"Fe XX_2\" FROM eve WHERE time > '2030-01-01'", str(tmp_path / "e.png"),
                 "--catalog", str(catalog_dir))
    assert_one_error_line(result, "0 EVE samples", "the catalog has EVE samples from 2010")
    assert not (tmp_path / "e.png").exists()


def test_literal_filter_on_a_value_the_catalog_lacks_gives_a_hint(catalog, catalog_dir):
    from sdoml_sql.exceptions import EmptyResultWarning

    with pytest.warns(EmptyResultWarning, match=r"no channel '171' in the catalog; channels are 94A, 131A, 171A"):
        selection = catalog.query("SELECT * FROM aia WHERE channel = '171'")
    assert len(selection) == 0 and "did you mean '171A'" in selection.hints[0]
    result = invoke("query", "SELECT * FROM frames WHERE year IN (2010, 2031) AND instrument = 'AIA'",
                    "--catalog", catalog_dir)
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert result.exit_code == 0 and len(hints) == 2, result.stderr
    assert "no year 2031" in hints[1] or "no year 2031" in hints[0]
    assert any("no instrument 'AIA'" in h and "did you mean 'aia'" in h for h in hints)
    assert catalog.query("SELECT * FROM aia WHERE channel = '171A' AND false").hints == []


# --- 11-12. catalogs that move -----------------------------------------------------------------

def test_relative_store_path_is_recorded_absolute_and_can_be_re_pointed(sample_paths, tmp_path):
    stores = tmp_path / "stores"
    shutil.copytree(sample_paths["eve"], stores / "eve.zarr")
    shutil.copytree(sample_paths["aia"], stores / "aia.zarr")
    result = run("build", "--aia", "stores/aia.zarr", "--eve", "stores/eve.zarr", "--catalog", "relcat", "--quiet",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frame = "SELECT year, channel, idx FROM aia ORDER BY year, channel, idx LIMIT 1"  # one frame, no ties
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("fetch", frame, "--catalog", str(tmp_path / "relcat"), "-o", "one.npy", "--quiet", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    (stores / "aia.zarr").rename(tmp_path / "moved.zarr")
    result = run("fetch", frame, "--catalog", str(tmp_path / "relcat"), "-o", "two.npy", "--quiet", cwd=elsewhere)
    assert_one_error_line(result, "does not exist", "--source aia=")
    result = run("rebuild", "--catalog", "../relcat", "--source", "aia=../moved.zarr", "--quiet", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "relcat" / "manifest.json").read_text())
    assert manifest["sources"]["aia"]["url"] == str(tmp_path / "moved.zarr")
    result = run("fetch", frame, "--catalog", str(tmp_path / "relcat"), "-o", "two.npy", "--quiet", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(elsewhere / "one.npy"), np.load(elsewhere / "two.npy"))
    result = run("rebuild", "--catalog", str(tmp_path / "relcat"), "--source", "hmi=x.zarr", "--quiet")
    assert_one_error_line(result, "no hmi source")


def test_a_copied_catalog_works_in_the_duckdb_shell_after_the_original_is_gone(catalog_dir, tmp_path):
    original = tmp_path / "catalog"
    shutil.copytree(catalog_dir, original)
    Catalog(original).write_init_sql()
    shutil.copytree(original, tmp_path / "cat2")
    shutil.rmtree(original)
    sql = ("SELECT count(*) FROM aia; SELECT count(idx) FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', "
           "'12 minutes', '3 minutes'); SELECT count(*) FROM frames; SELECT count(*) FROM partitions;")
    result = subprocess.run([str(DUCKDB), "-init", "init.sql", "-csv", "-noheader", "-c", sql], cwd=tmp_path / "cat2",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = Catalog(catalog_dir).query(
        "SELECT (SELECT count(*) FROM aia), (SELECT count(idx) FROM nearest('hmi', 'Bz', '2010-08-27', "
        "'2010-08-28', '12 minutes', '3 minutes')), (SELECT count(*) FROM frames), (SELECT count(*) FROM partitions)"
    ).to_pandas().iloc[0].tolist()
    assert [int(v) for v in result.stdout.split()] == [int(v) for v in expected]
    from_outside = subprocess.run([str(DUCKDB), "-init", "cat2/init.sql", "-c", "SELECT 1"], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)
    assert from_outside.returncode != 0 and "no sdoml-sql catalog in ." in from_outside.stderr
    shell = run("shell", "--catalog", str(tmp_path / "cat2"), "-csv", "-noheader", "-c", "SELECT count(*) FROM aia")
    assert shell.returncode == 0 and shell.stdout.split()[-1] == str(expected[0]), shell.stderr


# --- 13-14. per-channel tolerance, kinds kept ---------------------------------------------------

def test_aligned_takes_a_tolerance_per_channel(catalog):
    window = "'2010-08-27', '2010-08-28', '12 minutes'"
    per_channel = catalog.query(f"SELECT * FROM aligned(['171A', 'Bz'], {window}, "
                                "MAP {'171A': '6 minutes', 'Bz': '20 seconds'})").locators()
    as_list = catalog.query(f"SELECT * FROM aligned(['171A', 'Bz'], {window}, ['6 minutes', '20 seconds'])").locators()
    aia = catalog.query(f"SELECT * FROM nearest('aia', '171A', {window}, '6 minutes')").to_pandas()
    hmi = catalog.query(f"SELECT * FROM nearest('hmi', 'Bz', {window}, '20 seconds')").to_pandas()
    pd.testing.assert_frame_equal(per_channel, as_list)
    for channel, expected in (("171A", aia), ("Bz", hmi)):
        got = per_channel[per_channel["channel"] == channel]["idx"].reset_index(drop=True)
        pd.testing.assert_series_equal(got, expected["idx"].astype("Int64"), check_names=False)
    assert (hmi["idx"].isna().sum() > catalog.query(f"SELECT * FROM nearest('hmi', 'Bz', {window}, '6 minutes')")
            .to_pandas()["idx"].isna().sum())
    eve = {tolerance: catalog.query(f"SELECT eve_offset_s FROM aligned(['171A', 'Bz'], {window}, "
                                    f"MAP {{'171A': '6 minutes', 'Bz': '20 seconds'{tolerance}}})")
           .to_pandas()["eve_offset_s"] for tolerance in ("", ", 'eve': '5 seconds'")}
    assert eve[""].notna().sum() > 100 and eve[""].abs().max() <= 360  # EVE: the largest tolerance
    assert eve[", 'eve': '5 seconds'"].isna().all()  # the sample's EVE is ~10.5 s off the grid
    with pytest.raises(QueryError, match="tolerance lists 1 intervals for 2 channels"):
        catalog.query(f"SELECT * FROM aligned(['171A', 'Bz'], {window}, ['6 minutes'])")
    with pytest.raises(QueryError, match="no entry for channel Bz"):
        catalog.query(f"SELECT * FROM aligned(['171A', 'Bz'], {window}, MAP {{'171A': '6 minutes'}})")


def test_selection_keeps_its_kind_when_columns_are_joined_on(catalog):
    window = "'2010-08-27', '2010-08-27 06:00', '12 minutes', '6 minutes'"
    plain = catalog.query(f"SELECT * FROM aligned(['171A', 'Bz'], {window})")
    joined = catalog.query(f"SELECT * FROM aligned(['171A', 'Bz'], {window}) a "
                           "LEFT JOIN eve e ON e.idx = a.eve_idx ORDER BY a.row")
    assert joined.kind == "aligned" and joined.columns.count("time") == 2
    pd.testing.assert_frame_equal(joined.locators(), plain.locators())
    assert joined.fetch(missing="nan", downsample=8).shape == (30, 2, 64, 64)
    assert "Fe XX_2" in joined.to_pandas().columns
    frames = catalog.query(f"SELECT * FROM nearest('aia', '171A', {window}) n LEFT JOIN eve e ON e.time = n.time")
    assert frames.kind == "frames" and frames.fetch(missing="nan", downsample=8).shape == (30, 64, 64)
    assert "time_1" in json.loads(frames.to_text("json").splitlines()[0])


# --- 15. fetch -o X.zarr is an xarray dataset -----------------------------------------------

@pytest.mark.parametrize("sql, dims", [
    (DAY_171, ("frame", "y", "x")),
    ("SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27', '2010-08-27 06:00', '12 minutes', '6 minutes')",
     ("time", "channel", "y", "x")),
])
def test_fetch_to_zarr_opens_with_xarray(catalog, catalog_dir, tmp_path, sql, dims):
    import xarray as xr

    result = invoke("fetch", sql, "--catalog", catalog_dir, "--missing", "nan", "--downsample", "4",
                    "-o", tmp_path / "out.zarr", "--quiet")
    assert result.exit_code == 0, result.output
    opened = xr.open_zarr(tmp_path / "out.zarr")
    expected = catalog.query(sql).to_xarray(missing="nan", downsample=4, headers=False)
    assert opened.frames.dims == dims
    np.testing.assert_array_equal(opened.frames.values, expected.values)
    for name in ("T_OBS", "idx", "instrument") + (("time",) if dims[0] == "time" else ()):
        assert name in opened.coords, name
    if dims[0] == "time":
        assert list(opened.channel.values) == ["171A", "Bz"] and list(opened.units.values) == ["DN/s", "G"]
        np.testing.assert_array_equal(opened.time.values, expected.time.values)
    else:
        assert opened.frames.attrs["units"] == "DN/s"
        np.testing.assert_array_equal(opened.T_OBS.values, expected.T_OBS.values)
    headers = pd.read_parquet(tmp_path / opened.frames.attrs["headers"])
    assert len(headers) == int(np.prod(opened.frames.shape[:-2])) and "EXPTIME" in headers.columns


def test_write_zarr_is_reusable_for_any_data_array(tmp_path):
    import dask.array as da
    import xarray as xr

    from sdoml_sql.fetch.output import write_zarr

    data = xr.DataArray(da.arange(40 * 6, dtype=np.float32, chunks=7).reshape(40, 6), dims=("sample", "feature"),
                        coords={"sample": np.arange(40), "label": ("sample", np.array(["a", "b"] * 20, dtype=object))},
                        attrs={"units": "W m-2"}, name="x")
    assert write_zarr(data, tmp_path / "deep" / "x.zarr") == tmp_path / "deep" / "x.zarr"
    back = xr.open_zarr(tmp_path / "deep" / "x.zarr")
    xr.testing.assert_identical(back.x.load(), data.compute())


# --- 16. SQL hints -------------------------------------------------------------------------------

def test_sql_hints_name_the_right_thing(catalog):
    with pytest.raises(QueryError, match='did you mean "aia"'):
        catalog.query("SELECT * FROM aai")
    with pytest.raises(QueryError, match=r'did you mean "DATE-OBS" \(quote keywords with a dash\)'):
        catalog.query("SELECT DATE-OBS FROM aia")
    with pytest.raises(QueryError, match=r"channels lists a channel twice: \[171A, 171A\]"):
        catalog.query("SELECT * FROM aligned(['171A', '171A'], '2010-08-27', '2010-08-28', '1 hour', '6 minutes')")


# --- 17. real signatures ---------------------------------------------------------------------------

def test_selection_verbs_have_real_signatures_that_match_the_functions():
    from sdoml_sql import datasets, fetch
    from sdoml_sql.fetch import eve, maps, movies
    from sdoml_sql.query.selection import Selection

    for verb, function in [(Selection.fetch, fetch.fetch), (Selection.plan, fetch.plan),
                           (Selection.to_xarray, fetch.to_xarray), (Selection.maps, maps.maps),
                           (Selection.animate, movies.animate), (Selection.plot_eve, eve.plot_eve),
                           (Selection.dataset, datasets.dataset)]:
        ours = {n: p.default for n, p in inspect.signature(verb).parameters.items() if n != "self"}
        theirs = {n: p.default for n, p in inspect.signature(function).parameters.items()
                  if n not in ("selection", "catalog")}
        assert ours == theirs, verb.__name__
        assert all(p.kind != inspect.Parameter.VAR_KEYWORD for p in inspect.signature(verb).parameters.values())
    assert inspect.signature(fetch.plan).parameters["missing"].default == "raise"
    export = inspect.signature(Selection.export).parameters
    assert all(p.kind != inspect.Parameter.VAR_KEYWORD for p in export.values())
    assert {n: export[n].default for n in ("downsample", "method", "missing", "normalize")} == {
        n: p.default for n, p in inspect.signature(datasets.dataset).parameters.items()
        if n not in ("selection", "transform")}


def test_plan_and_fetch_agree_on_missing_rows(catalog):
    selection = catalog.query(DAY_171.replace("'2010-08-27 06:00'", "'2010-08-28'"))
    assert selection.locators()["idx"].isna().any()
    with pytest.raises(FetchError, match="no frame"):
        selection.plan()
    with pytest.raises(FetchError, match="no frame"):
        selection.fetch()
    assert selection.plan(missing="drop").output_shape == selection.fetch(missing="drop").shape


# --- 18. HMI component names -----------------------------------------------------------------

def test_hmi_titles_name_the_component(catalog, tmp_path):
    from sdoml_sql.fetch.movies import animate, save_frame

    selection = catalog.query("SELECT year, channel, idx FROM hmi WHERE year = 2010 AND idx = 0 ORDER BY channel")
    maps = selection.maps(downsample=8)
    assert [m.name.split()[:2] for m in maps] == [["HMI", "Bx"], ["HMI", "By"], ["HMI", "Bz"]]
    movie = animate(selection, downsample=8)
    titles = []
    for i in range(3):
        movie.sdoml_movie.update(i)
        titles.append(movie.sdoml_movie.title.get_text())
    save_frame(movie, 2, tmp_path / "bz.png")
    assert [t.split()[:2] for t in titles] == [["HMI", "Bx"], ["HMI", "By"], ["HMI", "Bz"]]
