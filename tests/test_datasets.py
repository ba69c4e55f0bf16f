"""ML datasets: samples, chunk-aware epochs, normalisation, splits, exports — on real sample stores."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fetch_helpers import LocatorSelection, count_chunk_reads, direct_frame, locators
from ml_helpers import AIA_SQL, MIXED_SQL, ml_catalog, trace_lines
from sdoml_sql import Catalog, DatasetError, FetchError, QueryError
from sdoml_sql.datasets import dataset
from sdoml_sql.datasets.normalize import Normalization

CLI = [sys.executable, "-m", "sdoml_sql.cli"]


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
    return ml_catalog(tmp_path_factory.mktemp("ml"))


@pytest.fixture(scope="module")
def ml(ml_dir):
    return Catalog(ml_dir)


@pytest.fixture(scope="module")
def aia_ds(ml):
    return ml.query(AIA_SQL).dataset()


def _direct(catalog, ds, item, c):
    ref = ds.arrays[int(ds.array_ids[item_index(ds, item), c])]
    return direct_frame(catalog, ref.instrument, int(item["year"][c]), ref.channel, int(item["idx"][c]))


def item_index(ds, item) -> int:
    return int(np.flatnonzero(ds.rows == item["row"])[0])


# --- samples -------------------------------------------------------------------------------

def test_samples_are_the_stores_pixels_in_query_order_across_chunks_and_years(ml, aia_ds):
    ds = aia_ds
    assert ds.channels == ["193A", "171A"]
    idx_171 = ds.idx[:, 1]
    years = np.array([ds.arrays[a].year for a in ds.array_ids[:, 1]])
    near_boundary = np.flatnonzero((years == 2010) & (idx_171 >= 112) & (idx_171 < 128))
    assert (idx_171[near_boundary] < 120).any() and (idx_171[near_boundary] >= 120).any()
    later_year = np.flatnonzero(years == 2011)[:3]
    assert len(later_year) == 3
    for i in [*near_boundary, *later_year]:
        item = ds[int(i)]
        assert item["image"].dtype == np.float32 and item["image"].shape == (2, 512, 512)
        for c in range(2):
            np.testing.assert_array_equal(item["image"][c], _direct(ml, ds, item, c))
    table = ml.query(AIA_SQL).to_pandas().set_index("row")
    item = ds[int(later_year[0])]
    assert pd.Timestamp(item["time"]) == table.loc[item["row"], "time"]
    assert list(item["idx"]) == [table.loc[item["row"], "193A.idx"], table.loc[item["row"], "171A.idx"]]


#: (catalog fixture, SQL, fewest samples) per sample layout; v2a's range holds the 2020 T_OBS
#: format change, the 2022 frames filed under 2023 and HMI out of time order.
MIXED = {"v2": ("ml", MIXED_SQL, 20),
         "v2a": ("v2a_catalog", "SELECT * FROM aligned(['Bz', '171A', '193A'], '2020-08-27', '2023-01-03', "
                                "INTERVAL 12 minutes, INTERVAL 6 minutes)", 5)}


def test_aia_and_hmi_channels_mix_and_downsample_as_fetch_does(request, layout):
    name, sql, fewest = MIXED[layout]
    ml = request.getfixturevalue(name)
    ds = ml.query(sql).dataset(downsample=4, method="mean")
    assert ds.channels == ["Bz", "171A", "193A"] and len(ds) > fewest
    for item in (ds[len(ds) // 2], ds[len(ds) - 1]):
        assert item["image"].shape == (3, 128, 128)
        for c in range(3):
            full = _direct(ml, ds, item, c)
            np.testing.assert_allclose(item["image"][c], full.reshape(128, 4, 128, 4).mean(axis=(1, 3)), rtol=1e-6)


def test_frame_selections_give_one_channel_samples_timed_by_t_obs(ml):
    sql = "SELECT * FROM aia WHERE channel = '171A' AND year = 2010 AND idx BETWEEN 117 AND 122 ORDER BY idx DESC"
    ds = ml.query(sql).dataset()
    table = ml.query(sql).to_pandas()
    assert len(ds) == 6 and ds.image_shape == (1, 512, 512)
    for i in range(6):
        item = ds[i]
        assert item["row"] == i and pd.Timestamp(item["time"]) == table["T_OBS"][i]
        np.testing.assert_array_equal(item["image"][0], direct_frame(ml, "aia", 2010, "171A", int(table["idx"][i])))


def test_missing_channels_drop_or_fill_nan(ml):
    sql = MIXED_SQL.replace("INTERVAL 6 minutes", "INTERVAL 5 minutes")
    grid_rows = len(ml.query(sql))
    dropped = ml.query(sql).dataset()
    filled = ml.query(sql).dataset(missing="nan")
    assert len(dropped) < len(filled) == grid_rows
    gap = next(i for i in range(len(filled)) if (filled.array_ids[i] < 0).any() and (filled.array_ids[i] >= 0).any())
    item = filled[gap]
    absent = filled.array_ids[gap] < 0
    assert np.isnan(item["image"][absent]).all() and (item["idx"][absent] == -1).all()
    assert not np.isnan(item["image"][~absent]).any()
    with pytest.raises(FetchError, match=r"grid times have no frame .* pass missing='nan'"):
        ml.query(sql).dataset(missing="raise")


def test_dataset_pickles_small_and_reopens_its_stores(aia_ds):
    import pickle

    data = pickle.dumps(aia_ds)
    assert len(data) < 20_000 and b"WAVELNTH" not in data  # locators only, no .zattrs
    copy = pickle.loads(data)
    assert copy.opener._catalog is None and copy._zarrays is None
    np.testing.assert_array_equal(copy[3]["image"], aia_ds[3]["image"])


# --- epochs ----------------------------------------------------------------------------------

def test_epoch_plans_cover_every_sample_once_for_workers_and_ranks(ml):
    ds = ml.query(MIXED_SQL).dataset()
    for workers in (0, 2):
        for world_size in (1, 3):
            plans = [ds.plan(seed=5, epoch=2, num_workers=workers, rank=r, world_size=world_size)
                     for r in range(world_size)]
            served = [s for p in plans for schedule in p.schedules for s in schedule.samples]
            assert sorted(served) == list(range(len(ds)))
    plan = ds.plan(seed=5, epoch=2, num_workers=2)
    assert plan.decodes <= 1.05 * plan.distinct_chunks
    again = ds.plan(seed=5, epoch=2, num_workers=2)
    other = ds.plan(seed=5, epoch=3, num_workers=2)
    assert [s.samples for s in again.schedules] == [s.samples for s in plan.schedules]
    assert [s.samples for s in other.schedules] != [s.samples for s in plan.schedules]


def test_chunk_reads_are_held_to_the_plan_and_the_cache_to_its_size(ml_dir):
    catalog = Catalog(ml_dir)
    counters = count_chunk_reads(catalog)
    ds = catalog.query(MIXED_SQL).dataset()
    reference = [ds[i]["image"] for i in range(len(ds))]  # row order: each chunk once (per-column cache)
    distinct = ds.plan().distinct_chunks
    assert sum(len(c.reads) for c in counters.values()) == distinct
    for cache_mb, bound in ((None, 1.05), (2 * ds.sample_bytes / 1e6, None)):  # 2 of 118 samples: re-decodes
        for counter in counters.values():
            counter.reads.clear()
        plan = ds.plan(seed=1, cache_mb=cache_mb)
        served = {}
        for step, item in zip(plan.schedules[0].steps, ds.run(plan.schedules[0])):
            served[step.sample] = item["image"]
        assert sum(len(c.reads) for c in counters.values()) == plan.decodes
        assert plan.peak_cache_bytes <= plan.cache_bytes
        assert plan.decodes <= bound * distinct if bound else plan.decodes > distinct
        assert all(np.array_equal(served[i], reference[i]) for i in range(len(ds)))


# --- normalisation -------------------------------------------------------------------------

def test_normalisation_statistics_are_reproducible_stored_and_reused(ml_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(ml_dir, copy)
    catalog = Catalog(copy)
    rule = Normalization(frames=4, seed=1)
    first = catalog.query(MIXED_SQL).dataset(normalize=rule)
    stored = Path(first.normalizer.stats_path)
    assert not first.normalizer.reused and stored.parent == copy / "ml_stats" and stored.is_file()
    again = catalog.query(MIXED_SQL).dataset(normalize=rule)
    assert again.normalizer.reused and again.normalizer.stats == first.normalizer.stats
    stored.unlink()
    fresh = catalog.query(MIXED_SQL).dataset(normalize=rule)
    assert not fresh.normalizer.reused and fresh.normalizer.stats == first.normalizer.stats
    raw = catalog.query(MIXED_SQL).dataset()
    item, plain = fresh[7], raw[7]
    aia = fresh.normalizer.stats["channels"]["171A"]
    expected = (np.log10(np.maximum(plain["image"][1], 1.0)) - np.float32(aia["mean"])) / np.float32(aia["std"])
    np.testing.assert_allclose(item["image"][1], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(item["image"][0], np.clip(plain["image"][0], -1500, 1500) / 1500, rtol=1e-6)
    other = catalog.query(MIXED_SQL).dataset(normalize=Normalization(frames=4, seed=2))
    assert other.normalizer.stats_path != first.normalizer.stats_path


# --- splits --------------------------------------------------------------------------------

def test_splits_are_disjoint_whole_months_and_gap_guarded(ml, aia_ds):
    months = {"val_months": ["2010-12"], "test_months": ["2011-01"]}
    splits = aia_ds.split(gap="10 minutes", **months)
    times = {name: pd.DatetimeIndex(part.times) for name, part in splits.items()}
    assert all(len(t) for t in times.values())
    assert {str(m) for m in times["train"].to_period("M")} == {"2010-08"}
    assert {str(m) for m in times["val"].to_period("M")} == {"2010-12"}
    assert {str(m) for m in times["test"].to_period("M")} == {"2011-01"}
    rows = [set(part.rows.tolist()) for part in splits.values()]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    closest = np.abs(times["val"].values[:, None] - times["test"].values[None, :]).min()
    assert closest >= np.timedelta64(10, "m")
    assert len(aia_ds) - sum(len(p) for p in splits.values()) > 0  # the gap dropped samples at the edge
    sql = AIA_SQL.replace("SELECT *", "SELECT row, split_label(time, gap := INTERVAL 10 minutes, val_months := "
                                       "['2010-12'], test_months := ['2011-01']) AS split")
    labels = ml.query(sql).to_pandas().set_index("row")["split"]
    for name, part in splits.items():
        assert (labels.loc[part.rows] == name).all()
    seeded = aia_ds.split(val=0.4, test=0.3, seed=7, gap="1 day")
    sql = AIA_SQL.replace("SELECT *", "SELECT row, split_label(time, seed := 7, val := 0.4, test := 0.3) AS split")
    labels = ml.query(sql).to_pandas().set_index("row")["split"]
    for name, part in seeded.items():
        assert (labels.loc[part.rows] == name).all()
    assert labels.loc[aia_ds.rows].isna().sum() == len(aia_ds) - sum(len(p) for p in seeded.values())


# --- torch loaders -------------------------------------------------------------------------

def test_loader_with_two_workers_serves_each_sample_once_decoding_each_chunk_once(ml, tmp_path):
    import torch

    ds = ml.query(MIXED_SQL).dataset()
    ds.trace_dir = str(tmp_path)
    loader = ds.loader(batch_size=8, seed=3, epoch=0, num_workers=2)
    assert isinstance(loader, torch.utils.data.DataLoader)
    rows, images = [], {}
    for batch in loader:
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, 512, 512)
        for row, image in zip(batch["row"].tolist(), batch["image"]):
            rows.append(row)
            images[row] = image
    assert sorted(rows) == sorted(ds.rows.tolist())
    decodes = trace_lines(tmp_path)
    assert len({line[0] for line in decodes}) == 2  # both workers decoded
    assert len(decodes) == loader.dataset.plan.decodes <= 1.05 * loader.dataset.plan.distinct_chunks
    for i in (0, len(ds) - 1):
        np.testing.assert_array_equal(images[int(ds.rows[i])].numpy(), ds[i]["image"])
    shards = [[int(ds.rows[s]) for s in schedule.samples] for schedule in loader.dataset.plan.schedules]
    batches = [[shard[k:k + 8] for k in range(0, len(shard), 8)] for shard in shards]
    interleaved = [r for pair in zip(*batches) for batch in pair for r in batch]
    longer = max(batches, key=len)[min(map(len, batches)):]
    assert rows == interleaved + [r for batch in longer for r in batch]  # the plan's order, fixed by (seed, epoch)
    ranks = [[r for b in ds.loader(batch_size=8, seed=3, epoch=1, rank=k, world_size=2) for r in b["row"].tolist()]
             for k in range(2)]
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == sorted(rows)
    assert ranks[0] + ranks[1] != rows


def test_uniform_shuffle_is_a_seeded_permutation_served_once_per_rank_and_reading_partially(ml_dir):
    catalog = Catalog(ml_dir)
    counters = count_chunk_reads(catalog)
    ds = catalog.query(MIXED_SQL).dataset()
    plans = {(seed, epoch): ds.plan(shuffle="uniform", seed=seed, epoch=epoch, num_workers=2, batch_size=4)
             for seed, epoch in ((1, 0), (1, 1), (2, 0))}
    orders = {key: [s for schedule in plan.schedules for s in schedule.samples] for key, plan in plans.items()}
    assert orders[1, 0] == np.random.default_rng([1, 0]).permutation(len(ds)).tolist()  # uniform, seeded
    assert orders[1, 0] != orders[1, 1] != orders[2, 0]
    assert orders[1, 0] == [s for schedule in ds.plan(shuffle="uniform", seed=1, epoch=0, num_workers=2,
                                                       batch_size=4).schedules for s in schedule.samples]
    for world_size in (1, 3):
        served = [s for r in range(world_size)
                  for schedule in ds.plan(shuffle="uniform", seed=1, rank=r, world_size=world_size,
                                          num_workers=2).schedules for s in schedule.samples]
        assert sorted(served) == list(range(len(ds)))
    rows = [r for batch in ds.loader(batch_size=4, shuffle="uniform", seed=1, epoch=0) for r in batch["row"].tolist()]
    assert rows == [int(ds.rows[s]) for s in orders[1, 0]]
    assert counters["aia"].headers  # frames were read partially
    reference = ds[5]["image"]
    uniform = next(iter(ds.loader(batch_size=len(ds), shuffle="uniform", seed=4)))
    position = uniform["row"].tolist().index(int(ds.rows[5]))
    np.testing.assert_array_equal(uniform["image"][position].numpy(), reference)
    with pytest.raises(DatasetError, match="shuffle='sometimes'"):
        ds.plan(shuffle="sometimes")


def test_loader_applies_a_transform_to_samples_and_batches_them(ml):
    plain = ml.query(AIA_SQL).dataset(downsample=8)
    doubled = ml.query(AIA_SQL).dataset(downsample=8, transform=lambda item: {**item, "image": item["image"] * 2})
    images = {}
    for batch in doubled.loader(batch_size=5, seed=2, drop_last=True):
        assert batch["image"].shape == (5, 2, 64, 64)
        images.update(zip(batch["row"].tolist(), batch["image"].numpy()))
    assert len(images) == len(plain) - len(plain) % 5
    checked = [i for i in range(len(plain)) if int(plain.rows[i]) in images][::40]
    assert len(checked) >= 3
    for i in checked:
        np.testing.assert_array_equal(images[int(plain.rows[i])], plain[i]["image"] * 2)


def test_export_survives_a_kill_resumes_and_equals_the_dataset(ml, ml_dir, tmp_path):
    out = tmp_path / "train.zarr"
    command = [*CLI, "export", AIA_SQL, str(out), "--catalog", str(ml_dir)]
    journal = out.with_name("train.zarr.partial") / "written.tsv"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (journal.is_file() and journal.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = journal.read_text().count("\n")
    assert not out.exists() and 3 <= written
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    counts = [int(n) for n in re.findall(r"(\d+)/\d+ \[", resumed.stderr)]
    assert counts and counts[0] >= min(written, len(ml.query(AIA_SQL).dataset())) - 1  # started where it stopped
    from sdoml_sql import open_export

    exported = open_export(out)
    ds = ml.query(AIA_SQL).dataset()
    assert len(exported) == len(ds) and not out.with_name("train.zarr.partial").exists()
    for i in range(len(ds)):
        item, expected = exported[i], ds[i]
        np.testing.assert_array_equal(item["image"], expected["image"])
        assert item["time"] == expected["time"] and list(item["idx"]) == list(expected["idx"])
    rows = [r for b in exported.loader(batch_size=5, seed=1, num_workers=2) for r in b["row"].tolist()]
    assert sorted(rows) == sorted(ds.rows.tolist()) and rows != sorted(rows)


# --- bad input -----------------------------------------------------------------------------

def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_bad_input_gets_one_line_errors(ml, aia_ds, tmp_path):
    with pytest.raises(QueryError) as error:
        ml.query("SELECT count(*) AS n FROM aia").dataset()
    assert "no frame locators" in _one_line(error)
    empty = "SELECT * FROM aligned(['171A'], '2015-01-01', '2015-01-02', INTERVAL 1 hour, INTERVAL 1 minute)"
    with pytest.raises(DatasetError) as error:
        ml.query(empty).dataset()
    assert "no frames" in _one_line(error)
    with pytest.raises(DatasetError) as error:
        ml.query(AIA_SQL).dataset(normalize="zscore")
    assert "normalize='zscore'" in _one_line(error)
    with pytest.raises(DatasetError) as error:
        aia_ds.loader(batch_size=0)
    assert "batch_size=0" in _one_line(error)
    with pytest.raises(DatasetError) as error:
        aia_ds.split(val=0.7, test=0.6)
    assert "val=0.7" in _one_line(error)
    with pytest.raises(FetchError) as error:
        dataset(mixed_sizes(ml, tmp_path))
    assert "different sizes" in _one_line(error) and "256" in str(error.value)
    result = subprocess.run([*CLI, "export", "SELECT count(*) FROM aia", str(tmp_path / "x.zarr"),
                             "--catalog", str(ml.directory)], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no frame locators" in result.stderr


def mixed_sizes(ml, tmp_path):
    """A selection of two frames: one from the sample's 171A (512²), one from a 256² array."""
    import zarr

    from sdoml_sql.stores.source import open_store

    store = tmp_path / "small.zarr"
    shutil.copytree(Path(ml.source("aia").root) / "2010" / "171A", store / "2010" / "171A",
                    ignore=shutil.ignore_patterns(".zattrs"))
    root = zarr.open_group(str(store), mode="a", zarr_format=2)
    root.create_array("2010/94A", shape=(2, 256, 256), chunks=(2, 256, 256), dtype="<f4", fill_value=0.0)

    class Stores:
        manifest = {"sources": {"aia": {"url": str(store)}}}
        directory = tmp_path

        def source(self, instrument):
            return open_store(str(store))

    table = locators([("aia", 2010, "171A", 0), ("aia", 2010, "94A", 1)])
    return LocatorSelection(Stores(), table)


def test_importing_the_package_never_imports_torch():
    code = ("import sys, sdoml_sql, sdoml_sql.datasets, sdoml_sql.query, sdoml_sql.cli; "
            "sdoml_sql.open_export; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
