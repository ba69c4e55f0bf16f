"""The web explorer's JSON API on a real uvicorn server over the sample catalog: answers equal
``Catalog.query`` row for row, downloads equal ``sdoml-sql query``, pictures and FITS equal
``maps()``, hostile input refused as the Python API refuses it, bounded work, failing stores."""

from __future__ import annotations

import concurrent.futures
import copy
import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from sdoml_sql import Catalog
from sdoml_sql.fetch.images import one_frame
from sdoml_sql.fetch.maps import maps
from sdoml_sql.web import Settings, get
from web_helpers import png_pixels, running_server, timed_get

QUERIES = {
    "frames": "SELECT year, channel, idx, T_OBS, EXPTIME, \"DATE-OBS\" FROM aia WHERE channel IN ('171A', '193A') "
              "ORDER BY T_OBS, channel",
    "aligned": "SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27', '2010-08-27 06:00', INTERVAL 1 hour, "
               "INTERVAL 6 minutes)",
    "eve": 'SELECT time, "Fe XX_2", "He II" FROM eve ORDER BY time LIMIT 45',
    "table": "SELECT channel, count(*) AS n, min(T_OBS) AS first FROM frames "
             "GROUP BY channel ORDER BY channel",
    "nearest": "SELECT * FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', "
               "INTERVAL 12 minutes, INTERVAL 3 minutes)",
}
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(catalog):
    with running_server(catalog, Settings(query_timeout=TIMEOUT_S)) as url:
        yield url


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True, timeout=300)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_pages_of_rows_equal_catalog_query(server, http, catalog, name):
    sql = QUERIES[name]
    expected = catalog.query(sql)
    rows, offset = [], 0
    while True:
        response = http.get(f"{server}/api/query", params={"sql": sql, "offset": offset, "limit": 7}, timeout=60)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["row_count"] == len(expected) and page["kind"] == expected.kind
        rows += [dict(zip(page["columns"], row)) for row in page["rows"]]
        offset += 7
        if offset >= page["row_count"]:
            break
    assert len(rows) == len(expected) > 0
    assert rows == json_lines(expected.to_text("json"))


def test_frame_rows_carry_their_locators(server, http, catalog):
    sql = QUERIES["aligned"]
    page = http.get(f"{server}/api/query", params={"sql": sql}, timeout=60).json()
    locators = catalog.query(sql).locators().dropna(subset=["idx"])
    flat = [(f["instrument"], f["year"], f["channel"], f["idx"]) for row in page["frames"] for f in row]
    assert flat == [(r.instrument, r.year, r.channel, r.idx) for r in locators.itertuples()]
    eve = http.get(f"{server}/api/query", params={"sql": QUERIES["eve"]}, timeout=60).json()
    assert eve["frames"] == [[]] * len(eve["rows"])


def test_empty_results_give_the_hints_of_the_python_api(server, http, catalog):
    sql = "SELECT * FROM aia WHERE channel = '171'"
    page = http.get(f"{server}/api/query", params={"sql": sql}, timeout=60).json()
    with pytest.warns(UserWarning):
        expected = catalog.query(sql)
    assert page["row_count"] == 0 and page["hints"] == expected.hints and "did you mean '171A'" in page["hints"][0]


@pytest.mark.parametrize("format", ["csv", "json"])
def test_downloads_equal_what_sdoml_sql_query_prints(server, http, catalog_dir, format):
    for sql in (QUERIES["frames"], QUERIES["aligned"], QUERIES["eve"]):
        response = http.get(f"{server}/api/query.{format}", params={"sql": sql}, timeout=60)
        printed = cli("query", sql, "--catalog", str(catalog_dir), "--format", format)
        assert printed.returncode == 0, printed.stderr
        assert response.status_code == 200 and response.text == printed.stdout
        assert "attachment" in response.headers["content-disposition"]


