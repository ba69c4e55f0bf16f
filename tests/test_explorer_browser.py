"""The explorer in a real browser: Debian's headless Chromium driven by Selenium through the
system chromedriver (``make test`` installs both when missing).  Screenshots go to a temporary
directory, or to ``$SDOML_TEST_SCREENSHOTS`` when set: ``make screenshots`` sets it to
``docs/images`` to renew the README's ``explorer-*.png``, so ``make test`` leaves the tree clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from sdoml_sql.web import Settings
from web_helpers import running_server

ROOT = Path(__file__).resolve().parents[1]
#: Where the screenshots go when set (``make screenshots``: docs/images); else a temporary directory.
SCREENSHOTS_ENV = "SDOML_TEST_SCREENSHOTS"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 120

SQL = ("SELECT year, channel, idx, T_OBS, CRLN_OBS FROM hmi\n"
       "WHERE channel = 'Bz' AND T_OBS BETWEEN '2010-08-27' AND '2010-08-27 03:00'\nORDER BY T_OBS")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (make test does it)")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--disable-gpu"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    directory = Path(chosen) if Path(chosen).is_absolute() else ROOT / chosen
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def server(catalog):
    with running_server(catalog, Settings()) as url:
        yield url


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(lambda d: condition(d), message=what)


def all_pictures_decoded(driver) -> bool:
    return driver.execute_script(
        "const images = [...document.querySelectorAll('img')];"
        "return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);")


def rows_shown(driver) -> int:
    return len(driver.find_elements("css selector", "#results tbody tr"))


def run_typed_query(driver, server: str, sql: str) -> None:
    driver.get(f"{server}/sql")
    editor = driver.find_element("id", "sql")
    wait_for(driver, lambda d: editor.get_attribute("value"), "the editor pre-filled with an example")
    editor.clear()
    editor.send_keys(sql)
    driver.find_element("id", "run").click()


def test_a_typed_query_shows_its_rows_and_every_thumbnail(browser, server, catalog, screenshots):
    expected = catalog.query(SQL)
    run_typed_query(browser, server, SQL)
    wait_for(browser, lambda d: d.find_element("id", "status").get_attribute("data-rows") == str(len(expected)),
             "the row count")
    assert rows_shown(browser) == len(expected) > 3
    first = [c.text for c in browser.find_elements("css selector", "#results tbody tr:first-child td")][1:]
    assert first[:3] == ["2010", "Bz", str(expected.to_pandas().idx[0])]
    wait_for(browser, all_pictures_decoded, "every thumbnail decoded")
    assert len(browser.find_elements("css selector", "img.thumb")) == len(expected)
    assert "T_OBS" in browser.page_source and not browser.find_element("id", "error").is_displayed()
    browser.save_screenshot(str(screenshots / "explorer-sql.png"))


def test_an_error_shows_the_line_the_cli_prints(browser, server, catalog_dir):
    sql = "SELECT EXPTIM FROM aia"
    run_typed_query(browser, server, sql)
    shown = wait_for(browser, lambda d: d.find_element("id", "error").text, "the error line")
    printed = subprocess.run([sys.executable, "-m", "sdoml_sql.cli", "query", sql, "--catalog", str(catalog_dir)],
                             capture_output=True, text=True, timeout=300)
    assert shown + "\n" == printed.stderr


def test_a_frame_page_steps_to_the_next_frame(browser, server, catalog, screenshots):
    frames = catalog.query("SELECT year, idx, T_OBS FROM hmi WHERE channel = 'Bz' "
                           "ORDER BY T_OBS, year, idx").to_pandas()
    browser.get(f"{server}/sql?q={quote(SQL)}")
    wait_for(browser, lambda d: rows_shown(d) > 3, "rows")
    browser.find_element("css selector", "#results tbody tr:nth-child(2) a").click()
    wait_for(browser, lambda d: "/frame/hmi/2010/Bz/" in d.current_url, "the frame page")
    wait_for(browser, all_pictures_decoded, "the frame and the other channels' thumbnails")
    assert browser.execute_script("return document.getElementById('image').naturalWidth") == 512
    assert len(browser.find_elements("css selector", "#header tr")) > 20
    browser.save_screenshot(str(screenshots / "explorer-frame.png"))
    idx = int(browser.current_url.rsplit("/", 1)[1])
    at = frames.index[(frames.year == 2010) & (frames.idx == idx)][0]
    browser.find_element("id", "next").click()
    following = frames.iloc[at + 1]
    next_url = f"/frame/hmi/{following.year}/Bz/{following.idx}"
    wait_for(browser, lambda d: d.current_url.endswith(next_url), "the next frame")
    wait_for(browser, lambda d: str(following.T_OBS)[:19] in d.find_element("id", "time").text, "its time")


def test_the_timeline_clicks_through_to_frames(browser, server, catalog, screenshots):
    browser.get(f"{server}/timeline?start=2010-08-27&stop=2010-08-29&bucket=2%20hours")
    wait_for(browser, lambda d: d.find_elements("css selector", "g.bucket"), "the timeline")
    browser.save_screenshot(str(screenshots / "explorer-timeline.png"))
    bucket = browser.find_element("css selector", "g.bucket[data-channel='171A']:not([data-frames='0'])")
    count = int(bucket.get_attribute("data-frames"))
    bucket.click()
    wait_for(browser, lambda d: "/sql?q=" in d.current_url, "the SQL page of the bucket")
    wait_for(browser, lambda d: d.find_element("id", "status").get_attribute("data-rows") == str(count), "its frames")
    assert rows_shown(browser) == count
    assert {c.text for c in browser.find_elements("css selector", "#results tbody td:nth-child(4)")} == {"171A"}


def test_the_csv_download_is_what_sdoml_sql_query_prints(browser, server, catalog_dir):
    browser.get(f"{server}/sql?q={quote(SQL)}")
    wait_for(browser, lambda d: rows_shown(d) > 3, "rows")
    browser.find_element("id", "download-csv").click()
    target = browser.downloads / "query.csv"
    deadline = time.monotonic() + WAIT_S
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    printed = subprocess.run([sys.executable, "-m", "sdoml_sql.cli", "query", SQL, "--catalog", str(catalog_dir),
                              "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert target.read_text() == printed.stdout and printed.stdout.count("\n") > 4
