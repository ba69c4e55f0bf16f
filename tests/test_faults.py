"""Faults injected between the client and the emulated object stores (a proxy on
127.0.0.1): slow answers, dropped connections, truncated bodies and 5xx errors on chunk and
``.zattrs`` reads are retried with backoff and succeed, or fail within the configured
timeout with one line naming the object; a failed build leaves the catalog as it was; a
repeated fetch with a chunk cache reads nothing remote."""

from __future__ import annotations

import shutil
import time

import duckdb
import numpy as np
import pytest

from emulators import Fault, FaultProxy
from sdoml_sql.catalog_builder.build import build_catalog, read_manifest, rebuild_catalog
from sdoml_sql.exceptions import FetchError, StoreError
from sdoml_sql.query.catalog import Catalog
from test_build import snapshot

FRAMES_SQL = ("SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 "
              "AND idx IN (0, 5, 119, 120) ORDER BY idx")
#: Two whole chunks (15 frames a chunk): read whole, so cached.
WHOLE_SQL = "SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 AND idx < 30 ORDER BY idx"
CHUNK_0 = r"2010/171A/0\.0\.0$"
CHUNK_1 = r"2010/171A/8\.0\.0$"  # frame 120's chunk (15 frames a chunk)
ZATTRS = r"2010/193A/\.zattrs$"
RECOVERABLE = {
    "503 on a chunk": [Fault("error", CHUNK_0, times=2)],
    "500 on a chunk": [Fault("error", CHUNK_1, times=1, status=500)],
    "dropped connection on a chunk": [Fault("drop", CHUNK_0, times=2)],
    "truncated chunk body": [Fault("truncate", CHUNK_1, times=1)],
    "slow chunk (under the timeout)": [Fault("slow", CHUNK_0, times=1, delay=1.0)],
    "stalled chunk (past half the timeout)": [Fault("slow", CHUNK_1, times=1, delay=6.0)],
    "mixed faults on both chunks": [Fault("drop", CHUNK_0, times=1), Fault("error", CHUNK_1, times=1),
                                    Fault("truncate", CHUNK_0, times=1)],
}
ZATTRS_FAULTS = {
    "503 on .zattrs": [Fault("error", ZATTRS, times=2)],
    "dropped .zattrs": [Fault("drop", ZATTRS, times=2)],
    "truncated .zattrs": [Fault("truncate", ZATTRS, times=1)],
    "slow .zattrs": [Fault("slow", ZATTRS, times=1, delay=1.0)],
}
TIMEOUT_S = 10.0


