"""Benchmark: the web explorer under load — 16 concurrent clients for 30 s.

Serves the ``bench_query`` catalog (headers-only sample stores, built the real way and cached
in ``--dir``; see ``bench_query.py``; ``--aia-frames``/``--hmi-frames`` choose its size) with
``sdoml-sql serve`` in its own process (uvicorn, default settings), warms it up as a server that
has run a while (one thumbnail per channel and year: each channel's colour style comes from one
frame's map; then 4 clients for 5 s), then runs ``--clients`` threads for ``--seconds`` seconds,
each with its own keep-alive HTTP connection (``http.client``: ~1 ms of this process's CPU a
request, printed), each request drawn at random:

* ``query`` (40 %): a page (100 rows) of one of four queries with a random week or day —
  short exposures of one channel in a week (``EXPTIME < 2 AND T_OBS BETWEEN``), a day of
  HMI Bz on a 12-minute grid (``nearest``), frames per channel in a week, one day of the
  ``frames`` view;
* ``thumbnail`` (40 %): the 128×128 PNG of a random frame of a random channel and year;
* ``frame page`` (20 %): a random frame's page and its data (``/frame/…`` then ``/api/frames/…``:
  previous, next and the other channels nearest in time).

A client sends its next request as soon as it has its answer (``--think-ms 0``) or after a pause.
It prints requests/s, p50/p95/p99 latency per kind, the errors (any status but 200, or no
answer) and the repeats (requests for a path asked before in the run: the most the server's kept
answers can serve).  Targets: 0 errors, thumbnail p50 ≤ 50 ms, query p50 ≤ 100 ms.

The stores of this catalog hold headers only: their image chunks were never written and read
as zeros (the store answers "no such object"), so a thumbnail here costs the request, the frame
read, the colours and the PNG, not a chunk decode (1-2 ms with partial Blosc reads).  Frames are
random over ~400,000, so kept pictures rarely help.

``--faults`` adds a second run with the stores served over HTTP (Python's ``http.server`` in its
own process) through the fault proxy of ``tests/emulators.py``, the catalog's sources pointed
there (a copy of the catalog whose ``manifest.json`` names the ``http://`` stores; its Parquet
files hard-linked): 10 % of chunk reads fail (HTTP 503) and 10 % answer after 2 s.  The server must keep answering
queries and pages, and nothing may hang; frames whose reads fail after the retries are errors
of that request only.  Run:

    .venv/bin/python benchmarks/bench_serve.py [--dir bench-output] [--clients 16] [--seconds 30] \
        [--think-ms 0] [--faults]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_query import STORE_NAMES, catalog_arguments, prepare  # noqa: E402 - after the sys.path lines above

KINDS = {"query": 0.4, "thumbnail": 0.4, "frame page": 0.2}
#: A chunk object of a frame array in a store (``…/2014/171A/12.0.0``).
CHUNK_KEY = r"/\d+/\w+/\d+\.0\.0$"
TARGETS_MS = {"thumbnail": 50.0, "query": 100.0}


def start_server(catalog: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``sdoml-sql serve --port 0`` in its own process; return it and its URL."""
    process = subprocess.Popen([sys.executable, "-m", "sdoml_sql.cli", "serve", "--catalog", str(catalog),
                                "--port", "0"], stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    line = process.stderr.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the server did not start: {line}{process.stderr.read()}")
    return process, match.group(1).rstrip("/")


def workload(catalog_dir: Path):
    """Random request makers: kind → function(rng) → list of paths to GET in turn."""
    from sdoml_sql import Catalog

    catalog = Catalog(catalog_dir)
    partitions = [(e["instrument"], e["year"], e["channel"], e["rows"])
                  for e in catalog.manifest["partitions"].values() if e.get("instrument") in ("aia", "hmi")]
    years = sorted({p[1] for p in partitions})
    hmi_year = max(p[1] for p in partitions if p[0] == "hmi")

    def day(rng, year):
        return np.datetime64(f"{year}-01-01") + np.timedelta64(int(rng.integers(0, 358)), "D")

    def query(rng):
        year = int(rng.choice(years))
        start = day(rng, year)
        week = f"'{start}' AND '{start + np.timedelta64(7, 'D')}'"
        hmi_day = day(rng, hmi_year)
        choices = [
            f"SELECT year, channel, idx, T_OBS, EXPTIME FROM aia WHERE channel = '171A' AND EXPTIME < 2 "
            f"AND T_OBS BETWEEN {week} ORDER BY T_OBS",
            f"SELECT * FROM nearest('hmi', 'Bz', '{hmi_day}', '{hmi_day + np.timedelta64(1, 'D')}', "
            "INTERVAL 12 minutes, INTERVAL 3 minutes)",
            f"SELECT channel, count(*) AS frames, min(T_OBS) AS first FROM aia WHERE T_OBS BETWEEN {week} "
            "GROUP BY channel ORDER BY channel",
            f"SELECT instrument, year, channel, idx, T_OBS FROM frames WHERE T_OBS BETWEEN '{start}' AND "
            f"'{start + np.timedelta64(1, 'D')}' ORDER BY T_OBS",
        ]
        from urllib.parse import urlencode

        return [f"/api/query?{urlencode({'sql': choices[int(rng.integers(len(choices)))], 'limit': 100})}"]

    def frame(rng):
        instrument, year, channel, rows = partitions[int(rng.integers(len(partitions)))]
        return f"{instrument}/{year}/{channel}/{int(rng.integers(rows))}"

    def frame_page(rng):
        path = frame(rng)
        return [f"/frame/{path}", f"/api/frames/{path}"]

    return {"query": query, "thumbnail": lambda rng: [f"/api/frames/{frame(rng)}/thumbnail.png"],
            "frame page": frame_page}


def warm_up(url: str, catalog_dir: Path, makers) -> None:
    """What a server that has run a while has done: imports, Parquet footers, and one
    thumbnail per channel and year (each channel's colour style comes from one frame's map)."""
    import urllib.request

    manifest = json.loads((catalog_dir / "manifest.json").read_text())
    for entry in manifest["partitions"].values():
        if entry.get("instrument") in ("aia", "hmi"):
            path = f"/api/frames/{entry['instrument']}/{entry['year']}/{entry['channel']}/0/thumbnail.png"
            with urllib.request.urlopen(url + path, timeout=120) as response:
                response.read()
    load(url, makers, 4, 5.0, seed=1000)


def load(url: str, makers, clients: int, seconds: float, seed: int = 0, think_s: float = 0.0) -> dict:
    """Run ``clients`` threads for ``seconds`` (each waits ``think_s`` between requests);
    return latencies and errors per kind, and this process's CPU seconds over the run."""
    import http.client
    from urllib.parse import urlsplit

    host = urlsplit(url)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()  # paths asked before: the most the server's kept answers can serve
    repeats: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    kinds, weights = list(KINDS), np.cumsum(list(KINDS.values()))

    def client(n: int) -> None:
        rng = np.random.default_rng(seed + n)
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
        while time.monotonic() < stop_at:
            kind = kinds[int(np.searchsorted(weights, rng.random() * weights[-1], side="right"))]
            started = time.perf_counter()
            problem = None
            paths = makers[kind](rng)
            repeat = any(path in seen for path in paths)
            seen.update(paths)
            for path in paths:
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    body = response.read()
                    if response.status != 200:
                        problem = f"{response.status} {body[:160].decode(errors='replace').strip()}"
                except (OSError, http.client.HTTPException) as error:
                    problem = f"no answer: {type(error).__name__}"
                    connection.close()
                    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
                if problem:
                    break
            elapsed = time.perf_counter() - started
            with lock:
                (errors[kind].append(problem) if problem else latencies[kind].append(elapsed))
                repeats[kind] += repeat
            if think_s:
                time.sleep(think_s)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started, cpu_before = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - started,
            "client_cpu": time.process_time() - cpu_before, "repeats": repeats}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(process, url: str, makers, clients: int, seconds: float, seed: int, think_s: float = 0.0) -> dict:
    """:func:`load`, plus the server process's CPU seconds over the run."""
    before = cpu_seconds(process.pid)
    result = load(url, makers, clients, seconds, seed, think_s)
    result["server_cpu"] = cpu_seconds(process.pid) - before
    return result


