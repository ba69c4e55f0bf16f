"""The uniform-shuffle loader's thread workers: frames decoded straight into reused batch
arrays, the same batches in the same order as worker processes, exact-once and sharded, and
never a batch overwritten while anything still holds it."""

from __future__ import annotations

import gc
import pickle
import shutil

import numcodecs
import numpy as np
import pytest
import zarr

from fetch_helpers import direct_frame
from ml_helpers import MIXED_SQL, ml_catalog
from sdoml_sql import Catalog, DatasetError, FetchError
from sdoml_sql.fetch.frames import FrameReader
from test_frames import CHUNK, FRAME_BYTES_F4, SHAPE, _damage, write_array

torch = pytest.importorskip("torch")
from sdoml_sql.datasets.loader import BatchBuffers  # noqa: E402  (imports torch)


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
    return ml_catalog(tmp_path_factory.mktemp("ml-threads"))


@pytest.fixture(scope="module")
def mixed(ml_dir):
    return Catalog(ml_dir).query(MIXED_SQL).dataset()


def epoch(loader) -> list[dict]:
    return [{"row": b["row"].tolist(), "image": b["image"].numpy().copy(), "idx": b["idx"].numpy().copy()}
            for b in loader]


# --- the frame reader's entry point ---------------------------------------------------------