@pytest.fixture()
def proxied(remote, monkeypatch, no_store_env):
    """(remote, proxy): the emulator behind a fault proxy, reached through its endpoint variable."""
    proxy = FaultProxy(remote.endpoint)
    for name, value in remote.env(proxy.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SDOML_TIMEOUT", str(TIMEOUT_S))
    yield remote, proxy
    proxy.stop()


@pytest.fixture()
def proxied_catalog(proxied, tmp_path):
    """An AIA catalog (2010 only) built through the proxy, no faults yet."""
    remote, proxy = proxied
    catalog = tmp_path / "catalog"
    build_catalog(aia=remote.urls()["aia"], catalog=catalog, years=[2010], progress=False)
    proxy.clear()
    return remote, proxy, catalog


def expected_frames(catalog_dir):
    return Catalog(catalog_dir).query(FRAMES_SQL).fetch().compute()


@pytest.mark.parametrize("case", sorted(RECOVERABLE))
def test_fetch_survives_transient_chunk_faults(proxied_catalog, catalog_dir, case):
    _, proxy, catalog = proxied_catalog
    proxy.inject(*RECOVERABLE[case])
    started = time.perf_counter()
    pixels = Catalog(catalog).query(FRAMES_SQL).fetch().compute()
    assert time.perf_counter() - started < TIMEOUT_S * 2
    np.testing.assert_array_equal(pixels, expected_frames(catalog_dir))
    assert proxy.injected() == sum(f.times for f in RECOVERABLE[case])


@pytest.mark.parametrize("case", sorted(ZATTRS_FAULTS))
def test_build_survives_transient_zattrs_faults(proxied, tmp_path, case):
    remote, proxy = proxied
    proxy.inject(*ZATTRS_FAULTS[case])
    catalog = tmp_path / "catalog"
    report = build_catalog(aia=remote.urls()["aia"], catalog=catalog, years=[2010], progress=False)
    assert proxy.injected() == sum(f.times for f in ZATTRS_FAULTS[case])
    manifest = read_manifest(catalog)
    for key, partition in manifest["partitions"].items():  # nothing lost: rows == frames
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{catalog}/{key}/data.parquet')").fetchall()[0][0]
        assert rows == partition["rows"] == partition["shape"][0]
    assert len(report.written) == 9


def test_a_chunk_that_never_answers_fails_in_time_naming_frames_and_object(proxied_catalog, monkeypatch):
    remote, proxy, catalog = proxied_catalog
    monkeypatch.setenv("SDOML_TIMEOUT", "3")
    proxy.inject(Fault("slow", CHUNK_1, times=None, delay=30.0))
    started = time.perf_counter()
    with pytest.raises(FetchError) as caught:
        Catalog(catalog).query(FRAMES_SQL).fetch().compute()
    assert time.perf_counter() - started < 3 + 2
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "aia 2010/171A frames 120..120" in message  # the frames it could not read
    assert f"store {remote.urls()['aia']}: cannot read 2010/171A/8.0.0" in message  # and the object
    assert "timed out" in message


def test_a_chunk_that_keeps_failing_names_the_object(proxied_catalog, monkeypatch):
    _, proxy, catalog = proxied_catalog
    monkeypatch.setenv("SDOML_RETRIES", "2")
    monkeypatch.setenv("SDOML_TIMEOUT", "4")
    proxy.inject(Fault("error", CHUNK_0, times=None))
    started = time.perf_counter()
    with pytest.raises(FetchError, match=r"aia 2010/171A frames 0\.\.5: StoreError: store .*: "
                                         r"cannot read 2010/171A/0\.0\.0 after"):
        Catalog(catalog).query(FRAMES_SQL).fetch().compute()
    assert time.perf_counter() - started < TIMEOUT_S + 2


def test_a_build_that_hits_a_lasting_fault_leaves_the_catalog_intact(proxied_catalog, monkeypatch):
    remote, proxy, catalog = proxied_catalog
    before = snapshot(catalog)
    monkeypatch.setenv("SDOML_TIMEOUT", "3")
    proxy.inject(Fault("error", ZATTRS, times=None))
    started = time.perf_counter()
    with pytest.raises(StoreError, match=r"cannot read 2010/193A/\.zattrs after \d+ attempt"):
        rebuild_catalog(catalog, full=True, progress=False)
    # bounded by the 3 s timeout, not the default 120 s; the slack is for a loaded machine
    assert time.perf_counter() - started < 3 + 9
    assert snapshot(catalog) == before
    proxy.clear()
    assert len(rebuild_catalog(catalog, full=True, progress=False).written) == 9


def test_a_cached_fetch_reads_nothing_remote(proxied_catalog, tmp_path, monkeypatch, catalog_dir):
    """Chunks read whole are cached; partial reads (a few frames of a chunk) never enter the cache
    but are served from it when their chunk is there."""
    _, proxy, catalog = proxied_catalog
    monkeypatch.setenv("SDOML_CACHE", str(tmp_path / "cache"))
    Catalog(catalog).query(FRAMES_SQL).fetch().compute()  # partial reads only: nothing cached
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]
    proxy.clear()
    first = Catalog(catalog).query(WHOLE_SQL).fetch().compute()
    chunk_reads = proxy.count(r"/2010/171A/\d+\.\d+\.\d+")
    assert chunk_reads >= 2
    proxy.clear()
    proxy.inject(Fault("error", r"/2010/171A/\d", times=None))  # the store is down for chunks
    second = Catalog(catalog).query(WHOLE_SQL).fetch().compute()
    partial = Catalog(catalog).query(FRAMES_SQL.replace("119, 120", "29")).fetch().compute()  # from cached chunks
    assert proxy.count(r"/2010/171A/\d+\.\d+\.\d+") == 0
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(second, Catalog(catalog_dir).query(WHOLE_SQL).fetch().compute())
    np.testing.assert_array_equal(partial, second[[0, 5, 29]])
    shutil.rmtree(tmp_path / "cache")
    proxy.clear()
    Catalog(catalog).query(WHOLE_SQL).fetch().compute()
    assert proxy.count(r"/2010/171A/\d+\.\d+\.\d+") == chunk_reads  # emptied cache: remote again
