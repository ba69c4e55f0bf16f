"""Team catalogs on object stores: two builders at once, a builder stalled past its lock's
expiry, a store that ignores preconditions (moto S3 and fake-gcs-server on 127.0.0.1).

The lock object is created with a create-only write and the manifest committed with a
compare-and-swap (``catalog_builder/conditional.py``): no trial may lose a build; a loser
fails with one line or rebases its commit, and a reader during the race sees a whole catalog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from emulators import S3_WRITER, FaultProxy
from sdoml_sql.catalog_builder import remote as remote_build
from sdoml_sql.catalog_builder.build import build_catalog
from sdoml_sql.catalog_builder.location import open_location, read_manifest
from sdoml_sql.exceptions import CatalogError
from sdoml_sql.query.catalog import Catalog

TRIALS = 20
START_GAP_S = 0.005
#: What each builder adds: different source frames (one channel of each instrument, to keep trials short).
BUILDS = {"aia": {"channels": ["171A"]}, "hmi": {"channels": ["Bz"]}}
ROWS_SQL = {"aia": "SELECT * FROM aia ORDER BY year, channel, idx",
            "hmi": "SELECT * FROM hmi ORDER BY year, channel, idx"}
COUNTS_SQL = "SELECT instrument, count(*) AS n FROM frames GROUP BY ALL ORDER BY ALL"


def credentials(remote) -> dict[str, str]:
    env = dict(remote.env())
    if remote.kind == "s3":
        env.update({"AWS_ACCESS_KEY_ID": S3_WRITER["key"], "AWS_SECRET_ACCESS_KEY": S3_WRITER["secret"]})
    return env


@pytest.fixture()
def writable(remote, monkeypatch):
    for name, value in credentials(remote).items():
        monkeypatch.setenv(name, value)
    return remote


@pytest.fixture(scope="module")
def expected(sample_paths, tmp_path_factory):
    """Per instrument: the rows a local build of that builder's frames gives, and the counts."""
    rows, counts = {}, {}
    for instrument, options in BUILDS.items():
        directory = tmp_path_factory.mktemp("expected") / instrument
        build_catalog(**{instrument: str(sample_paths[instrument])}, catalog=directory, progress=False, **options)
        local = Catalog(directory)
        rows[instrument] = local.query(ROWS_SQL[instrument]).to_arrow().to_pylist()
        counts[instrument] = local.query(COUNTS_SQL).to_arrow().to_pylist()
    return rows, counts


def catalog_url(remote, name: str) -> str:
    return remote.emulator.url(f"catalogs/{name}-{time.time_ns()}")


def assert_catalog_is(url: str, instruments: set[str], expected) -> None:
    """The catalog at ``url`` holds exactly the builds of ``instruments``, row for row."""
    rows, _ = expected
    manifest = read_manifest(url)
    assert {entry["instrument"] for entry in manifest["partitions"].values()} == instruments
    opened = Catalog(url)
    for instrument in instruments:
        assert opened.query(ROWS_SQL[instrument]).to_arrow().to_pylist() == rows[instrument]
    named = {f"{key}/{entry['file']}" for key, entry in manifest["partitions"].items()}
    frame_files = {p for p in open_location(url).listing() if p.endswith(".parquet") and p.startswith(("aia/", "hmi/"))}
    assert frame_files == named | set(manifest.get("retired_files") or {})  # no loser's file left behind


def whole_counts(expected) -> list:
    """Every state a reader may see: no catalog yet, one build, or both."""
    _, counts = expected
    return [counts["aia"], counts["hmi"], sorted(counts["aia"] + counts["hmi"], key=lambda r: r["instrument"])]