@pytest.mark.parametrize("blocksize", [FRAME_BYTES_F4 // 4, 5000], ids=["whole blocks", "straddling"])
@pytest.mark.parametrize("frames", [[3], [16, 20, 29], [30, 36]])
def test_read_into_writes_zarrs_pixels_into_the_places_given(tmp_path, blocksize, frames):
    array, data = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="zstd", clevel=5, shuffle=2,
                                                                    blocksize=blocksize))
    expected = np.asarray(zarr.open_array(str(tmp_path / "s.zarr" / "x"), mode="r")[:])
    batch = np.full((len(frames), 2, *SHAPE), np.nan, dtype=np.float32)
    lo = frames[0]
    FrameReader().read_into(array, "x", lo, frames[-1] + 1, tuple(f - lo for f in frames),
                            [batch[j, 1] for j in range(len(frames))])
    np.testing.assert_array_equal(batch[:, 1], expected[frames])
    assert np.isnan(batch[:, 0]).all()  # nothing written outside the places
    small = np.empty((len(frames), SHAPE[0] // 2, SHAPE[1] // 2), np.float32)
    FrameReader().read_into(array, "x", lo, frames[-1] + 1, tuple(f - lo for f in frames), list(small), factor=2)
    np.testing.assert_array_equal(small, expected[frames][:, ::2, ::2])


def test_read_into_fills_absent_chunks_and_names_damaged_ones(tmp_path):
    array, _ = write_array(tmp_path / "s.zarr", numcodecs.Blosc(cname="zstd", shuffle=2, blocksize=FRAME_BYTES_F4))
    (tmp_path / "s.zarr/x/1.0.0").unlink()
    out = np.full(SHAPE, 5, np.float32)
    FrameReader().read_into(array, "x", CHUNK + 2, CHUNK + 3, (0,), [out])
    assert (out == 0).all()  # the fill value
    _damage(tmp_path / "s.zarr/x/0.0.0", "stream length past the end")
    with pytest.raises(FetchError) as caught:
        FrameReader().read_into(array, "aia 2010/171A", 0, 1, (0,), [out])
    assert len(str(caught.value).splitlines()) == 1
    assert "aia 2010/171A frames 0..0" in str(caught.value) and "x/0.0.0" in str(caught.value)


# --- batch arrays reused only when free ------------------------------------------------------

def test_batch_arrays_are_reused_only_once_nothing_holds_them():
    buffers = BatchBuffers((2, 3), keep=2)
    first = buffers.take(4)
    address = first.ctypes.data
    batch = torch.from_numpy(first)
    del first
    view = batch[1:3]  # a consumer keeps a slice of its batch
    del batch
    second = buffers.take(4)
    assert second.ctypes.data != address  # held through the slice: a second array
    as_numpy = view.numpy()
    del view
    third = buffers.take(4)
    assert third.ctypes.data not in (address, second.ctypes.data)  # held through the slice's numpy view
    assert len(buffers._pool) == 2  # the pool is full: that one was made fresh, not kept
    del as_numpy
    gc.collect()
    fourth = buffers.take(4)
    assert fourth.ctypes.data == address  # free again: reused
    assert buffers.take(4).ctypes.data not in (address, second.ctypes.data)
    assert buffers.take(3).shape == (3, 2, 3)


def test_kept_batches_keep_their_pixels_and_dropped_ones_are_reused(mixed):
    loader = mixed.loader(batch_size=2, shuffle="uniform", seed=3, num_workers=2)
    kept = list(loader)  # every batch held: none may be overwritten by a later one
    assert len(kept) == len(loader) > 2 * 2 + 2  # more batches than the pool keeps
    for batch in kept:
        for j, row in enumerate(batch["row"].tolist()):
            i = int(np.flatnonzero(mixed.rows == row)[0])
            np.testing.assert_array_equal(batch["image"][j].numpy(), mixed[i]["image"], err_msg=f"row {row}")
    del kept, batch
    addresses = set()
    for batch in loader:
        addresses.add(batch["image"].data_ptr())
        i = int(np.flatnonzero(mixed.rows == batch["row"][-1].item())[0])
        np.testing.assert_array_equal(batch["image"][-1].numpy(), mixed[i]["image"])  # nothing left from before
        del batch  # dropped before the next is asked for
    assert len(addresses) <= 2 * 2 + 2 + 1  # the pool's arrays (plus the last, shorter batch)


def batch_addresses(loader) -> set[int]:
    seen = set()
    for batch in loader:
        seen.add(batch["image"].data_ptr())
        del batch  # dropped before the next is asked for
    return seen


def test_the_next_epochs_loader_builds_its_batches_in_the_arrays_of_the_last(ml_dir):
    ds = Catalog(ml_dir).query(MIXED_SQL).dataset()

    def pooled() -> set[int]:
        return {array.ctypes.data for array in ds.batch_pool._pool}

    for size in (4, 8):  # 8: the free arrays too small for a batch are replaced
        held = list(ds.loader(batch_size=size, shuffle="uniform", seed=1, epoch=0, num_workers=2))
        assert len(held) > 2 * 2 + 2 and len(ds) % size  # every pooled array used, and a shorter last batch
        del held
        assert len(ds.batch_pool._pool) == 2 * 2 + 2 and all(len(array) == size for array in ds.batch_pool._pool)
        for epoch in (1, 2):  # no fresh memory: the shorter batch too is built in a kept array
            assert batch_addresses(ds.loader(batch_size=size, shuffle="uniform", seed=1, epoch=epoch,
                                             num_workers=2)) <= pooled()
    assert pickle.loads(pickle.dumps(ds)).batch_pool is None  # worker processes never get the arrays


# --- the same epoch as worker processes -------------------------------------------------------

def test_threads_give_the_batches_processes_give_in_the_same_order(ml_dir, mixed):
    threaded = mixed.loader(batch_size=4, shuffle="uniform", seed=2, epoch=1, num_workers=2)
    assert threaded.num_workers == 0 and threaded.dataset.threads == 2  # auto: threads for a uniform shuffle
    processes = mixed.loader(batch_size=4, shuffle="uniform", seed=2, epoch=1, num_workers=2, workers="processes")
    assert processes.num_workers == 2
    ours, theirs = epoch(threaded), epoch(processes)
    assert [b["row"] for b in ours] == [b["row"] for b in theirs]
    assert len(ours) == len(threaded) == len(processes)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a["image"], b["image"])
    rows = [r for b in ours for r in b["row"]]
    assert sorted(rows) == sorted(mixed.rows.tolist())  # exact-once
    assert rows == [r for b in epoch(threaded) for r in b["row"]]  # fixed by (seed, epoch)
    threaded.dataset.set_epoch(2)
    assert rows != [r for b in epoch(threaded) for r in b["row"]]
    first = ours[0]  # the stores' own pixels
    i = int(np.flatnonzero(mixed.rows == first["row"][0])[0])
    for c in range(len(mixed.channels)):
        ref = mixed.arrays[int(mixed.array_ids[i, c])]
        np.testing.assert_array_equal(first["image"][0, c], direct_frame(
            Catalog(ml_dir), ref.instrument, ref.year, ref.channel, int(first["idx"][0, c])))


def test_thread_workers_shard_ranks_and_drop_partial_batches_as_processes_do(mixed):
    for drop_last in (False, True):
        shards = []
        for rank in range(3):
            options = dict(batch_size=3, shuffle="uniform", seed=5, rank=rank, world_size=3, num_workers=2,
                           drop_last=drop_last)
            ours = epoch(mixed.loader(**options))
            if rank == 1 and drop_last:
                theirs = epoch(mixed.loader(**options, workers="processes", multiprocessing_context="spawn"))
                assert [b["row"] for b in ours] == [b["row"] for b in theirs]
            assert len(ours) == len(mixed.loader(**options))
            assert all(len(b["row"]) == 3 for b in ours) or not drop_last
            shards.append([r for b in ours for r in b["row"]])
        served = [r for shard in shards for r in shard]
        assert len(served) == len(set(served))  # ranks disjoint
        if not drop_last:
            assert sorted(served) == sorted(mixed.rows.tolist())


def test_no_workers_and_normalised_samples_read_the_same(ml_dir):
    ds = Catalog(ml_dir).query(MIXED_SQL).dataset(normalize="sdoml", downsample=4)
    inline = epoch(ds.loader(batch_size=5, shuffle="uniform", seed=1))
    threaded = epoch(ds.loader(batch_size=5, shuffle="uniform", seed=1, num_workers=3))
    assert [b["row"] for b in inline] == [r["row"] for r in epoch(ds.loader(batch_size=5, shuffle="uniform",
                                                                              seed=1, workers="processes"))]
    for batch in inline:
        for j, row in enumerate(batch["row"]):
            np.testing.assert_array_equal(batch["image"][j], ds[int(np.flatnonzero(ds.rows == row)[0])]["image"])
    assert sorted(r for b in threaded for r in b["row"]) == sorted(ds.rows.tolist())


def test_workers_option_is_checked(mixed):
    with pytest.raises(DatasetError, match="workers='threads' needs shuffle='uniform'"):
        mixed.loader(batch_size=2, shuffle=True, workers="threads")
    with pytest.raises(DatasetError, match="workers='fibres'"):
        mixed.loader(batch_size=2, shuffle="uniform", workers="fibres")
    assert mixed.loader(batch_size=2, shuffle=True, num_workers=2).num_workers == 2  # the block shuffle: processes


def test_a_damaged_chunk_stops_a_threaded_epoch_with_its_one_line_error(ml_dir, tmp_path):
    copy = tmp_path / "ml"
    shutil.copytree(ml_dir.parent, copy)
    manifest = copy / "catalog" / "manifest.json"  # its sources: the copied stores
    manifest.write_text(manifest.read_text().replace(str(ml_dir.parent), str(copy)))
    ds = Catalog(copy / "catalog").query(MIXED_SQL).dataset()
    for chunk in (copy / "stores").glob("**/171A/*.0.0"):
        _damage(chunk, "stream length past the end")
    with pytest.raises(FetchError, match=r"171A/\d+\.0\.0 of store .*/ml/stores/.* is damaged"):
        list(ds.loader(batch_size=2, shuffle="uniform", num_workers=2))
