"""query() runs one read-only statement on a connection locked to the catalog directory."""

from __future__ import annotations

import pytest

import sql_brute as brute
from sdoml_sql.exceptions import QueryError
from sdoml_sql.query.sqlguard import check_read_only

FORBIDDEN = {
    "SELECT * FROM read_csv('/etc/passwd')": "Permission Error",
    "SELECT * FROM read_text('/etc/hostname')": "Permission Error",
    "COPY (SELECT 1 AS a) TO '{catalog}/x.csv'": "not COPY",
    "COPY aia TO '{catalog}/aia/year=2010/channel=171A/data.parquet'": "not COPY",
    "ATTACH '{catalog}/x.duckdb' AS x": "not ATTACH",
    "INSTALL spatial": "not INSTALL",
    "LOAD spatial": "read-only",
    "SELECT 1; SELECT 2": "only one statement",
    "SELECT 1; DROP VIEW aia": "only one statement",
    "DROP VIEW aia": "not DROP",
    "CREATE TABLE t AS SELECT 1": "not CREATE",
    "INSERT INTO t VALUES (1)": "not INSERT",
    "SET enable_external_access = true": "not SET",
    "PRAGMA version": "read-only",
    "CALL pragma_version()": "read-only",
    "EXPORT DATABASE '{catalog}/dump'": "read-only",
    "": "empty query",
}


@pytest.mark.parametrize("sql", list(FORBIDDEN))
def test_forbidden_statements_are_refused_and_change_nothing(catalog, catalog_dir, sql):
    before = brute.tree_state(catalog_dir)
    with pytest.raises(QueryError, match=FORBIDDEN[sql]) as refused:
        catalog.query(sql.format(catalog=catalog_dir))
    assert "\n" not in str(refused.value)
    with pytest.raises(QueryError):
        catalog.sql(sql.format(catalog=catalog_dir))
    assert brute.tree_state(catalog_dir) == before
    assert len(catalog.query("SELECT * FROM aia LIMIT 1")) == 1


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM aia",
    "WITH x AS (SELECT idx FROM aia) SELECT count(*) FROM x",
    "SELECT idx FROM aia UNION ALL SELECT idx FROM hmi",
    "FROM aia SELECT idx LIMIT 2",
    "FROM hmi LIMIT 2",
    "DESCRIBE aia",
    "SUMMARIZE SELECT EXPTIME FROM aia",
    "SELECT count(*) FROM aia;",
])
def test_read_only_statements_run(catalog, sql):
    assert len(catalog.query(sql)) > 0


def test_locked_configuration_cannot_be_reopened(catalog):
    connection = catalog.connect()
    with pytest.raises(Exception, match="locked"):
        connection.execute("SET enable_external_access = true")


def test_unknown_column_suggests_close_match(catalog):
    with pytest.raises(QueryError) as error:
        catalog.query("SELECT EXPTIM FROM aia")
    message = str(error.value)
    assert 'did you mean "EXPTIME"' in message and "'EXPTIM'" in message and "\n" not in message


def test_unknown_view_suggests_close_match(catalog):
    with pytest.raises(QueryError, match='did you mean "aia"'):
        catalog.query("SELECT * FROM aiaa")


def test_syntax_error_names_the_token(catalog):
    with pytest.raises(QueryError, match="syntax error.*'WHERE'"):
        catalog.query("SELECT * FROM aia WHERE")


def test_guard_strips_trailing_semicolon():
    assert check_read_only("SELECT 1 ;\n") == "SELECT 1"


def test_catalog_introspection_errors_are_one_query_error_line(catalog_dir):
    from sdoml_sql import Catalog

    closed = Catalog(catalog_dir)
    closed._connection.close()  # any DuckDB failure of the catalog's own statements
    for call in (closed.channels, lambda: closed.empty_result_hints("SELECT * FROM aia WHERE channel = '999A'")):
        with pytest.raises(QueryError, match=f"catalog {catalog_dir}: .*closed") as failed:
            call()
        assert "\n" not in str(failed.value)
