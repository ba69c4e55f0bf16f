"""Opening the sample stores through every kind of URL gives the same tree, attrs and pixels."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time

import fsspec
import numpy as np
import pytest

from sdoml_sql.exceptions import OfflineError, StoreError
from sdoml_sql.stores.source import open_store


@pytest.fixture(scope="module")
def http_root(sample_dir):
    """A real HTTP server on 127.0.0.1 serving the sample directory."""
    handler = functools.partial(_QuietHandler, directory=str(sample_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def memory_url(sample_paths):
    """The AIA sample copied into fsspec's memory filesystem."""
    memory = fsspec.filesystem("memory")
    root = "/sample-aia.zarr"
    for file in sample_paths["aia"].rglob("*"):
        if file.is_file():
            memory.pipe_file(f"{root}/{file.relative_to(sample_paths['aia']).as_posix()}", file.read_bytes())
    yield f"memory://{root}"
    memory.rm(root, recursive=True)


def walk(source, group=""):
    """``{array_path: .zarray}`` of every array under ``group``."""
    groups, arrays = source.children(group)
    found = {f"{group}/{a}".strip("/"): source.zarray(f"{group}/{a}".strip("/")) for a in arrays}
    for child in groups:
        found |= walk(source, f"{group}/{child}".strip("/"))
    return found


def urls_for(sample_paths, http_root, memory_url):
    aia = sample_paths["aia"]
    return {"path": str(aia), "file": f"file://{aia}", "memory": memory_url,
            "http": f"{http_root}/{aia.name}"}


def test_same_tree_attrs_and_pixels_through_every_url(sample_paths, http_root, memory_url):
    urls = urls_for(sample_paths, http_root, memory_url)
    reference = open_store(urls["path"])
    tree = walk(reference)
    assert "2010/171A" in tree and len(tree) == 18
    attrs = reference.read_json("2020/171A/.zattrs")
    pixels = reference.array("2010/171A")[121]
    assert pixels.shape == (512, 512) and pixels.std() > 0
    for kind, url in urls.items():
        source = open_store(url)
        assert walk(source) == tree, kind
        assert source.children("") == (["2010", "2020"], []), kind
        assert source.read_json("2020/171A/.zattrs") == attrs, kind
        np.testing.assert_array_equal(source.array("2010/171A")[121], pixels, err_msg=kind)
        assert source.consolidated is not None and "2010/171A/.zarray" in source.consolidated


def test_array_reads_do_not_touch_zattrs(sample_paths, memory_url):
    source = open_store(memory_url)
    reads = []
    original = source.fs.cat_file

    def counting(path, *args, **kwargs):
        reads.append(path)
        return original(path, *args, **kwargs)

    source.fs.cat_file = counting
    try:
        source.array("2010/94A")[0]
        walk(source)
    finally:
        del source.fs.cat_file
    assert not [p for p in reads if p.endswith(".zattrs")]


def test_hmi_and_eve_open_over_http(sample_paths, http_root):
    hmi = open_store(f"{http_root}/{sample_paths['hmi'].name}")
    assert hmi.children("2012") == ([], ["Bx", "By", "Bz"])
    local = open_store(str(sample_paths["hmi"]))
    np.testing.assert_array_equal(hmi.array("2012/Bz")[15], local.array("2012/Bz")[15])
    eve = open_store(f"{http_root}/{sample_paths['eve'].name}")
    assert "Time" in eve.children("MEGS-A")[1]
    assert eve.array("MEGS-A/Time")[0] == local_eve_first_time(sample_paths)


def local_eve_first_time(sample_paths):
    return open_store(str(sample_paths["eve"])).array("MEGS-A/Time")[0]


@pytest.mark.parametrize("url", ["s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/sdomlv2_small.zarr",
                                 "gs://fdl-sdoml-v2/sdomlv2_small.zarr", "aia-small", "gcs:hmi"])
def test_offline_remote_store_fails_fast(url):
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="offline"):
        open_store(url)
    assert time.perf_counter() - start < 2


def test_cli_tree_offline_fails_fast_with_one_line():
    start = time.perf_counter()
    result = subprocess.run([_cli(), "tree", "s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/sdomlv2_small.zarr"],
                            capture_output=True, text=True, timeout=30)
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "offline" in result.stderr
    assert elapsed < 2, f"{elapsed:.2f} s, of which {_cli_startup():.2f} s start-up"


@functools.lru_cache(maxsize=1)
def _cli_startup() -> float:
    start = time.perf_counter()
    subprocess.run([_cli(), "--version"], capture_output=True, timeout=30, check=True)
    return time.perf_counter() - start


def _cli() -> str:
    import shutil
    import sys
    from pathlib import Path

    found = Path(sys.executable).with_name("sdoml-sql")
    return str(found) if found.exists() else shutil.which("sdoml-sql")


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"\.zgroup"):
        open_store(str(tmp_path / "empty"))
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "missing"))


def test_cli_tree_and_keywords_on_the_sample(sample_paths, tmp_path):
    import shutil

    copy = tmp_path / "aia.zarr"
    shutil.copytree(sample_paths["aia"], copy)
    (copy / ".zmetadata").unlink()
    for zattrs in copy.rglob(".zattrs"):  # tree must never read attributes
        zattrs.write_bytes(b"")
    tree = subprocess.run([_cli(), "tree", str(copy)], capture_output=True, text=True, timeout=60)
    assert tree.returncode == 0, tree.stderr
    assert "171A" in tree.stdout and "2020" in tree.stdout and "chunks=(15, 512, 512)" in tree.stdout
    keywords = subprocess.run([_cli(), "keywords", str(sample_paths["aia"]), "2010/171A"],
                              capture_output=True, text=True, timeout=60)
    assert keywords.returncode == 0, keywords.stderr
    assert "EXPTIME" in keywords.stdout and "T_OBS" in keywords.stdout
