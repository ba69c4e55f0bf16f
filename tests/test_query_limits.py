"""The query time limit: a runaway query is interrupted, the error names the limit, the
catalog stays usable (Catalog.query, query(), Catalog.text and `sdoml-sql query`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdoml_sql import query
from sdoml_sql.exceptions import QueryError

RUNAWAY = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


def test_runaway_query_stops_at_the_limit_and_the_catalog_stays_usable(catalog):
    started = time.perf_counter()
    with pytest.raises(QueryError, match=r"time limit of 0.5 s") as stopped:
        catalog.query(RUNAWAY, timeout=0.5)
    assert time.perf_counter() - started < 10
    assert "\n" not in str(stopped.value)
    assert len(catalog.query("SELECT idx FROM aia LIMIT 3")) == 3
    assert catalog.text("SELECT 1 AS one", "csv", timeout=5) == "one\n1\n"


def test_limit_from_the_environment_and_for_query_function(catalog, monkeypatch):
    monkeypatch.setenv("SDOML_QUERY_TIMEOUT", "0.3")
    with pytest.raises(QueryError, match=r"time limit of 0.3 s.*SDOML_QUERY_TIMEOUT"):
        query(RUNAWAY, catalog)
    with pytest.raises(QueryError, match=r"time limit of 0.3 s"):
        catalog.text(RUNAWAY)
    assert len(query("SELECT count(*) FROM hmi", catalog)) == 1
    monkeypatch.setenv("SDOML_QUERY_TIMEOUT", "soon")
    with pytest.raises(QueryError, match="SDOML_QUERY_TIMEOUT must be a number of seconds, not 'soon'"):
        catalog.query("SELECT 1")


def test_a_query_within_the_limit_is_not_touched(catalog):
    assert catalog.query("SELECT count(*) AS n FROM frames", timeout=60).to_pandas().n[0] > 0


def test_cli_query_timeout_is_one_line(catalog_dir):
    command = [sys.executable, "-m", "sdoml_sql.cli", "query", RUNAWAY, "--catalog", str(catalog_dir)]
    started = time.perf_counter()
    result = subprocess.run([*command, "--query-timeout", "0.5"], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: query stopped at its time limit of 0.5 s "
                                     "(query_timeout argument, --query-timeout or $SDOML_QUERY_TIMEOUT)")
    assert time.perf_counter() - started < 15
    from_env = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "SDOML_QUERY_TIMEOUT": "0.5"})
    assert from_env.returncode == 1 and "time limit of 0.5 s" in from_env.stderr