def imshow_rgba(solar_map) -> np.ndarray:
    """The map drawn by matplotlib's imshow at one screen pixel per map pixel (no axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = solar_map.data.shape
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    axes.imshow(solar_map.data, origin="lower", cmap=solar_map.plot_settings["cmap"],
                norm=copy.deepcopy(solar_map.plot_settings["norm"]), interpolation="nearest")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


@pytest.mark.parametrize("frame,thumbnail", [(("aia", 2010, "171A", 3), False), (("aia", 2010, "193A", 2), True),
                                             (("hmi", 2010, "Bz", 4), True), (("hmi", 2012, "Bx", 1), False)])
def test_pictures_are_maps_as_imshow_draws_them(server, http, catalog, frame, thumbnail):
    instrument, year, channel, idx = frame
    url = f"{server}/api/frames/{instrument}/{year}/{channel}/{idx}" + ("/thumbnail.png" if thumbnail else ".png")
    response = http.get(url, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    downsample, method = (4, "mean") if thumbnail else (1, "stride")
    solar_map = maps(one_frame(catalog, *frame), downsample=downsample, method=method)[0]
    shown, drawn = png_pixels(response.content), imshow_rgba(solar_map)
    assert shown.shape == drawn.shape == (512 // downsample, 512 // downsample, 4)
    differs = np.abs(shown.astype(int) - drawn.astype(int)).max(axis=2)
    assert differs.max() <= 1 and (differs > 0).mean() < 0.001
    assert len(np.unique(shown.reshape(-1, 4), axis=0)) > 20  # a picture, not a blank


def test_fits_is_the_file_fido_fetch_writes(server, http, catalog_dir, tmp_path):
    import astropy.units as u
    from astropy.io import fits
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    import sdoml_sql.fido  # noqa: F401 - registers the client

    results = Fido.search(a.Time("2010-08-27", "2010-08-29"), a.Instrument.aia, a.Wavelength(171 * u.AA),
                          a.sdoml.Catalog(str(catalog_dir)))
    row = results[0][2]
    files = Fido.fetch(results[0][2:3], path=str(tmp_path / "{file}"), progress=False)
    response = http.get(f"{server}/api/frames/aia/{row['year']}/171A/{row['idx']}.fits", timeout=120)
    assert response.status_code == 200
    assert response.headers["content-disposition"].endswith(f'filename="{tmp_path.joinpath(files[0]).name}"')
    with open(files[0], "rb") as written:
        assert response.content == written.read()
    solar_map = maps(one_frame(Catalog(catalog_dir), "aia", int(row["year"]), "171A", int(row["idx"])))[0]
    with fits.open(io.BytesIO(response.content)) as hdus:
        np.testing.assert_array_equal(hdus[0].data, solar_map.data)


def test_frame_data_neighbours_and_header(server, http, catalog):
    info = http.get(f"{server}/api/frames/aia/2010/171A/3", timeout=60).json()
    day = catalog.query("SELECT year, idx, T_OBS FROM aia WHERE channel = '171A' ORDER BY T_OBS, year, idx").to_pandas()
    at = day.index[(day.year == 2010) & (day.idx == 3)][0]
    assert (info["previous"]["year"], info["previous"]["idx"]) == (day.year[at - 1], day.idx[at - 1])
    assert (info["next"]["year"], info["next"]["idx"]) == (day.year[at + 1], day.idx[at + 1])
    others = {o["channel"]: o for o in info["others"]}
    assert "171A" not in others and {"193A", "Bz"} <= set(others)
    bz = catalog.query("SELECT idx, T_OBS FROM hmi WHERE channel = 'Bz' "
                       "ORDER BY abs(epoch(T_OBS) - epoch($t::TIMESTAMP)) LIMIT 1", {"t": info["T_OBS"]}).to_pandas()
    assert others["Bz"]["idx"] == bz.idx[0]
    header = http.get(f"{server}/api/frames/aia/2010/171A/3/header", timeout=60).json()["header"]
    expected = one_frame(catalog, "aia", 2010, "171A", 3)
    from sdoml_sql.fetch.maps import header as frame_header

    assert [key for key, _ in header] == list(frame_header(expected, 0))


def test_coverage_counts_frames_per_channel_and_bucket(server, http, catalog):
    data = http.get(f"{server}/api/coverage", params={"start": "2010-08-27", "stop": "2010-08-29",
                                                      "bucket": "1 hour"}, timeout=60).json()
    expected = catalog.query("SELECT channel, count(*) AS n FROM frames WHERE T_OBS >= '2010-08-27' "
                             "AND T_OBS < '2010-08-29' GROUP BY channel").to_pandas()
    counted = {c["channel"]: sum(b["frames"] for b in c["buckets"]) for c in data["channels"]}
    assert counted == dict(zip(expected.channel, expected.n))
    assert all(len(c["buckets"]) == 48 for c in data["channels"]) and data["bucket_seconds"] == 3600


@pytest.mark.parametrize("bucket,seconds", [("1 month", 30 * 86400), ("1 week", 7 * 86400), ("90 minutes", 5400)])
def test_coverage_takes_every_interval_duckdb_reads(server, http, bucket, seconds):
    response = http.get(f"{server}/api/coverage", params={"start": "2010-08-01", "stop": "2010-10-01",
                                                          "bucket": bucket}, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["bucket"] == bucket and data["bucket_seconds"] == seconds
    assert sum(b["frames"] for c in data["channels"] for b in c["buckets"]) > 0


def test_a_bucket_that_is_not_an_interval_is_one_line_400(server, http):
    response = http.get(f"{server}/api/coverage", params={"bucket": "banana"}, timeout=60)
    assert response.status_code == 400 and response.json() == {
        "error": "bucket 'banana' is not a positive interval: give one such as '12 minutes' or '1 day'"}


# --- hostile input -------------------------------------------------------------------------------

HOSTILE_SQL = ["SELECT * FROM read_csv('/etc/passwd')", "COPY (SELECT 1) TO '/tmp/x.csv'", "ATTACH 'x.db'",
               "SELECT 1; SELECT 2", "SELECT * FROM aai", "SET threads = 1", "SELECT getenv('HOME')"]


@pytest.mark.parametrize("sql", HOSTILE_SQL)
def test_hostile_sql_is_refused_with_the_line_the_cli_prints(server, http, catalog_dir, sql):
    response = http.get(f"{server}/api/query", params={"sql": sql}, timeout=60)
    printed = cli("query", sql, "--catalog", str(catalog_dir))
    assert printed.returncode == 1 and printed.stderr.startswith("error: ")
    assert response.status_code == 400
    assert f"error: {response.json()['error']}\n" == printed.stderr


@pytest.mark.parametrize("path", [
    "/api/frames/aia/2010/171/3.png",                       # unknown channel
    "/api/frames/aia/2010/171A/99999.png",                  # idx out of range
    "/api/frames/aia/2010/171A/-1",                         # negative idx
    "/api/frames/eve/2010/171A/0.png",                      # not a frame instrument
    "/api/frames/aia/1999/171A/0/header",                   # unknown year
    "/api/frames/aia/2010/..%2F..%2F..%2Fetc%2Fpasswd/0.png",  # traversal, encoded
    "/api/frames/aia/2010/171A/..%2F..%2Fmanifest.json",
    "/frame/aia/2010/../../../etc/passwd",
    "/static/..%2Fapp.py", "/static/app.py", "/static/%2Fetc%2Fpasswd",
    "/nothing-here",
])
def test_paths_outside_the_catalog_are_404_with_one_line(server, http, path):
    response = http.get(server + path, timeout=60)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert message and "\n" not in message and "root:" not in response.text


@pytest.mark.parametrize("params,word", [({"limit": "100000"}, "limit 100,000"), ({"offset": "1000000000"}, "offset"),
                                         ({"limit": "-5"}, "limit"), ({"offset": "1e9"}, "offset")])
def test_huge_or_malformed_limit_and_offset_are_refused(server, http, params, word):
    response = http.get(f"{server}/api/query", params={"sql": "SELECT * FROM aia", **params}, timeout=60)
    assert response.status_code == 400 and word in response.json()["error"]


def test_a_runaway_query_stops_at_the_limit_and_the_server_stays_up(server, http):
    started = time.perf_counter()
    response = http.get(f"{server}/api/query",
                        params={"sql": "SELECT count(*) FROM range(100000000000) a, range(10) b"}, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"query stopped at its time limit of {TIMEOUT_S:g} s")
    assert time.perf_counter() - started < TIMEOUT_S + 5
    assert http.get(f"{server}/api/query", params={"sql": "SELECT 42 AS answer"}, timeout=60).json()["rows"] == [[42]]


def test_a_full_queue_answers_503_at_once(catalog):
    settings = Settings(query_timeout=2.0, query_workers=1, waiting=1, wait_s=30)
    slow = {"sql": "SELECT count(*) FROM range(100000000000) a, range(10) b"}
    with running_server(catalog, settings) as url, requests.Session() as session:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = pool.submit(timed_get, session, f"{url}/api/query", **slow)
            time.sleep(0.5)
            second = pool.submit(timed_get, session, f"{url}/api/query", **slow)
            time.sleep(0.5)
            refused = [pool.submit(timed_get, session, f"{url}/api/query", sql="SELECT 1") for _ in range(2)]
            for future in refused:
                response, seconds = future.result()
                assert response.status_code == 503 and seconds < 1.0
                assert "busy" in response.json()["error"] and response.headers["retry-after"] == "1"
            assert first.result()[0].status_code == 400 and second.result()[0].status_code == 400
        assert session.get(f"{url}/api/query", params={"sql": "SELECT 1 AS one"}, timeout=30).status_code == 200


def test_frame_pages_answer_while_the_query_workers_are_busy(catalog):
    """Frame pages' data has its own workers: a full query pool answers 503 to queries only."""
    settings = Settings(query_timeout=3.0, query_workers=1, waiting=0)
    slow = {"sql": "SELECT count(*) FROM range(100000000000) a, range(10) b"}
    with running_server(catalog, settings) as url, requests.Session() as session:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = pool.submit(timed_get, session, f"{url}/api/query", **slow)
            time.sleep(0.5)
            refused, _ = timed_get(session, f"{url}/api/query", sql="SELECT 1")
            page, seconds = timed_get(session, f"{url}/api/frames/aia/2010/171A/3")
            assert refused.status_code == 503
            assert page.status_code == 200 and page.json()["next"] is not None and seconds < 2.5
            assert running.result()[0].status_code == 400  # stopped at its time limit


