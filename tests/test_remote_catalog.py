"""Catalogs on object stores (moto S3 and fake-gcs-server on 127.0.0.1): built and rebuilt
into a bucket with the manifest as commit point, queried in place through DuckDB with an
fsspec filesystem, one build at a time, bad URLs as one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from emulators import S3_WRITER, FaultProxy
from sdoml_sql.catalog_builder import remote as remote_build
from sdoml_sql.catalog_builder.build import build_catalog, rebuild_catalog
from sdoml_sql.catalog_builder.location import open_location, read_manifest
from sdoml_sql.exceptions import AccessDeniedError, CatalogError, OfflineError
from sdoml_sql.files import PARTIAL_MARK
from sdoml_sql.query.catalog import Catalog

QUERIES = [
    "SELECT year, channel, count(*) AS n, min(T_OBS) AS first, max(EXPTIME) AS longest FROM aia "
    "GROUP BY ALL ORDER BY ALL",
    "SELECT channel, count(*) AS n FROM hmi GROUP BY ALL ORDER BY ALL",
    "SELECT count(*) AS n, max(\"Fe XX_2\") AS peak FROM eve",
    "SELECT year, channel, idx, T_OBS FROM aia WHERE T_OBS BETWEEN '2010-08-27 01:00' AND '2010-08-27 02:00' "
    "ORDER BY ALL",
    "SELECT * FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', INTERVAL 12 minutes, INTERVAL 3 minutes)",
]


@pytest.fixture()
def writable(remote, monkeypatch):
    """The emulator's endpoint and write credentials in the environment."""
    for name, value in remote.env().items():
        monkeypatch.setenv(name, value)
    if remote.kind == "s3":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_WRITER["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_WRITER["secret"])
    return remote


def catalog_url(remote, name: str) -> str:
    return remote.emulator.url(f"catalogs/{name}-{time.time_ns()}")


def answers(catalog) -> list:
    return [catalog.query(sql).to_arrow().to_pylist() for sql in QUERIES]


def test_remote_build_query_and_rebuild_equal_the_local_catalog(writable, catalog, sample_paths):
    url = catalog_url(writable, "built")
    report = build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]),
                           eve=str(sample_paths["eve"]), catalog=url, progress=False)
    assert report.written and report.catalog == url
    remote_catalog = Catalog(url)
    assert answers(remote_catalog) == answers(catalog)
    files = {p for p in open_location(url).listing() if p.endswith(".parquet")}
    named = {f"{k}/{e['file']}" for k, e in read_manifest(url)["partitions"].items() if "file" in e}
    assert named and named <= files
    again = rebuild_catalog(url, progress=False)
    assert again.written == [] and len(again.skipped) == len(report.written)
    full = rebuild_catalog(url, progress=False, full=True)
    assert sorted(full.written) == sorted(report.written)
    assert answers(Catalog(url)) == answers(catalog)
    assert answers(remote_catalog) == answers(catalog)  # opened before: its files are kept one generation


def test_a_build_killed_before_its_manifest_leaves_the_catalog_queryable(writable, catalog, sample_paths,
                                                                          monkeypatch):
    url = catalog_url(writable, "killed")
    build_catalog(hmi=str(sample_paths["hmi"]), catalog=url, progress=False)
    before = Catalog(url).query(QUERIES[1]).to_arrow().to_pylist()

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between the uploads and the commit

    monkeypatch.setattr(remote_build, "commit", die)
    with pytest.raises(KeyboardInterrupt):
        rebuild_catalog(url, progress=False, full=True)
    assert Catalog(url).query(QUERIES[1]).to_arrow().to_pylist() == before
    monkeypatch.undo()


