"""The whole path through emulated object stores on 127.0.0.1 — fake-gcs-server via gcsfs
(``gs://``) and moto's S3 server via s3fs (``s3://``) — gives what the local stores give:
the same tree, catalog rows, query answers, pixels and maps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from emulators import STORE_NAMES, FaultProxy
from sdoml_sql.catalog_builder.build import build_catalog, read_manifest, rebuild_catalog
from sdoml_sql.exceptions import AccessDeniedError, OfflineError
from sdoml_sql.query.catalog import Catalog
from sdoml_sql.stores.source import check_reachable, open_store

PY = sys.executable
VOLATILE_PARTITION_FIELDS = ("fingerprint", "built_at")
QUERIES = [
    "SELECT year, channel, count(*) AS n, min(T_OBS) AS first, max(EXPTIME) AS longest FROM aia "
    "GROUP BY ALL ORDER BY ALL",
    "SELECT channel, count(*) AS n, avg(CRLT_OBS) AS b0 FROM hmi GROUP BY ALL ORDER BY ALL",
    "SELECT count(*) AS n, max(\"Fe XX_2\") AS peak, min(time) AS first FROM eve",
    "SELECT year, channel, idx, T_OBS FROM aia WHERE EXPTIME < 2.0 ORDER BY T_OBS, channel LIMIT 25",
]
FRAMES_SQL = ("SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 "
              "AND idx IN (0, 119, 120, 122) ORDER BY idx")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI as a subprocess, with ``env`` on top of a clean store environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SDOML_", "STORAGE_EMULATOR", "AWS_"))}
    return subprocess.run([PY, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**base, "PYTHONWARNINGS": "ignore", **(env or {})})


def parquet_tables(catalog: Path) -> dict[str, list[dict]]:
    """Every Parquet file of a catalog as rows, by relative path."""
    return {str(p.relative_to(catalog)): duckdb.sql(f"SELECT * FROM read_parquet('{p}')").to_arrow_table().to_pylist()
            for p in sorted(catalog.rglob("*.parquet"))}


def comparable_partitions(catalog: Path) -> dict[str, dict]:
    """The manifest's partitions without the fields that depend on when and where it was built."""
    partitions = read_manifest(catalog)["partitions"]
    return {key: {k: v for k, v in entry.items() if k not in VOLATILE_PARTITION_FIELDS and k != "warnings"}
            for key, entry in partitions.items()}


@pytest.fixture(scope="module", params=["gs", "s3"])
def built(request, tmp_path_factory):
    """A catalog built through one emulator with only its endpoint variable set."""
    remote = request.getfixturevalue("gcs_remote" if request.param == "gs" else "s3_remote")
    catalog = tmp_path_factory.mktemp(f"remote-{request.param}") / "catalog"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in remote.env().items():
            patch.setenv(name, value)
        urls = remote.urls()
        build_catalog(aia=urls["aia"], hmi=urls["hmi"], eve=urls["eve"], catalog=catalog, progress=False)
    return remote, catalog


def test_catalog_rows_equal_the_local_build(built, catalog_dir):
    remote, catalog = built
    assert parquet_tables(catalog) == parquet_tables(catalog_dir)
    assert comparable_partitions(catalog) == comparable_partitions(catalog_dir)
    manifest = read_manifest(catalog)
    for name, store in STORE_NAMES.items():
        source = manifest["sources"][name]
        assert source["url"] == remote.emulator.url(store)
        assert source["storage_options"]["endpoint_url"] == remote.endpoint  # so rebuild/fetch reopen it
        assert not any("secret" in k or "token" in k for k in source["storage_options"])
    frames = sum(p["rows"] for p in manifest["partitions"].values())
    assert frames == sum(p["rows"] for p in read_manifest(catalog_dir)["partitions"].values())


@pytest.mark.parametrize("sql", QUERIES)
def test_query_answers_equal_the_local_catalog(built, catalog_dir, sql, no_store_env):
    _, catalog = built
    assert Catalog(catalog).query(sql).to_arrow().to_pylist() == Catalog(catalog_dir).query(sql).to_arrow().to_pylist()


def test_fetch_and_maps_equal_the_local_store(built, catalog_dir, no_store_env):
    _, catalog = built
    remote_selection = Catalog(catalog).query(FRAMES_SQL)
    local_selection = Catalog(catalog_dir).query(FRAMES_SQL)
    assert len(remote_selection) == 4  # frames 119 and 120 sit in two different chunks
    remote_pixels = remote_selection.fetch().compute()
    np.testing.assert_array_equal(remote_pixels, local_selection.fetch().compute())
    assert np.isfinite(remote_pixels).all() and remote_pixels.std() > 0
    for remote_map, local_map in zip(remote_selection.maps(), local_selection.maps(), strict=True):
        np.testing.assert_array_equal(remote_map.data, local_map.data)
        assert remote_map.date == local_map.date and remote_map.wavelength == local_map.wavelength
        assert dict(remote_map.meta) == dict(local_map.meta)