def report(title: str, result: dict) -> dict:
    done = sum(len(v) for v in result["latencies"].values())
    failed = sum(len(v) for v in result["errors"].values())
    print(f"\n{title}: {done + failed:,} requests in {result['seconds']:.1f} s = "
          f"{(done + failed) / result['seconds']:.1f} requests/s; errors: {failed}; load: {load_average()}")
    if "server_cpu" in result and done + failed:
        cpu, requests = result["server_cpu"], done + failed
        print(f"  server CPU: {cpu:.1f} s in all, {1000 * cpu / requests:.0f} ms a request "
              f"(load-independent: 2 free cores would serve ~{2 * requests / cpu:.0f} requests/s of this mix)")
    if "client_cpu" in result and done + failed:
        print(f"  load generator CPU (this process, same cores): {result['client_cpu']:.1f} s in all, "
              f"{1000 * result['client_cpu'] / (done + failed):.1f} ms a request")
    print(f"  {'kind':<11} {'answered':>8} {'errors':>6} {'repeats':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    summary = {}
    for kind in KINDS:
        values = np.array(result["latencies"].get(kind, [])) * 1000
        p50, p95, p99 = (np.percentile(values, [50, 95, 99]) if len(values) else (float("nan"),) * 3)
        summary[kind] = {"p50": p50, "p95": p95, "p99": p99, "answered": len(values),
                         "errors": len(result["errors"].get(kind, []))}
        repeats = result.get("repeats", {}).get(kind, 0)
        print(f"  {kind:<11} {len(values):>8} {summary[kind]['errors']:>6} {repeats:>7} {p50:>8.1f} {p95:>8.1f} "
              f"{p99:>8.1f}")
    for kind, problems in result["errors"].items():
        for problem, count in sorted(_counts(problems).items(), key=lambda item: -item[1])[:3]:
            print(f"  {kind} error x{count}: {problem}")
    return summary


def _counts(values):
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return counts


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def check_targets(summary: dict, errors: int) -> None:
    for kind, target in TARGETS_MS.items():
        p50 = summary[kind]["p50"]
        print(f"  target {kind} p50 ≤ {target:g} ms: {p50:.1f} ms, {'met' if p50 <= target else 'NOT met'}")
    print(f"  target 0 errors: {errors}, {'met' if errors == 0 else 'NOT met'}")


class Sometimes:
    """A fault proxy rule: requests matching ``match`` get ``kind`` with probability ``share``."""

    def __init__(self, kind: str, match: str, share: float, seed: int, status: int = 503, delay: float = 0.0):
        self.kind, self.match, self.share, self.status, self.delay = kind, match, share, status, delay
        self.rng, self.injected = random.Random(seed), 0

    def applies(self, path: str) -> bool:
        if not re.search(self.match, path.split("?", 1)[0]) or self.rng.random() >= self.share:
            return False
        self.injected += 1
        return True


def faulty_catalog(catalog_dir: Path, stores: Path, work: Path):
    """Serve the stores over HTTP (Python's ``http.server``, its own process) behind the fault
    proxy, and write a copy of the catalog whose sources are those ``http://`` stores (its
    Parquet files hard-linked); return (catalog copy, proxy, HTTP server process)."""
    from emulators import FaultProxy, free_port, wait_until

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(stores)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return True
        except OSError:
            return False

    wait_until(answers, "the stores' HTTP server")
    proxy = FaultProxy(f"http://127.0.0.1:{port}")
    copy = work / "catalog-http"
    shutil.rmtree(copy, ignore_errors=True)
    for path in catalog_dir.rglob("*"):
        if path.is_file() and path.name not in ("manifest.json", "init.sql"):
            target = copy / path.relative_to(catalog_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)  # a link inside the catalog: DuckDB's allowed directory holds it
    manifest = json.loads((catalog_dir / "manifest.json").read_text())
    for name, store_name in STORE_NAMES.items():
        if name in manifest.get("sources", {}):
            manifest["sources"][name] = {"url": f"{proxy.endpoint}/{store_name}", "storage_options": {}}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy, proxy, server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    catalog_arguments(parser)
    parser.add_argument("--clients", default=16, type=int)
    parser.add_argument("--seconds", default=30.0, type=float)
    parser.add_argument("--think-ms", default=0.0, type=float, help="each client's pause between requests")
    parser.add_argument("--faults", action="store_true", help="a second run through the fault proxy")
    args = parser.parse_args(argv)

    catalog_dir = prepare(args.dir, args.aia_frames, args.hmi_frames, tuple(args.years))
    makers = workload(catalog_dir)
    partitions = json.loads((catalog_dir / "manifest.json").read_text())["partitions"].values()
    frames = sum(e.get("rows", 0) for e in partitions if e.get("instrument") in ("aia", "hmi"))
    print(f"catalog {catalog_dir}: {frames:,} frames; {args.clients} clients for {args.seconds:g} s; "
          f"{os.cpu_count()} cores; load before: {load_average()}")
    process, url = start_server(catalog_dir)
    try:
        warm_up(url, catalog_dir, makers)
        result = measured(process, url, makers, args.clients, args.seconds, 0, args.think_ms / 1000)
        summary = report(f"local stores ({args.think_ms:g} ms between a client's requests)", result)
        check_targets(summary, sum(len(v) for v in result["errors"].values()))
    finally:
        process.terminate()
        process.wait(timeout=30)
    if not args.faults:
        return
    copy, proxy, store_server = faulty_catalog(catalog_dir, args.dir / "stores", args.dir)
    process, url = start_server(copy, {"SDOML_TIMEOUT": "20"})
    try:
        warm_up(url, copy, makers)
        proxy.clear()
        # the first matching rule wins: 10 % fail, and 11 % of the other 90 % (10 % of all) are slow
        proxy.inject(Sometimes("error", CHUNK_KEY, 0.10, seed=1),
                     Sometimes("slow", CHUNK_KEY, 0.11, seed=2, delay=2.0))
        result = measured(process, url, makers, args.clients, args.seconds, 3000, args.think_ms / 1000)
        chunk_reads = proxy.count(CHUNK_KEY)
        report(f"stores over HTTP through the fault proxy ({chunk_reads:,} chunk reads; "
               f"{sum(f.injected for f in proxy.faults)} faults injected: 10 % HTTP 503, 10 % answered after 2 s)",
               result)
        longest = max((max(v) for v in result["latencies"].values() if v), default=0)
        print(f"  the longest answered request took {longest:.1f} s")
    finally:
        process.terminate()
        process.wait(timeout=30)
        proxy.stop()
        store_server.terminate()
        store_server.wait(timeout=30)


if __name__ == "__main__":
    main()
