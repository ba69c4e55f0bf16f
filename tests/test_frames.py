"""The frame reader (``sdoml_sql.fetch.frames``): partial Blosc reads give zarr's own pixels
for every codec, shuffle, typesize and layout Blosc writes; other codecs take the whole-chunk
path; damaged chunks fail in one line naming store, array, chunk and frames; remote partial
reads transfer only the frames' blocks."""

from __future__ import annotations

import os
import struct

import numcodecs
import numcodecs.blosc
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch import frames as frames_module
from sdoml_sql.fetch.blosc import BloscHeader, block_bounds, chunk_table, needed_ranges, table_end
from sdoml_sql.fetch.chunkbytes import chunk_key
from sdoml_sql.fetch.frames import FrameReader, read_chunk_frames, uses_partial
from sdoml_sql.stores.source import open_store

FRAMES, CHUNK, SHAPE = 37, 15, (48, 80)  # the last chunk holds 7 frames
FRAME_BYTES_F4 = SHAPE[0] * SHAPE[1] * 4
#: A Blosc block size that does not divide a frame (15,360 bytes for float32): frames straddle blocks.
STRADDLING_BLOCK = 5000


def write_array(path, compressor, dtype="<f4", filters=None, threads=False, data=None, chunk=CHUNK, seed=7):
    """A Zarr v2 array of FRAMES frames written by zarr itself; its data."""
    rng = np.random.default_rng(seed)
    if data is None:
        data = (rng.standard_normal((FRAMES, *SHAPE)) * 300).round().astype(dtype)
    previous = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = threads
    try:
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        array = group.create_array("x", shape=data.shape, chunks=(chunk, *SHAPE), dtype=data.dtype,
                                   compressor=compressor, filters=filters, fill_value=0)
        array[:] = data
        if threads:  # zarr encodes off the main thread, without Blosc's threads: encode here
            for n, start in enumerate(range(0, FRAMES, chunk)):
                block = np.zeros((chunk, *SHAPE), data.dtype)
                block[:min(chunk, FRAMES - start)] = data[start:start + chunk]
                (path / "x" / f"{n}.0.0").write_bytes(compressor.encode(block))
    finally:
        numcodecs.blosc.use_threads = previous
    return open_store(str(path)).array("x"), data


def assert_reads_like_zarr(array, data, frame_sets):
    expected = np.asarray(zarr.open_array(str(array.store_path.store.root / "x"), mode="r")[:])
    np.testing.assert_array_equal(expected, data)
    for frames in frame_sets:
        frames = sorted(frames)
        chunk = frames[0] // CHUNK
        assert all(f // CHUNK == chunk for f in frames)
        lo, hi = frames[0], frames[-1] + 1
        got = read_chunk_frames(array, "x", lo, hi, tuple(f - lo for f in frames), 1, "stride")
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.flags.writeable
        np.testing.assert_array_equal(got, expected[frames].astype(np.float32), err_msg=str(frames))


SINGLE_AND_SETS = [[f] for f in range(FRAMES)] + [[0, 1], [3, 9], [15, 16, 29], [30, 36], [2, 5, 6, 13]]


@pytest.mark.parametrize("cname", ["zstd", "lz4", "lz4hc", "blosclz", "zlib"])
@pytest.mark.parametrize("shuffle", [numcodecs.Blosc.NOSHUFFLE, numcodecs.Blosc.SHUFFLE, numcodecs.Blosc.BITSHUFFLE])
@pytest.mark.parametrize("dtype", ["<f4", "<i2"])
def test_partial_reads_give_zarrs_pixels(tmp_path, cname, shuffle, dtype):
    compressor = numcodecs.Blosc(cname=cname, clevel=5, shuffle=shuffle, blocksize=STRADDLING_BLOCK)
    array, data = write_array(tmp_path / "s.zarr", compressor, dtype)
    header = BloscHeader.parse((tmp_path / "s.zarr/x/0.0.0").read_bytes(), CHUNK * data[0].nbytes)
    assert header.typesize == np.dtype(dtype).itemsize and data[0].nbytes % header.blocksize
    assert uses_partial(array, [0]) and not uses_partial(array, list(range(CHUNK)))
    assert_reads_like_zarr(array, data, SINGLE_AND_SETS)


def test_threaded_compression_gives_unordered_blocks_and_the_same_pixels(tmp_path):
    numcodecs.blosc.set_nthreads(4)
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=1024)
    for seed in range(20):  # threads finish in order now and then, more so on a loaded machine
        array, data = write_array(tmp_path / "s.zarr", compressor, threads=True, seed=seed)
        unordered = 0
        for n in range(3):
            raw = (tmp_path / f"s.zarr/x/{n}.0.0").read_bytes()
            starts, _ = block_bounds(BloscHeader.parse(raw, CHUNK * FRAME_BYTES_F4), raw)
            unordered += not (np.diff(starts) > 0).all()
        if unordered:
            break
    assert unordered, "threaded Blosc wrote every chunk's blocks in order: the case is not exercised"
    assert_reads_like_zarr(array, data, SINGLE_AND_SETS)