class Reader(threading.Thread):
    """Opens the catalog and counts its frames until stopped; records anything not whole."""

    def __init__(self, url: str, allowed: list):
        super().__init__(daemon=True)
        self.url, self.allowed, self.stop, self.seen, self.bad = url, allowed, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            try:
                counts = Catalog(self.url).query(COUNTS_SQL).to_arrow().to_pylist()
            except CatalogError as error:
                # a read that found no catalog yet, or timed out on a loaded machine, saw no half catalog
                if "not a catalog" not in str(error) and "timed out" not in str(error):
                    self.bad.append(str(error))
                continue
            except Exception as error:  # a half catalog shows as a failing read
                self.bad.append(f"{type(error).__name__}: {error}")
                continue
            self.seen += 1
            if counts not in self.allowed:
                self.bad.append(counts)


def race(url: str, sample_paths) -> tuple[dict, float]:
    """Two builders released by one barrier; returns their outcomes and the gap between starts."""
    barrier = threading.Barrier(2)
    starts, outcomes = {}, {}

    def builder(instrument):
        barrier.wait()
        starts[instrument] = time.perf_counter()
        try:
            outcomes[instrument] = build_catalog(**{instrument: str(sample_paths[instrument])}, catalog=url,
                                                 progress=False, **BUILDS[instrument])
        except CatalogError as error:
            outcomes[instrument] = error

    threads = [threading.Thread(target=builder, args=(i,)) for i in BUILDS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return outcomes, abs(starts["aia"] - starts["hmi"])


def test_two_builders_started_together_never_lose_a_build(writable, sample_paths, expected):
    gaps, wins, trials = [], 0, 0
    while trials < TRIALS:
        url = catalog_url(writable, "race")
        reader = Reader(url, whole_counts(expected))
        reader.start()
        outcomes, gap = race(url, sample_paths)
        reader.stop.set()
        reader.join(timeout=60)
        assert not reader.bad, reader.bad[:3]
        if gap >= START_GAP_S:
            assert len(gaps) < TRIALS, "the barrier released the builders more than 5 ms apart too often"
            gaps.append(gap)
            continue  # not started together: not a trial
        trials += 1
        built = {i for i, outcome in outcomes.items() if not isinstance(outcome, Exception)}
        for outcome in outcomes.values():
            if isinstance(outcome, Exception):
                assert "\n" not in str(outcome) and "is being built by" in str(outcome), str(outcome)
        assert built, outcomes
        wins += len(built)
        assert_catalog_is(url, built, expected)
        assert open_location(url).read_bytes(remote_build.LOCK_OBJECT) is None
    print(f"{TRIALS} trials: {wins} builds committed, {2 * TRIALS - wins} refused in one line; "
          f"{len(gaps)} releases more than 5 ms apart re-run")


CHILD = """
import os, signal, sys
from sdoml_sql.catalog_builder import remote
real = remote.commit
def stalled(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGSTOP)  # uploads done, holding the lock: stalled here
    return real(*args, **kwargs)
remote.commit = stalled
from sdoml_sql.cli import main
main(sys.argv[1:])
"""


def wait_stopped(process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the builder never reached its commit")


def expire_lock(url: str) -> None:
    """Make the stalled builder's lock look expired, as after LOCK_TTL_S without a refresh."""
    location = open_location(url)
    held = orjson.loads(location.read_bytes(remote_build.LOCK_OBJECT))
    location.write_bytes(remote_build.LOCK_OBJECT, orjson.dumps({**held, "expires": time.time() - 1}))


@pytest.mark.parametrize("second", ["hmi", "aia"])
def test_a_builder_stalled_past_its_lock_rebases_or_fails_in_one_line(writable, sample_paths, expected, second):
    """A builds AIA and is stopped (SIGSTOP) holding the lock; its lock expires; B breaks it and
    commits; A resumes.  B adding HMI: A rebases and commits too.  B rebuilding the same AIA
    partitions: A fails with one line, and nothing of it is visible."""
    url = catalog_url(writable, f"stalled-{second}")
    stalled = subprocess.Popen([sys.executable, "-c", CHILD, "build", "--aia", str(sample_paths["aia"]),
                                "--channels", "171A", "--catalog", url, "--quiet"],
                               env={**os.environ, **credentials(writable)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_stopped(stalled)
        with pytest.raises(CatalogError, match="is being built by .* pid"):
            build_catalog(hmi=str(sample_paths["hmi"]), catalog=url, progress=False, **BUILDS["hmi"])
        expire_lock(url)
        reader = Reader(url, whole_counts(expected))
        reader.start()
        build_catalog(**{second: str(sample_paths[second])}, catalog=url, progress=False, break_lock=True,
                      full=True, **BUILDS[second])
        os.kill(stalled.pid, signal.SIGCONT)
        out, err = stalled.communicate(timeout=300)
        reader.stop.set()
        reader.join(timeout=60)
    finally:
        if stalled.poll() is None:
            os.kill(stalled.pid, signal.SIGCONT)
            stalled.kill()
    assert not reader.bad and reader.seen, reader.bad[:3]
    if second == "hmi":
        assert stalled.returncode == 0, err
        assert_catalog_is(url, {"aia", "hmi"}, expected)
    else:
        assert stalled.returncode == 1 and err.count("\n") == 1, err
        assert err.startswith("error: catalog") and "another build committed aia/year=2010/channel=171A" in err, err
        assert_catalog_is(url, {"aia"}, expected)


def test_a_store_that_ignores_preconditions_is_named_in_one_line(writable, sample_paths, expected, monkeypatch):
    proxy = FaultProxy(writable.endpoint)
    proxy.strip_preconditions = True  # drops If-None-Match / If-Match and ifGenerationMatch on the way
    try:
        for name, value in writable.env(proxy.endpoint).items():
            monkeypatch.setenv(name, value)
        url = catalog_url(writable, "unconditional")
        report = build_catalog(hmi=str(sample_paths["hmi"]), catalog=url, progress=False, **BUILDS["hmi"])
        assert [w for w in report.warnings if "ignores conditional writes" in w and "\n" not in w]
        assert proxy.stripped > 0
        assert_catalog_is(url, {"hmi"}, expected)
    finally:
        proxy.stop()


COPY_QUERIES = [
    "SELECT * FROM frame_times ORDER BY ALL",
    "SELECT * FROM nearest('hmi', 'Bz', '2010-08-27', '2010-08-28', INTERVAL 12 minutes, INTERVAL 3 minutes)",
    "SELECT * FROM frame_quality ORDER BY instrument, year, channel, idx",
]


def test_remote_catalogs_get_their_copies_at_the_commit_and_read_them_in_place(writable, sample_paths, catalog,
                                                                              monkeypatch):
    import sdoml_sql
    from sdoml_sql.query import copies

    monkeypatch.setattr(copies, "MIN_FRAMES", 0)  # as if the catalog were big
    url = catalog_url(writable, "copies")
    sdoml_sql.build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]), catalog=url, progress=False)
    manifest = read_manifest(url)
    files = open_location(url).listing()
    assert set(manifest["copies"]) == {"frame_times", "frame_quality"}
    assert all(entry["file"] in files for entry in manifest["copies"].values())
    written = copies.write
    monkeypatch.setattr(copies, "write", lambda *a, **k: pytest.fail("a copy written when the catalog was opened"))
    opened = Catalog(url)
    assert opened._copies == {view: entry["file"] for view, entry in manifest["copies"].items()}
    expected = [catalog.query(sql).to_arrow().to_pylist() for sql in COPY_QUERIES]
    assert [opened.query(sql).to_arrow().to_pylist() for sql in COPY_QUERIES] == expected
    monkeypatch.setattr(copies, "write", written)
    sdoml_sql.rebuild_catalog(url, progress=False, full=True)
    again = read_manifest(url)
    assert {e["file"] for e in again["copies"].values()}.isdisjoint(e["file"] for e in manifest["copies"].values())
    assert {e["file"] for e in manifest["copies"].values()} <= set(again["retired_files"])
    assert [opened.query(sql).to_arrow().to_pylist() for sql in COPY_QUERIES] == expected  # still on its files
    assert [Catalog(url).query(sql).to_arrow().to_pylist() for sql in COPY_QUERIES] == expected
