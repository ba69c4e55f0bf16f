"""Malformed stores and hostile SQL, case by case, through the CLI as a subprocess: each
gives a correct catalog or one line ``error: …`` on stderr — never a traceback, never a
partial catalog."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from sdoml_sql.catalog_builder.build import read_manifest

PY = sys.executable
ARRAY = "2010/171A"
FRAMES = 10


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """A two-channel, one-year AIA sample with images (frames per channel: about 10)."""
    from sdoml_sql.stores.sample import write_sample

    paths = write_sample(tmp_path_factory.mktemp("small"), years=(2010,), channels=("171A", "193A"),
                         aia_frames=FRAMES, hmi_frames=2, hmi_years=(2010,), eve=False)
    (paths["aia"] / ".zmetadata").unlink(missing_ok=True)
    return paths["aia"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([PY, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True, env=env, timeout=180)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 1, stderr exactly one line starting ``error:`` and holding every fragment."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- mutations of a store ------------------------------------------------------------------

def edit_attrs(change):
    """A mutation that loads ``2010/171A/.zattrs``, lets ``change(attrs)`` edit it, writes it."""
    def mutate(store: Path) -> None:
        path = store / ARRAY / ".zattrs"
        attrs = json.loads(path.read_text())
        change(attrs)
        path.write_text(json.dumps(attrs, indent=2, allow_nan=True))
    return mutate


def write_bytes(relative: str, data: bytes):
    def mutate(store: Path) -> None:
        (store / relative).write_bytes(data)
    return mutate


def edit_zarray(change):
    def mutate(store: Path) -> None:
        path = store / ARRAY / ".zarray"
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return mutate


def frames_of(attrs) -> int:
    return len(attrs["T_OBS"])


def set_values(key, make):
    return edit_attrs(lambda attrs: attrs.__setitem__(key, make(frames_of(attrs))))


def set_value(key, i, value):
    return edit_attrs(lambda attrs: attrs[key].__setitem__(i, value))


def column(catalog: Path, key: str) -> list:
    path = catalog / "aia" / "year=2010" / "channel=171A" / "data.parquet"
    return [r[0] for r in duckdb.sql(f'SELECT "{key}" FROM read_parquet(\'{path}\') ORDER BY idx').fetchall()]


def side_values(catalog: Path, key: str) -> list:
    path = catalog / "array_attrs" / "instrument=aia" / "year=2010" / "channel=171A" / "data.parquet"
    rows = duckdb.sql(f"SELECT values FROM read_parquet('{path}') WHERE key = '{key}'").fetchall()
    return json.loads(rows[0][0])


OK, ERROR = "ok", "error"
HUGE = "x" * 5_000_000
# case: (mutation, expected outcome, check of the catalog | fragments of the error line)
STORE_CASES = {
    "list shorter than the frames": (edit_attrs(lambda a: a.__setitem__("EXPTIME", a["EXPTIME"][:3])), OK,
                                     lambda c: side_values(c, "EXPTIME") and len(side_values(c, "EXPTIME")) == 3),
    "list longer than the frames": (edit_attrs(lambda a: a.__setitem__("FSN", a["FSN"] * 2)), OK,
                                    lambda c: len(side_values(c, "FSN")) % 2 == 0),
    "empty list": (set_values("DATAMEAN", lambda n: []), OK, lambda c: side_values(c, "DATAMEAN") == []),
    "nulls in a numeric key": (set_value("EXPTIME", 2, None), OK, lambda c: column(c, "EXPTIME")[2] is None),
    "all nulls": (set_values("DATAMEAN", lambda n: [None] * n), OK, lambda c: set(column(c, "DATAMEAN")) == {None}),
    "NaN literal": (set_value("EXPTIME", 1, math.nan), OK, lambda c: column(c, "EXPTIME")[1] is None),
    "Infinity literals": (edit_attrs(lambda a: a["DATAMEAN"][:2].__class__ and a["DATAMEAN"].__setitem__(0, math.inf)
                                     or a["DATAMEAN"].__setitem__(1, -math.inf)), OK,
                          lambda c: column(c, "DATAMEAN")[:2] == [math.inf, -math.inf]),
    "'nan' strings in a float key": (set_value("CRPIX1", 0, "nan"), OK, lambda c: column(c, "CRPIX1")[0] is None),
    "numbers mixed with text": (set_value("EXPTIME", 0, "short"), OK, lambda c: column(c, "EXPTIME")[0] == "short"),
    "ints mixed with floats": (set_value("FSN", 0, 1.5), OK, lambda c: column(c, "FSN")[0] == 1.5),
    "booleans": (set_values("QUALITY", lambda n: [True, False] * (n // 2) + [True] * (n % 2)), OK,
                 lambda c: column(c, "QUALITY")[:2] == [1, 0]),
    "integer beyond int64": (set_value("FSN", 0, 2**70), OK, lambda c: column(c, "FSN")[0] == float(2**70)),
    "nested values": (set_value("HISTORY", 0, {"a": [1, 2]}), OK, lambda c: '"a"' in column(c, "HISTORY")[0]),
    "huge string": (set_value("COMMENT", 0, HUGE), OK, lambda c: len(column(c, "COMMENT")[0]) == len(HUGE)),
    "non-ASCII text": (set_value("COMMENT", 0, "Ångström ☉ \u0000 end"), OK,
                       lambda c: column(c, "COMMENT")[0] == "Ångström ☉ \u0000 end"),
    "duplicate frame times": (edit_attrs(lambda a: a["T_OBS"].__setitem__(1, a["T_OBS"][0])), OK,
                              lambda c: column(c, "T_OBS")[0] == column(c, "T_OBS")[1]),
    "leap-second time": (set_value("T_OBS", 0, "2016-12-31T23:59:60.50Z"), OK,
                         lambda c: str(column(c, "T_OBS")[0]) == "2016-12-31 23:59:59.999999"),
    "null time": (set_value("T_OBS", 0, None), OK, lambda c: column(c, "T_OBS")[0] is None),
    "key colliding with idx": (set_values("IDX", lambda n: list(range(n))), OK,
                               lambda c: side_values(c, "IDX")[:2] == [0, 1]),
    "unparseable time": (set_value("T_OBS", 4, "the day after"), ERROR,
                         ["key T_OBS", "frame 4", "unparseable time string 'the day after'", ARRAY]),
    "attrs value not a list": (edit_attrs(lambda a: a.__setitem__("EXPTIME", 2.9)), ERROR,
                               ["key EXPTIME is a float, not a list", ARRAY]),
    "attrs not an object": (write_bytes(f"{ARRAY}/.zattrs", b"[1, 2, 3]"), ERROR, [".zattrs is a list", ARRAY]),
    "truncated .zattrs": (write_bytes(f"{ARRAY}/.zattrs", b'{\n  "T_OBS": ["2010-'), ERROR,
                          [".zattrs is not valid JSON", ARRAY]),
    "non-UTF-8 bytes in .zattrs": (write_bytes(f"{ARRAY}/.zattrs", b'{"COMMENT": ["\xff\xfe"]}'), ERROR,
                                   [".zattrs is not valid JSON", ARRAY]),
    "empty .zattrs file": (write_bytes(f"{ARRAY}/.zattrs", b""), ERROR, [".zattrs is not valid JSON", ARRAY]),
    ".zarray not JSON": (write_bytes(f"{ARRAY}/.zarray", b"zarr!"), ERROR, [".zarray is not valid JSON"]),
    ".zarray without shape": (edit_zarray(lambda m: m.pop("shape")), ERROR, [ARRAY, "shape"]),
    ".zarray shape of strings": (edit_zarray(lambda m: m.__setitem__("shape", ["ten", 512, 512])), ERROR,
                                 [ARRAY, "shape"]),
    "empty array (0 frames, empty lists)": (
        lambda s: (edit_zarray(lambda m: m.__setitem__("shape", [0, 512, 512]))(s),
                   edit_attrs(lambda a: [a.__setitem__(k, []) for k in list(a)])(s)), OK,
        lambda c: read_manifest(c)["partitions"]["aia/year=2010/channel=171A"]["rows"] == 0),
    "no .zgroup at the root": (lambda s: (s / ".zgroup").unlink(), ERROR, ["is not a Zarr v2 store"]),
}


def frames_in(store: Path, array: str) -> int:
    return json.loads((store / array / ".zarray").read_text())["shape"][0]


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_malformed_store(small_store, tmp_path, case):
    mutate, outcome, expected = STORE_CASES[case]
    store = tmp_path / "aia.zarr"
    shutil.copytree(small_store, store)
    mutate(store)
    catalog = tmp_path / "catalog"
    result = run_cli("build", "--aia", str(store), "--catalog", str(catalog), "--quiet")
    if outcome == ERROR:
        assert_one_line_error(result, *expected)
        assert not (catalog / "manifest.json").exists() and not list(catalog.rglob("*.parquet"))  # nothing partial
        return
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    manifest = read_manifest(catalog)
    for key, partition in manifest["partitions"].items():  # nothing lost: rows == frames
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{catalog}/{key}/data.parquet')").fetchall()[0][0]
        assert rows == partition["rows"] == frames_in(store, partition["array_path"])
    assert expected(catalog), case


# --- chunks ---------------------------------------------------------------------------------

FETCH_SQL = "SELECT year, channel, idx FROM aia WHERE channel = '171A' ORDER BY idx LIMIT 3"


@pytest.fixture()
def built_small(small_store, tmp_path):
    store = tmp_path / "aia.zarr"
    shutil.copytree(small_store, store)
    catalog = tmp_path / "catalog"
    assert run_cli("build", "--aia", str(store), "--catalog", str(catalog), "--quiet").returncode == 0
    return store, catalog


def test_a_corrupted_chunk_fails_fetch_naming_the_frames(built_small, tmp_path):
    store, catalog = built_small
    chunk = store / ARRAY / "0.0.0"
    chunk.write_bytes(b"\x02\x01" + os.urandom(200))
    result = run_cli("fetch", FETCH_SQL, "--catalog", str(catalog), "--output", str(tmp_path / "out.npy"), "--quiet")
    assert_one_line_error(result, "aia 2010/171A frames 0..2")


def test_a_failed_fetch_leaves_no_output_file(built_small, tmp_path):
    store, catalog = built_small
    (store / ARRAY / "0.0.0").write_bytes(b"\x02\x01" + os.urandom(200))
    result = run_cli("fetch", FETCH_SQL, "--catalog", str(catalog), "--output", str(tmp_path / "out.npy"), "--quiet")
    assert result.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == []  # no output, no partial file


def test_a_missing_chunk_reads_as_the_fill_value(built_small, tmp_path):
    """Zarr's rule (and what the sample's ``--no-images`` relies on): no chunk, fill value 0."""
    store, catalog = built_small
    (store / ARRAY / "0.0.0").unlink()
    result = run_cli("fetch", FETCH_SQL, "--catalog", str(catalog), "--output", str(tmp_path / "out.npy"), "--quiet")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    frames = np.load(tmp_path / "out.npy")
    assert frames.shape == (3, 512, 512) and (frames == 0).all()


# --- hostile SQL ----------------------------------------------------------------------------

def nested(depth: int) -> str:
    return "SELECT " + "(" * depth + "1" + ")" * depth


HOSTILE_SQL = {
    "two statements": "SELECT 1; SELECT 2",
    "statement after a comment": "SELECT 1 -- x\n; DROP VIEW aia",
    "DROP": "DROP VIEW aia",
    "CREATE TABLE": "CREATE TABLE t AS SELECT 1",
    "INSERT": "INSERT INTO aia VALUES (1)",
    "COPY TO a file": "COPY (SELECT 1) TO '{out}'",
    "read_csv of /etc/passwd": "SELECT * FROM read_csv('/etc/passwd')",
    "read_text": "SELECT * FROM read_text('/etc/hostname')",
    "read_parquet elsewhere": "SELECT * FROM read_parquet('/tmp/*.parquet')",
    "glob": "SELECT * FROM glob('/etc/*')",
    "PRAGMA": "PRAGMA database_list",
    "SET": "SET enable_external_access = true",
    "RESET": "RESET enable_external_access",
    "ATTACH": "ATTACH '{out}' AS other",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "EXPORT DATABASE": "EXPORT DATABASE '{out}'",
    "getenv": "SELECT getenv('HOME')",
    "CALL": "CALL pragma_version()",
    "not SQL": "this is not SQL at all",
    "empty": "   ",
    "unknown column": "SELECT no_such_column FROM aia",
    "very long query": "SELECT " + " + ".join(["1"] * 200_000),
    "deep nesting": nested(5000),
    "deep subqueries": "SELECT * FROM " + "(SELECT * FROM " * 2000 + "aia" + ") AS t" * 2000,
    "NUL byte": "SELECT 1\x00; DROP VIEW aia",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SQL))
def test_hostile_sql_is_refused_in_one_line(catalog_dir, tmp_path, case):
    out = tmp_path / "written"
    sql = HOSTILE_SQL[case].replace("{out}", str(out))
    if "\x00" in sql or len(sql) > 100_000:
        path = tmp_path / "q.sql"
        path.write_text(sql)
        result = run_cli("query", "--catalog", str(catalog_dir), "--file", str(path))
    else:
        result = run_cli("query", sql, "--catalog", str(catalog_dir))
    assert_one_line_error(result)
    assert not out.exists()