def test_a_failing_or_slow_store_errors_only_its_frames(s3_remote, catalog_dir, tmp_path, monkeypatch, no_store_env):
    from emulators import Fault, FaultProxy
    from sdoml_sql.catalog_builder.build import build_catalog

    proxy = FaultProxy(s3_remote.endpoint)
    for name, value in s3_remote.env(proxy.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SDOML_TIMEOUT", "20")
    monkeypatch.setenv("SDOML_RETRIES", "0")
    try:
        remote_catalog = tmp_path / "catalog"
        build_catalog(hmi=s3_remote.urls()["hmi"], catalog=remote_catalog, years=[2010], progress=False)
        settings = Settings(query_timeout=5, frame_timeout=60, frame_workers=2)
        with running_server(Catalog(remote_catalog), settings) as url, requests.Session() as session:
            good, _ = timed_get(session, f"{url}/api/frames/hmi/2010/Bz/0/thumbnail.png")
            assert good.status_code == 200, good.text
            proxy.inject(Fault("error", r"/2010/Bz/\d", times=None, status=500))
            failed, _ = timed_get(session, f"{url}/api/frames/hmi/2010/Bz/5.png")
            assert failed.status_code == 502
            assert "2010/Bz" in failed.json()["error"] and "\n" not in failed.json()["error"]
            settings.frame_timeout = 1.5  # read when each frame request starts
            proxy.inject(Fault("slow", r"/2010/By/\d", times=None, delay=8.0))
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                stalled = pool.submit(timed_get, session, f"{url}/api/frames/hmi/2010/By/3.png")
                time.sleep(0.2)
                answer, seconds = timed_get(session, f"{url}/api/query", sql="SELECT count(*) AS n FROM hmi")
                assert answer.status_code == 200 and seconds < 1.5
                response, waited = stalled.result()
            assert response.status_code == 504 and waited < 4 and "longer than 1.5 s" in response.json()["error"]
            assert timed_get(session, f"{url}/api/frames/hmi/2010/Bx/2/header")[0].status_code == 200
    finally:
        proxy.stop()


def test_get_answers_one_request_without_a_server(catalog_dir):
    status, kind, body = get(Catalog(catalog_dir), "/api/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20hmi")
    assert status == 200 and kind == "application/json" and json.loads(body)["rows"][0][0] > 0
    printed = cli("serve", "--catalog", str(catalog_dir), "--get", "/api/frames/aia/2010/171/3")
    assert printed.returncode == 1 and printed.stderr.startswith("error: no aia array 2010/171 in the catalog")
    assert len(printed.stderr.splitlines()) == 1


def test_serve_listens_on_loopback_by_default(catalog_dir):
    process = subprocess.Popen([sys.executable, "-m", "sdoml_sql.cli", "serve", "--catalog", str(catalog_dir),
                                "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        assert requests.get(url + "api/examples", timeout=30).json()[0]["sql"]
        assert "<textarea" in requests.get(url, timeout=30).text
    finally:
        process.terminate()
        process.wait(timeout=30)