def test_memcpyed_chunks_are_read_raw(tmp_path):
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 2**32, (FRAMES, *SHAPE), dtype=np.uint32).view("<f4")
    noise[~np.isfinite(noise)] = 1.0
    array, data = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="lz4", clevel=1, shuffle=0), data=noise)
    assert BloscHeader.parse((tmp_path / "s.zarr/x/0.0.0").read_bytes(), CHUNK * FRAME_BYTES_F4).memcpyed
    assert_reads_like_zarr(array, data, SINGLE_AND_SETS)


def test_absent_chunk_reads_as_fill_value(tmp_path):
    array, data = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="zstd", shuffle=2))
    os.remove(tmp_path / "s.zarr/x/1.0.0")
    data[15:30] = 0
    assert_reads_like_zarr(array, data, [[16], [20, 21], list(range(15, 30))])


@pytest.mark.parametrize("factor,method", [(2, "stride"), (3, "stride"), (4, "mean")])
def test_downsampled_partial_reads(tmp_path, factor, method):
    array, data = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="zstd", shuffle=2,
                                                                   blocksize=STRADDLING_BLOCK))
    got = read_chunk_frames(array, "x", 31, 35, (0, 4), factor, method)
    if method == "stride":
        expected = data[[31, 35], ::factor, ::factor]
    else:
        expected = data[[31, 35]].reshape(2, SHAPE[0] // factor, factor, SHAPE[1] // factor, factor).mean(
            axis=(2, 4), dtype=np.float32)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("compressor,filters", [
    (numcodecs.Zstd(level=3), None), (numcodecs.GZip(level=5), None), (None, None),
    (numcodecs.Blosc(cname="zstd", shuffle=2), [numcodecs.Delta(dtype="<f4")]),
], ids=["zstd-codec", "gzip", "no-compressor", "blosc-after-a-filter"])
def test_other_codecs_take_the_whole_chunk_path(tmp_path, compressor, filters):
    array, data = write_array(tmp_path / "s.zarr", compressor, filters=filters)
    assert not uses_partial(array, [0])
    assert_reads_like_zarr(array, data, [[0], [5, 9], [36], list(range(15, 30))])


def test_reused_buffer_reads_are_views_only_when_asked(tmp_path):
    array, data = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="zstd", shuffle=2))
    reader = FrameReader()
    whole = reader.read(array, "x", 0, 15, tuple(range(15)), copy=False)
    kept = reader.read(array, "x", 0, 15, tuple(range(15)), copy=True)
    reader.read(array, "x", 15, 30, tuple(range(15)), copy=False)  # overwrites the buffer
    np.testing.assert_array_equal(kept, data[:15])
    np.testing.assert_array_equal(whole, data[15:30])  # the view followed the buffer


def test_a_chunk_rewritten_in_place_reads_its_new_pixels(tmp_path):
    compressor = numcodecs.Blosc(cname="zstd", shuffle=2, blocksize=4096)
    array, data = write_array(tmp_path / "s.zarr", compressor)
    reader = FrameReader()
    np.testing.assert_array_equal(reader.read(array, "x", 3, 4, (0,)), data[3:4])
    chunk = tmp_path / "s.zarr/x/0.0.0"
    newer = data[:CHUNK][::-1].copy()
    with open(chunk, "r+b") as handle:  # same file, same inode: only the bytes tell
        handle.truncate(0)
        handle.write(compressor.encode(newer))
    for frames in ([3], [2, 9]):
        got = reader.read(array, "x", frames[0], frames[-1] + 1, tuple(f - frames[0] for f in frames))
        np.testing.assert_array_equal(got, newer[frames])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.integers(0, 2), picks=st.lists(st.integers(0, CHUNK - 1), min_size=1, max_size=CHUNK))
def test_any_frame_set_reads_like_zarr(threaded_store, chunk, picks):
    array, data = threaded_store
    frames = sorted({chunk * CHUNK + p for p in picks if chunk * CHUNK + p < FRAMES})
    if not frames:
        return
    lo = frames[0]
    got = read_chunk_frames(array, "x", lo, frames[-1] + 1, tuple(f - lo for f in frames), 1, "stride")
    np.testing.assert_array_equal(got, data[frames])


@pytest.fixture(scope="module")
def threaded_store(tmp_path_factory):
    numcodecs.blosc.set_nthreads(2)
    compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=2, blocksize=STRADDLING_BLOCK)
    return write_array(tmp_path_factory.mktemp("frames") / "s.zarr", compressor, threads=True)


# --- damaged chunks ------------------------------------------------------------------------------