def test_rebuild_reads_only_what_changed_remotely(built, tmp_path, sample_paths, no_store_env):
    remote, shared = built
    catalog = tmp_path / "catalog"
    shutil.copytree(shared, catalog)
    assert rebuild_catalog(catalog, progress=False).written == []  # ETag/generation unchanged
    key = f"{STORE_NAMES['aia']}/2010/94A/.zattrs"
    original = (sample_paths["aia"] / "2010" / "94A" / ".zattrs").read_bytes()
    attrs = json.loads(original)
    attrs["EXPTIME"][0] = 0.5
    remote.emulator.put(key, json.dumps(attrs, indent=2).encode())
    try:
        report = rebuild_catalog(catalog, progress=False)
    finally:
        remote.emulator.put(key, original)
    assert report.written == ["aia/year=2010/channel=94A"]
    row = duckdb.sql(f"SELECT EXPTIME FROM read_parquet('{catalog}/aia/year=2010/channel=94A/data.parquet') "
                     "WHERE idx = 0").fetchall()
    assert row == [(0.5,)]


def test_cli_tree_build_query_fetch_through_the_emulator(remote, sample_paths, catalog_dir, tmp_path):
    local_tree = run_cli("tree", str(sample_paths["hmi"]))
    remote_tree = run_cli("tree", remote.urls()["hmi"], "--endpoint-url", remote.endpoint)
    assert remote_tree.returncode == 0, remote_tree.stderr
    assert remote_tree.stdout.replace(remote.urls()["hmi"], "STORE") == \
        local_tree.stdout.replace(str(sample_paths["hmi"]), "STORE")
    catalog = tmp_path / "catalog"
    built = run_cli("build", "--aia", remote.urls()["aia"], "--catalog", str(catalog), "--quiet",
                    "--endpoint-url", remote.endpoint)
    assert built.returncode == 0, built.stderr
    assert "18 partitions written" in built.stdout
    # no endpoint given any more: the manifest names it
    fetched = run_cli("fetch", FRAMES_SQL, "--catalog", str(catalog), "--output", str(tmp_path / "f.npy"), "--quiet")
    assert fetched.returncode == 0, fetched.stderr
    expected = Catalog(catalog_dir).query(FRAMES_SQL).fetch().compute()
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), expected)


def test_billing_project_reaches_gcs_and_the_manifest(gcs_remote, tmp_path, no_store_env):
    proxy = FaultProxy(gcs_remote.endpoint)
    try:
        result = run_cli("build", "--hmi", gcs_remote.urls()["hmi"], "--catalog", str(tmp_path / "c"), "--quiet",
                         "--endpoint-url", proxy.endpoint, "--billing-project", "sdoml-test-project",
                         "--years", "2010")
        assert result.returncode == 0, result.stderr
        assert proxy.count(r".") > 0 and proxy.count(r"userProject=sdoml-test-project") == proxy.count(r".")
    finally:
        proxy.stop()
    options = read_manifest(tmp_path / "c")["sources"]["hmi"]["storage_options"]
    assert options["requester_pays"] == "sdoml-test-project" and options["endpoint_url"] == proxy.endpoint


def test_anonymous_read_of_a_private_bucket_is_refused_in_one_line(s3_remote, no_store_env):
    writer = s3_remote.emulator.writer()
    if not writer.exists("private-sdoml"):
        writer.mkdir("private-sdoml")
    writer.pipe_file("private-sdoml/store.zarr/.zgroup", b'{"zarr_format": 2}')
    with pytest.raises(AccessDeniedError, match=r"access refused to store s3://private-sdoml/store.zarr"):
        open_store("s3://private-sdoml/store.zarr", storage_options={"endpoint_url": s3_remote.endpoint})


def test_check_reachable_lets_loopback_through_and_fails_fast_elsewhere(remote):
    check_reachable(remote.urls()["aia"], {"endpoint_url": remote.endpoint})  # no error
    started = time.perf_counter()
    with pytest.raises(OfflineError, match="no-such-host.invalid"):
        check_reachable(remote.urls()["aia"], {"endpoint_url": "http://no-such-host.invalid:9000"})
    assert time.perf_counter() - started < 2


def test_cli_with_an_unresolvable_endpoint_fails_fast_in_one_line(remote):
    started = time.perf_counter()
    result = run_cli("tree", remote.urls()["aia"], "--endpoint-url", "http://no-such-host.invalid:9000")
    elapsed = time.perf_counter() - started
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: offline") and "no-such-host.invalid" in lines[0]
    assert elapsed < 2 + 2.5, f"{elapsed:.1f} s (interpreter start-up included)"
