"""The DuckDB shell (PyPI duckdb-cli) over init.sql, and the `query`/`shell` CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import sql_brute as brute
from sdoml_sql import Catalog
from sdoml_sql.exceptions import CatalogError
from sdoml_sql.query.connection import find_duckdb_cli

DUCKDB = Path(sys.executable).parent / "duckdb"


def cli(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "sdoml_sql.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})},
                          cwd=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def shell_catalog(catalog_dir, tmp_path_factory):
    """A copy of the catalog (init.sql is written into it)."""
    import shutil

    copy = tmp_path_factory.mktemp("shell") / "catalog"
    shutil.copytree(catalog_dir, copy)
    return copy


def test_duckdb_cli_runs_init_sql(shell_catalog, source):
    init = Catalog(shell_catalog).write_init_sql()
    result = subprocess.run([str(DUCKDB), "-init", str(init), "-csv", "-noheader", "-c",
                             "SELECT count(*) FROM aia"], capture_output=True, text=True, timeout=60,
                            cwd=shell_catalog)  # init.sql's paths are relative to the catalog
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((source.instrument == "aia").sum())


def test_duckdb_cli_runs_macros_from_stdin(shell_catalog, source):
    init = Catalog(shell_catalog).write_init_sql()
    sql = ("SELECT count(idx) FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', "
           "INTERVAL 12 minutes, INTERVAL 3 minutes);\n")
    result = subprocess.run([str(DUCKDB), "-init", str(init), "-csv", "-noheader"], input=sql,
                            capture_output=True, text=True, timeout=60, cwd=shell_catalog)
    expected = brute.nearest(source, "Bz", "2010-08-27", "2010-08-28", "12 minutes", "3 minutes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(expected.idx.notna().sum())


def test_shell_command_starts_duckdb_with_the_views(shell_catalog, source):
    result = cli("shell", "--catalog", str(shell_catalog), "-csv", "-noheader", "-c",
                 "SELECT count(*) FROM hmi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((source.instrument == "hmi").sum())
    assert (shell_catalog / "init.sql").is_file()


def test_missing_duckdb_cli_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CatalogError, match="pip install duckdb-cli"):
        find_duckdb_cli()


def test_query_command_table_and_csv(catalog_dir, source):
    sql = "SELECT channel, count(*) AS n FROM aia GROUP BY channel ORDER BY channel"
    table = cli("query", sql, "--catalog", str(catalog_dir))
    assert table.returncode == 0, table.stderr
    assert table.stdout.split()[:2] == ["channel", "n"]
    csv = cli("query", sql, "--catalog", str(catalog_dir), "--format", "csv")
    got = pd.read_csv(pd.io.common.StringIO(csv.stdout))
    expected = source[source.instrument == "aia"].groupby("channel").size()
    assert dict(zip(got.channel, got.n)) == expected.to_dict()


def test_query_command_json_from_stdin_and_file(catalog_dir, tmp_path):
    sql = "SELECT year, channel, idx FROM hmi WHERE channel = 'Bz' ORDER BY year, idx LIMIT 3"
    from_stdin = cli("query", "-", "--catalog", str(catalog_dir), "--format", "json", stdin=sql)
    rows = [json.loads(line) for line in from_stdin.stdout.splitlines()]
    assert [r["idx"] for r in rows] == [0, 1, 2]
    path = tmp_path / "q.sql"
    path.write_text(sql)
    at_file = cli("query", f"@{path}", "--catalog", str(catalog_dir), "--format", "json")
    option = cli("query", "--file", str(path), "--catalog", str(catalog_dir), "--format", "json")
    assert at_file.stdout == option.stdout == from_stdin.stdout


def test_query_command_parquet_output_and_env_catalog(catalog_dir, tmp_path):
    out = tmp_path / "out.parquet"
    result = cli("query", "SELECT idx FROM aia WHERE channel = '171A'", "--format", "parquet",
                 "--output", str(out), env={"SDOML_CATALOG": str(catalog_dir)})
    assert result.returncode == 0, result.stderr
    assert pq.read_table(out).num_rows > 0


def test_query_command_errors_are_one_line(catalog_dir):
    result = cli("query", "COPY aia TO 'x.csv'", "--catalog", str(catalog_dir))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: only read-only") and result.stderr.count("\n") == 1


def test_init_sql_falls_back_to_the_directory_it_was_written_in(shell_catalog, source, tmp_path):
    """``duckdb -init /data/catalog/init.sql`` from anywhere: the catalog is found where init.sql
    was written while it is not moved; once moved it is found from inside it, and from
    elsewhere the shell stops with one line naming both places it looked."""
    import shutil

    init = Catalog(shell_catalog).write_init_sql()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    count = [str(DUCKDB), "-csv", "-noheader", "-c", "SELECT count(*) FROM aia"]
    env = {k: v for k, v in os.environ.items() if k != "SDOML_SHELL_CATALOG"}
    result = subprocess.run([count[0], "-init", str(init), *count[1:]], capture_output=True, text=True, timeout=60,
                            cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((source.instrument == "aia").sum())
    moved = tmp_path / "moved"
    shutil.copytree(shell_catalog, moved)
    gone = shell_catalog.with_name("gone")
    shell_catalog.rename(gone)
    try:
        inside = subprocess.run([count[0], "-init", "init.sql", *count[1:]], capture_output=True, text=True,
                                timeout=60, cwd=moved, env=env)
        assert inside.returncode == 0 and inside.stdout.strip() == result.stdout.strip(), inside.stderr
        lost = subprocess.run([count[0], "-init", str(moved / "init.sql"), *count[1:]], capture_output=True,
                              text=True, timeout=60, cwd=elsewhere, env=env)
        assert lost.returncode != 0 and "no sdoml-sql catalog in . nor in " in lost.stderr
        assert str(shell_catalog) in lost.stderr and "where init.sql was written" in lost.stderr
    finally:
        gone.rename(shell_catalog)