def test_a_second_builder_is_refused_and_a_stale_lock_needs_break_lock(writable, sample_paths, monkeypatch):
    url = catalog_url(writable, "locked")
    location = open_location(url)
    with remote_build.remote_lock(location) as owner:
        with pytest.raises(CatalogError, match=f"being built by {owner}"):
            build_catalog(hmi=str(sample_paths["hmi"]), catalog=url, progress=False)
    monkeypatch.setattr(remote_build, "LOCK_TTL_S", 0.01)
    remote_build._write_lock(location, "a builder that died")
    time.sleep(0.05)
    with pytest.raises(CatalogError, match="stale build lock from a builder that died.*--break-lock"):
        build_catalog(hmi=str(sample_paths["hmi"]), catalog=url, progress=False)
    monkeypatch.setattr(remote_build, "LOCK_TTL_S", 300.0)
    report = build_catalog(hmi=str(sample_paths["hmi"]), catalog=url, progress=False, break_lock=True)
    assert report.written and location.read_bytes(remote_build.LOCK_OBJECT) is None


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_bad_or_unreachable_catalog_urls_fail_in_one_line_quickly(remote, no_store_env):
    # imported here, unused: the 2 s are for the network; importing them is timed elsewhere
    import gcsfs  # noqa: F401
    import s3fs  # noqa: F401
    no_store_env.setenv(*next(iter(remote.env().items())))
    for url, expected in [(remote.emulator.url("no/such/catalog"), CatalogError),
                          ("s3://bucket/catalog", CatalogError)]:
        if url.startswith("s3://bucket"):
            no_store_env.setenv("SDOML_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
        started = time.perf_counter()
        with pytest.raises(expected) as error:
            Catalog(url)
        assert time.perf_counter() - started < 2 and "\n" not in str(error.value), str(error.value)
    no_store_env.setenv("SDOML_ENDPOINT_URL", "http://no-such-host.invalid:9000")
    with pytest.raises(OfflineError):
        Catalog("s3://bucket/catalog")


def test_cli_builds_into_s3_and_the_shell_says_to_sync_first(s3_remote, sample_paths):
    url = s3_remote.emulator.url(f"catalogs/cli-{time.time_ns()}")
    env = {"SDOML_S3_ENDPOINT": s3_remote.endpoint, "AWS_ACCESS_KEY_ID": S3_WRITER["key"],
           "AWS_SECRET_ACCESS_KEY": S3_WRITER["secret"]}
    built = run_cli("build", "--hmi", str(sample_paths["hmi"]), "--catalog", url, "--quiet", env=env)
    assert built.returncode == 0, built.stderr
    counted = run_cli("query", "SELECT count(*) AS n FROM hmi", "--catalog", url, "--format", "csv", env=env)
    assert counted.returncode == 0, counted.stderr
    assert int(counted.stdout.split()[1]) > 0
    shell = run_cli("shell", "--catalog", url, env=env)
    assert shell.returncode == 1 and shell.stderr.count("\n") == 1 and "sdoml-sql sync" in shell.stderr


def test_access_denied_says_so(s3_remote, sample_paths, no_store_env):
    from emulators import start_s3

    private = start_s3({}, bucket="private-catalogs", public=False)
    try:
        writer = private.writer()
        writer.pipe_file("private-catalogs/c/manifest.json", b"{}")
        no_store_env.setenv("SDOML_S3_ENDPOINT", private.endpoint)
        with pytest.raises(AccessDeniedError, match="access refused to catalog s3://private-catalogs/c"):
            Catalog("s3://private-catalogs/c")
    finally:
        private.stop()


@pytest.fixture(scope="module")
def year_stores(tmp_path_factory):
    """Headers-only AIA stores of a realistic file size: 9 channels x 3 years x 4,000 frames."""
    from sdoml_sql.stores.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("years"), aia_frames=4000, years=(2013, 2014, 2015),
                        hmi_years=(2015,), hmi_frames=50, images=False, eve=False)


def test_a_windowed_query_reads_only_its_years_files_of_a_remote_catalog(s3_remote, year_stores, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_WRITER["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_WRITER["secret"])
    proxy = FaultProxy(s3_remote.endpoint)
    monkeypatch.setenv("SDOML_S3_ENDPOINT", proxy.endpoint)
    url = s3_remote.emulator.url(f"catalogs/share-{time.time_ns()}")
    try:
        build_catalog(aia=str(year_stores["aia"]), catalog=url, progress=False)
        size = sum(info["size"] for path, info in open_location(url).listing().items())
        manifest = read_manifest(url)["partitions"]
        first_file = "/".join([next(iter(manifest)), manifest[next(iter(manifest))]["file"]]).replace("=", "%3D")
        first_day = Catalog(url).query("SELECT min(T_OBS) AS t FROM aia WHERE year = 2014").to_arrow()
        first = first_day.column("t")[0].as_py()
        # measured on a reader that has not read that year yet: DuckDB keeps the ranges it read of
        # remote files (its external file cache) for later queries of the same database, which
        # then GET nothing at all; each Catalog is a database of its own
        catalog = Catalog(url)
        proxy.clear()
        result = catalog.query(f"SELECT year, channel, idx, T_OBS, EXPTIME FROM aia WHERE EXPTIME < 3 "
                               f"AND T_OBS BETWEEN '{first:%Y-%m-%d}' AND '{first:%Y-%m-%d} 23:59'")
        assert len(result) > 0
        share = proxy.bytes_sent / size
        print(f"headline query: {proxy.bytes_sent:,} bytes of a {size:,}-byte catalog ({share:.1%})")
        read = {path.split("?")[0] for method, path in proxy.requests if method == "GET"}
        assert read and all("year%3D2014" in path or path.endswith(first_file) for path in read), read
    finally:
        proxy.stop()


def test_sync_is_incremental_atomic_and_keeps_the_retired_files(writable, catalog, sample_paths, tmp_path,
                                                                 monkeypatch):
    from sdoml_sql.catalog_builder.sync import sync_catalog

    url = catalog_url(writable, "synced")
    build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]), eve=str(sample_paths["eve"]),
                  catalog=url, progress=False)
    mirror = tmp_path / "mirror"
    first = sync_catalog(url, mirror, progress=False)
    assert first.downloaded and not first.unchanged
    assert answers(Catalog(mirror)) == answers(catalog)
    again = sync_catalog(url, mirror, progress=False)
    assert again.downloaded == [] and again.bytes == 0 and len(again.unchanged) == len(first.downloaded)
    older = Catalog(mirror)  # a reader of the mirror opened on the first manifest
    first_files = {f"{k}/{e['file']}" for k, e in read_manifest(url)["partitions"].items() if "file" in e}
    rebuild_catalog(url, progress=False, full=True)
    third = sync_catalog(url, mirror, progress=False)
    frames = [p for p in third.downloaded if p.startswith(("aia/", "hmi/"))]
    assert frames and third.removed == []  # the retired files stay, as in the bucket, for readers like `older`
    assert all((mirror / path).is_file() for path in first_files)
    assert answers(Catalog(mirror)) == answers(catalog) == answers(older)
    assert [p.name for p in mirror.rglob("*") if PARTIAL_MARK in p.name] == []
    monkeypatch.setattr(remote_build, "RETIRED_GRACE_S", 0.0)  # the next build retires them for good
    rebuild_catalog(url, progress=False, full=True)
    fourth = sync_catalog(url, mirror, progress=False)
    assert sorted(fourth.removed) == sorted(first_files | set(frames))
    assert answers(Catalog(mirror)) == answers(catalog)