def _damage(path, how):
    raw = bytearray(path.read_bytes())
    nblocks = struct.unpack_from("<I", raw, 4)[0] // struct.unpack_from("<I", raw, 8)[0]
    if how == "bad header":
        raw[0] = 9
    elif how == "offset past the end":
        struct.pack_into("<i", raw, 16, len(raw) + 100)
    elif how == "stream length past the end":
        start = struct.unpack_from("<i", raw, 16)[0]
        struct.pack_into("<i", raw, start, 10**6)
    elif how == "truncated":
        raw = raw[:len(raw) // 2]
    elif how == "garbled blocks":
        start = struct.unpack_from("<i", raw, 16 + 4 * (nblocks // 2))[0]
        raw[start + 4:start + 40] = bytes(36)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["bad header", "offset past the end", "stream length past the end",
                                 "truncated", "garbled blocks"])
@pytest.mark.parametrize("frames", [[0], list(range(15))], ids=["partial", "whole"])
def test_damaged_chunk_fails_in_one_line_naming_store_array_chunk_frames(tmp_path, how, frames):
    array, data = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="zstd", shuffle=2, blocksize=4096))
    _damage(tmp_path / "s.zarr/x/0.0.0", how)
    if how == "garbled blocks" and frames == [0]:
        frames = [7]  # a frame whose blocks were garbled
    with pytest.raises(FetchError) as caught:
        read_chunk_frames(array, "aia 2010/171A", frames[0], frames[-1] + 1,
                          tuple(f - frames[0] for f in frames), 1, "stride")
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f"aia 2010/171A frames {frames[0]}..{frames[-1]}" in message
    assert "x/0.0.0" in message and str(tmp_path / "s.zarr") in message


def test_chunk_key_names_frame_chunks(tmp_path):
    array, _ = write_array(tmp_path / "s.zarr", numcodecs.Blosc())
    assert chunk_key(array, 2) == "2.0.0"
    assert frames_module.PARTIAL_MAX_SHARE < 1


# --- remote stores: ranged reads, counted at the emulators' proxy ----------------------------------

@pytest.fixture()
def proxied_store(remote, monkeypatch, no_store_env, sample_paths):
    """(array through a fault proxy in front of the emulator, the same array read locally, proxy)."""
    from emulators import FaultProxy

    proxy = FaultProxy(remote.endpoint)
    for name, value in remote.env(proxy.endpoint).items():
        monkeypatch.setenv(name, value)
    array = open_store(remote.urls()["aia"]).array("2010/171A")
    local = open_store(str(sample_paths["aia"])).array("2010/171A")
    proxy.clear()
    yield array, local, proxy
    proxy.stop()


def frame_blocks_bytes(local, frame: int) -> int:
    """Stored bytes of the Blosc blocks holding ``frame`` (from the local copy of the chunk)."""
    t = int(local.chunks[0])
    raw = open(os.path.join(str(local.store_path.store.root), local.store_path.path, chunk_key(local, frame // t)),
               "rb").read()
    table = chunk_table(raw[:table_end(raw)], int(np.prod(local.chunks)) * 4)
    _, ranges = needed_ranges(table, [frame % t], table.header.nbytes // t)
    return sum(b - a for a, b in ranges)


def test_one_remote_frame_transfers_its_blocks_and_little_else(proxied_store):
    array, local, proxy = proxied_store
    assert int(array.chunks[0]) == 15
    for frame in (3, 20, 122):
        proxy.clear()
        got = read_chunk_frames(array, "aia 2010/171A", frame, frame + 1, (0,), 1, "stride")
        np.testing.assert_array_equal(got, np.asarray(local[frame:frame + 1]))
        blocks = frame_blocks_bytes(local, frame)
        assert blocks <= proxy.bytes_sent <= blocks + 8192, (frame, blocks, proxy.bytes_sent)


def test_partial_reads_leave_the_chunk_cache_alone_and_use_cached_chunks(proxied_store, tmp_path, monkeypatch,
                                                                        remote):
    _, local, proxy = proxied_store
    cached = open_store(remote.urls()["aia"], cache_dir=tmp_path / "cache").array("2010/171A")
    read_chunk_frames(cached, "aia 2010/171A", 3, 4, (0,), 1, "stride")
    assert not [f for _, _, files in os.walk(tmp_path / "cache") for f in files]  # nothing half-cached
    whole = read_chunk_frames(cached, "aia 2010/171A", 0, 15, tuple(range(15)), 1, "stride")
    np.testing.assert_array_equal(whole, np.asarray(local[0:15]))
    proxy.clear()
    again = read_chunk_frames(cached, "aia 2010/171A", 5, 7, (0, 1), 1, "stride")  # partial, from the cache
    np.testing.assert_array_equal(again, np.asarray(local[5:7]))
    assert proxy.bytes_sent == 0 and proxy.count("171A") == 0