def test_distributed_build_into_s3_without_a_shared_disk(s3_remote, catalog, sample_paths, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    monkeypatch.setenv("SDOML_S3_ENDPOINT", s3_remote.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_WRITER["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_WRITER["secret"])
    worker_tmp = tmp_path / "worker-tmp"  # only the workers' TMPDIR: the driver never reads it
    worker_tmp.mkdir()
    url = s3_remote.emulator.url(f"catalogs/distributed-{time.time_ns()}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"TMPDIR": str(worker_tmp)}) as cluster, Client(cluster) as client:
        report = build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]),
                               eve=str(sample_paths["eve"]), catalog=url, progress=False, client=client)
        used = client.run(lambda: __import__("tempfile").gettempdir())
    assert set(used.values()) == {str(worker_tmp)}
    assert report.written and not list(worker_tmp.glob("sdoml-sql-build-*"))  # private staging, cleaned up
    assert answers(Catalog(url)) == answers(catalog)


def test_fetch_and_maps_from_a_remote_catalog_equal_the_local_ones(writable, catalog, sample_paths):
    url = catalog_url(writable, "fetched")
    build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]), eve=str(sample_paths["eve"]),
                  catalog=url, progress=False)
    sql = "SELECT year, channel, idx FROM aia WHERE channel = '171A' AND year = 2010 AND idx IN (0, 121) ORDER BY idx"
    remote_selection, local_selection = Catalog(url).query(sql), catalog.query(sql)
    assert (remote_selection.fetch().compute() == local_selection.fetch().compute()).all()
    remote_maps, local_maps = remote_selection.maps(), local_selection.maps()
    assert [dict(m.meta) for m in remote_maps] == [dict(m.meta) for m in local_maps]


def test_readers_during_remote_rebuilds_see_whole_catalogs(writable, sample_paths):
    import threading

    url = catalog_url(writable, "concurrent")
    build_catalog(aia=str(sample_paths["aia"]), catalog=url, progress=False)
    sql = "SELECT year, channel, count(*) AS n FROM aia GROUP BY ALL ORDER BY ALL"
    expected = Catalog(url).query(sql).to_arrow().to_pylist()
    errors: list[BaseException] = []

    def rebuild_twice():
        try:
            for _ in range(2):
                rebuild_catalog(url, progress=False, full=True)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=rebuild_twice)
    writer.start()
    reads = 0
    while writer.is_alive() or reads < 2:
        assert Catalog(url).query(sql).to_arrow().to_pylist() == expected
        reads += 1
    writer.join()
    assert not errors and reads >= 2
    names = {entry["file"] for entry in read_manifest(url)["partitions"].values()}
    assert len(names) == 1  # one build's files, all of them renamed together


def test_fido_searches_and_fetches_from_a_remote_catalog(writable, catalog_dir, sample_paths, tmp_path):
    import astropy.units as u
    import sunpy.map
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    import sdoml_sql.fido  # noqa: F401 - registers the client

    url = catalog_url(writable, "fido")
    build_catalog(aia=str(sample_paths["aia"]), catalog=url, progress=False)
    day = (a.Time("2010-08-27", "2010-08-28"), a.Instrument("AIA"), a.Wavelength(171 * u.AA))
    remote_rows, local_rows = (Fido.search(*day, a.sdoml.Catalog(c))[0] for c in (url, catalog_dir))
    key = ["year", "Channel", "idx"]
    assert len(remote_rows) > 0
    assert [tuple(r[k] for k in key) for r in remote_rows] == [tuple(r[k] for k in key) for r in local_rows]
    files = Fido.fetch(remote_rows[:2], path=str(tmp_path / "{file}"), progress=False)
    assert len(files) == 2 and not files.errors
    local = Fido.fetch(local_rows[:2], path=str(tmp_path / "local" / "{file}"), progress=False)
    for mine, theirs in zip(sorted(files), sorted(local)):
        assert (sunpy.map.Map(mine).data == sunpy.map.Map(theirs).data).all()
