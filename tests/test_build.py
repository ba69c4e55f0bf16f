"""The catalog builder against the sample stores: every frame, every key, incremental, atomic."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from astropy.time import Time

from sdoml_sql.catalog_builder.build import build_catalog, read_manifest, rebuild_catalog
from sdoml_sql.exceptions import CatalogError, HarvestError

PY = sys.executable


def source_arrays(store: Path):
    """(year, channel, frames, attrs) of every AIA/HMI array, read with plain json."""
    for year_dir in sorted(p for p in store.iterdir() if p.name.isdigit()):
        for array_dir in sorted(p for p in year_dir.iterdir() if (p / ".zarray").exists()):
            frames = json.loads((array_dir / ".zarray").read_text())["shape"][0]
            attrs = json.loads((array_dir / ".zattrs").read_text())
            yield int(year_dir.name), array_dir.name, frames, attrs


def catalog_rows(catalog: Path, instrument: str, year: int, channel: str) -> list[dict]:
    path = catalog / instrument / f"year={year}" / f"channel={channel}" / "data.parquet"
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY idx").to_arrow_table().to_pylist()


def expected_time(text: str) -> dt.datetime:
    """An independent reference: astropy's UTC for every string (TAI converted).

    Inside a leap second (UTC 23:59:60.x) the catalog holds the last microsecond before it.
    """
    if text.endswith("_TAI"):
        date, clock = text[:-4].split("_")
        utc = Time(date.replace(".", "-") + "T" + clock, scale="tai").utc
    else:
        utc = Time(text.removesuffix("Z").replace(".", "-", 2) if "_" in text else text.removesuffix("Z"), scale="utc")
    if ":60" in utc.iso:
        return dt.datetime.fromisoformat(utc.iso[:10]).replace(hour=23, minute=59, second=59, microsecond=999999)
    return utc.to_datetime()


def assert_value_matches(key, source_value, row, info, where):
    if info["type"] == "TIMESTAMP":
        assert row[key + "_STR"] == source_value, where
        if source_value in (None, "nan", ""):
            assert row[key] is None, where
        else:
            assert abs(row[key] - expected_time(source_value)) < dt.timedelta(microseconds=2), where
    elif source_value is None or source_value == "nan":
        assert row[key] is None, where
    elif info["type"] == "DOUBLE":
        assert row[key] == pytest.approx(float(source_value), rel=0, abs=0), where
    else:
        assert row[key] == source_value, where


@pytest.mark.parametrize("instrument", ["aia", "hmi"])
def test_every_frame_and_key_matches_the_source(layout_catalog_dir, layout_paths, instrument):
    catalog_dir = layout_catalog_dir
    manifest = read_manifest(catalog_dir)
    rng = random.Random(0)
    arrays = list(source_arrays(layout_paths[instrument]))
    assert arrays
    for year, channel, frames, attrs in arrays:
        rows = catalog_rows(catalog_dir, instrument, year, channel)
        assert [r["idx"] for r in rows] == list(range(frames))
        partition = manifest["partitions"][f"{instrument}/year={year}/channel={channel}"]
        assert partition["rows"] == frames
        sampled = {0, frames - 1, *rng.sample(range(frames), min(5, frames))}
        for key, values in attrs.items():
            if len(values) != frames:
                assert key in partition["ragged_keys"]
                continue
            info = partition["keys"][key]
            for i in sampled:
                assert_value_matches(key, values[i], rows[i], info, f"{instrument} {year}/{channel} {key} frame {i}")


def test_column_types_follow_the_values(catalog_dir):
    types = dict(duckdb.sql(
        f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet("
        f"'{catalog_dir}/aia/*/*/*.parquet', hive_partitioning=true, union_by_name=true))").fetchall())
    assert types["NAXIS"] == "BIGINT" and types["NAXIS1"] == "DOUBLE"
    assert types["EXPTIME"] == "DOUBLE" and types["WAVELNTH"] == "BIGINT"
    assert types["INSTRUME"] == "VARCHAR" and types["GCIEC_X"] == "DOUBLE"
    for key in ("T_OBS", "DATE-OBS", "T_REC", "ISPPKTIM", "DATE"):
        assert types[key] == "TIMESTAMP" and types[key + "_STR"] == "VARCHAR"


def test_hmi_tai_becomes_utc_across_the_leap_second(catalog_dir):
    rows = duckdb.sql(
        f"SELECT T_OBS, T_OBS_STR, year, channel, idx FROM read_parquet('{catalog_dir}/hmi/*/*/*.parquet',"
        " hive_partitioning=true) WHERE channel = 'Bz' ORDER BY year, idx").fetchall()
    assert rows
    seen_2010 = seen_after_leap = False
    for utc, text, year, _, _ in rows:
        stamp = dt.datetime.strptime(text[:19], "%Y.%m.%d_%H:%M:%S")
        offset = (stamp - utc).total_seconds()
        if stamp < dt.datetime(2012, 7, 1, 0, 0, 34):
            assert round(offset) == 34, text
            seen_2010 |= year == 2010
        elif stamp >= dt.datetime(2012, 7, 1, 0, 0, 35):
            assert round(offset) == 35, text
            seen_after_leap = True
        else:  # inside the leap second: last microsecond before it
            assert utc == dt.datetime(2012, 6, 30, 23, 59, 59, 999999)
    assert seen_2010 and seen_after_leap
    times_2012 = [r[0] for r in rows if r[2] == 2012]
    assert times_2012 == sorted(times_2012), "TAI→UTC must not reorder frames"


def test_ragged_keys_are_kept_whole(catalog_dir, sample_paths):
    for year, channel, frames, attrs in source_arrays(sample_paths["aia"]):
        ragged = {k: v for k, v in attrs.items() if len(v) != frames}
        if not ragged:
            continue
        path = catalog_dir / "array_attrs" / "instrument=aia" / f"year={year}" / f"channel={channel}" / "data.parquet"
        stored = {k: json.loads(v) for k, v in duckdb.sql(f"SELECT key, values FROM read_parquet('{path}')").fetchall()}
        assert stored == ragged
    manifest = read_manifest(catalog_dir)
    assert any("kept whole in array_attrs" in w for w in manifest["warnings"])


def test_eve_samples_and_lines(layout_catalog_dir, layout_paths, layout):
    from sql_brute import eve_group

    catalog_dir = layout_catalog_dir
    group = eve_group(layout_paths["eve"])  # MEGS-A in v2, the root of the flat EVE_legacy in v2a
    times = group["Time"][:]
    partitions = sorted(p.name for p in (catalog_dir / "eve").iterdir())
    assert partitions == ["group=" + {"v2": "MEGS-A", "v2a": "root"}[layout]]
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{catalog_dir}/eve/*/*.parquet') ORDER BY idx").to_arrow_table()
    assert rows.num_rows == len(times)
    line = group["Fe XX_2"][:]
    catalog_line = rows.column("Fe XX_2").to_pylist()
    for i in (0, len(line) // 2, len(line) - 1, *[int(j) for j in (line < 0).nonzero()[0][:3]]):
        assert catalog_line[i] == (None if line[i] < 0 else pytest.approx(float(line[i])))
        assert rows.column("time")[i].as_py() == dt.datetime.fromisoformat(str(times[i]))
    lines = {r["name"]: r for r in duckdb.sql(
        f"SELECT * FROM read_parquet('{catalog_dir}/eve_lines/*/*.parquet')").to_arrow_table().to_pylist()}
    assert len(lines) == 39
    attrs = dict(group["Fe XX_2"].attrs)
    assert lines["Fe XX_2"]["ion"] == attrs["ion"]
    assert lines["Fe XX_2"]["wavelength"] == pytest.approx(float(attrs["wavelength"].split()[0]))
    assert lines["Fe XX_2"]["logT"] == pytest.approx(float(attrs["logT"].split()[0]))


# --- incremental and atomic ------------------------------------------------------------------

@pytest.fixture()
def own_catalog(sample_paths, tmp_path):
    """A private copy of the AIA sample (headers only matter) and a catalog built from it."""
    store = tmp_path / "aia.zarr"
    shutil.copytree(sample_paths["aia"], store, ignore=shutil.ignore_patterns("[0-9]*.[0-9]*.[0-9]*"))
    catalog = tmp_path / "catalog"
    build_catalog(aia=str(store), catalog=catalog, progress=False)
    return store, catalog


def snapshot(catalog: Path) -> dict[str, tuple[int, bytes]]:
    """Every file a reader sees (hidden build state such as .lock and .staging left out)."""
    files = (p for p in catalog.rglob("*") if p.is_file())
    return {str(p.relative_to(catalog)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in files if not any(part.startswith(".") for part in p.relative_to(catalog).parts)}


def test_rebuild_without_change_rewrites_nothing(own_catalog):
    _, catalog = own_catalog
    before = snapshot(catalog)
    report = rebuild_catalog(catalog, progress=False)
    assert report.written == [] and report.removed == []
    after = snapshot(catalog)
    def without_manifest(files):
        return {k: v for k, v in files.items() if k != "manifest.json"}

    assert without_manifest(after) == without_manifest(before)


def test_a_new_year_rewrites_only_that_year(own_catalog):
    store, catalog = own_catalog
    first_year = sorted(p.name for p in store.iterdir() if p.name.isdigit())[0]
    shutil.copytree(store / first_year, store / "2015")
    before = snapshot(catalog)
    report = rebuild_catalog(catalog, progress=False)
    assert report.written and all(key.startswith("aia/year=2015/") for key in report.written)
    assert len(report.written) == len([p for p in (store / "2015").iterdir() if p.is_dir()])
    after = snapshot(catalog)
    for name, value in before.items():
        if name != "manifest.json":
            assert after[name] == value
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{catalog}/aia/*/*/*.parquet', hive_partitioning=true)"
                       " WHERE year = 2015").fetchall()[0][0]
    assert count == sum(read_manifest(catalog)["partitions"][k]["rows"] for k in report.written)


def test_changed_attrs_rewrite_only_that_array(own_catalog):
    store, catalog = own_catalog
    year = sorted(p.name for p in store.iterdir() if p.name.isdigit())[0]
    path = store / year / "171A" / ".zattrs"
    attrs = json.loads(path.read_text())
    attrs["EXPTIME"][0] = 0.5
    path.write_text(json.dumps(attrs))
    report = rebuild_catalog(catalog, progress=False)
    assert report.written == [f"aia/year={year}/channel=171A"]
    assert catalog_rows(catalog, "aia", int(year), "171A")[0]["EXPTIME"] == 0.5


def test_full_rebuild_rewrites_everything(own_catalog):
    _, catalog = own_catalog
    report = rebuild_catalog(catalog, full=True, progress=False)
    assert report.written == sorted(read_manifest(catalog)["partitions"])


BAD_SOURCES = {
    "attrs not lists": (lambda attrs: attrs.update(EXPTIME=2.9), "key EXPTIME is a float, not a list"),
    "unparseable time": (lambda attrs: attrs["T_OBS"].__setitem__(3, "yesterday noon"),
                         "key T_OBS: frame 3: unparseable time string 'yesterday noon'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_attrs_fail_cleanly_and_change_nothing(own_catalog, case):
    store, catalog = own_catalog
    mutate, message = BAD_SOURCES[case]
    year = sorted(p.name for p in store.iterdir() if p.name.isdigit())[0]
    path = store / year / "193A" / ".zattrs"
    attrs = json.loads(path.read_text())
    mutate(attrs)
    path.write_text(json.dumps(attrs))
    before = snapshot(catalog)
    result = run_cli("rebuild", "--catalog", str(catalog), "--quiet")
    assert result.returncode == 1
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err and f"{year}/193A" in err and str(store) in err
    assert snapshot(catalog) == before


def test_truncated_zattrs_names_store_and_array(own_catalog):
    store, catalog = own_catalog
    year = sorted(p.name for p in store.iterdir() if p.name.isdigit())[0]
    path = store / year / "211A" / ".zattrs"
    path.write_bytes(path.read_bytes()[: 5000])
    before = snapshot(catalog)
    with pytest.raises(HarvestError, match=rf"array {year}/211A: \.zattrs is not valid JSON"):
        rebuild_catalog(catalog, progress=False)
    assert snapshot(catalog) == before


def test_missing_eve_time_array_is_named(sample_paths, tmp_path):
    store = tmp_path / "eve.zarr"
    shutil.copytree(sample_paths["eve"], store)
    shutil.rmtree(store / "MEGS-A" / "Time")
    (store / ".zmetadata").unlink(missing_ok=True)
    result = run_cli("build", "--eve", str(store), "--catalog", str(tmp_path / "c"), "--quiet")
    assert result.returncode == 1
    assert "group MEGS-A: no Time array" in result.stderr and str(store) in result.stderr
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_not_a_store_is_refused(tmp_path):
    result = run_cli("build", "--aia", str(tmp_path), "--catalog", str(tmp_path / "c"), "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: aia: {tmp_path} is not a Zarr v2 store: no .zgroup at its root"


def test_a_second_build_at_once_is_refused(own_catalog):
    store, catalog = own_catalog
    with open(catalog / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CatalogError, match="is being built by"):
            build_catalog(aia=str(store), catalog=catalog, progress=False)
    rebuild_catalog(catalog, progress=False)  # the lock is free again


KILLABLE_BUILD = """
import sys, time
import sdoml_sql.catalog_builder.build as build
import sdoml_sql.catalog_builder.partition_files as partition_files
real = partition_files.harvest_partition
def slow(*args):
    result = real(*args)
    print("harvested", args[1].key, flush=True)
    time.sleep(60)
    return result
partition_files.harvest_partition = slow
build.rebuild_catalog(sys.argv[1], full=True, progress=False, read_ahead=1)
"""


def test_a_killed_build_leaves_the_old_catalog_intact(own_catalog):
    _, catalog = own_catalog
    before = snapshot(catalog)
    process = subprocess.Popen([PY, "-c", KILLABLE_BUILD, str(catalog)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("harvested")  # one partition staged, build midway
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert snapshot(catalog) == before
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{catalog}/aia/*/*/*.parquet')").fetchall()[0][0]
    assert count == sum(p["rows"] for p in read_manifest(catalog)["partitions"].values())
    report = rebuild_catalog(catalog, progress=False)  # lock released, staging cleaned
    assert report.written == []
    assert not (catalog / ".staging").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([PY, "-m", "sdoml_sql.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def test_build_cli_prints_a_summary(sample_paths, tmp_path):
    started = time.perf_counter()
    result = run_cli("build", "--hmi", str(sample_paths["hmi"]), "--catalog", str(tmp_path / "c"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "partitions written" in result.stdout
    assert time.perf_counter() - started < 60
    manifest = read_manifest(tmp_path / "c")
    assert set(manifest["sources"]) == {"hmi"}
    assert all(p["instrument"] == "hmi" for p in manifest["partitions"].values())


# --- SDOMLv2a: EVE found by content, the variant of each source -------------------------------

def test_eve_layouts_are_found_by_content_and_others_named(sample_paths, v2a_sample_paths, tmp_path):
    # the v2 EVE group under another name is still found, by its Time array
    renamed = tmp_path / "renamed.zarr"
    shutil.copytree(sample_paths["eve"], renamed, ignore=shutil.ignore_patterns(".zmetadata"))
    (renamed / "MEGS-A").rename(renamed / "lines")
    report = build_catalog(eve=str(renamed), catalog=tmp_path / "c1", progress=False)
    assert report.written == ["eve/group=lines"]
    # the newer EVE Zarr (Lines/{TIME_ISO, …}, Spectra/) is neither layout: one line naming what it has
    newer = tmp_path / "newer.zarr"
    import zarr

    root = zarr.open_group(str(newer), mode="w", zarr_format=2)
    lines = root.create_group("Lines")
    for name in ("TIME_ISO", "WAVELENGTH", "IRRADIANCE"):
        lines.create_array(name, shape=(3,), dtype="<f4")
    root.create_group("Spectra")
    result = run_cli("build", "--eve", str(newer), "--catalog", str(tmp_path / "c2"), "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: store {newer}: group Lines: no Time array (3 arrays: IRRADIANCE, TIME_ISO, WAVELENGTH); expected a "
        "Time array beside the line arrays, at the root (SDOMLv2a EVE_legacy) or in a group (SDOML v2 MEGS-A)")
    assert not (tmp_path / "c2" / "manifest.json").exists()


def test_manifest_records_each_sources_variant(catalog_dir, v2a_catalog_dir):
    assert {name: entry["variant"] for name, entry in read_manifest(catalog_dir)["sources"].items()} == \
        {"aia": "v2", "hmi": "v2", "eve": "v2"}
    v2a = read_manifest(v2a_catalog_dir)["sources"]
    assert {name: entry["variant"] for name, entry in v2a.items()} == {"aia": "v2a", "hmi": "v2a", "eve": "v2a"}
    assert v2a["eve"]["variant_evidence"] == "EVE lines at the store's root (flat EVE_legacy)"
    assert v2a["aia"]["variant_evidence"] == "years past 2020: 2023"


def test_rebuild_swapping_v2_for_v2a_says_so_and_rewrites_what_changed(sample_paths, v2a_sample_paths, tmp_path):
    headers = shutil.ignore_patterns("[0-9]*.[0-9]*.[0-9]*")
    v2, v2a = tmp_path / "sdomlv2_hmi_small.zarr", tmp_path / "HMI.zarr"
    shutil.copytree(sample_paths["hmi"], v2, ignore=headers)
    shutil.copytree(v2a_sample_paths["hmi"], v2a, ignore=headers)
    shutil.rmtree(v2a / "2023")  # 2010 and 2020 only: the variant shows in HMI's frame order
    (v2a / ".zmetadata").unlink()
    catalog = tmp_path / "catalog"
    build_catalog(hmi=str(v2), catalog=catalog, progress=False)
    assert read_manifest(catalog)["sources"]["hmi"]["variant"] == "v2"
    result = run_cli("rebuild", "--catalog", str(catalog), "--source", f"hmi={v2a}", "--quiet")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: hmi: source is now v2a ({v2a}; HMI frames out of time order in 2010/Bx), was v2 ({v2}): "
                     "6 partitions rewritten, 3 removed, 0 unchanged; idx now counts frames of the v2a arrays"]
    manifest = read_manifest(catalog)
    assert manifest["sources"]["hmi"]["variant"] == "v2a" and manifest["sources"]["hmi"]["url"] == str(v2a)
    assert sorted(manifest["partitions"]) == [f"hmi/year={year}/channel={component}"
                                              for year in (2010, 2020) for component in ("Bx", "By", "Bz")]
    rows = catalog_rows(catalog, "hmi", 2010, "Bz")
    assert [r["T_OBS_STR"] for r in rows] == json.loads((v2a / "2010" / "Bz" / ".zattrs").read_text())["T_OBS"]
    again = run_cli("rebuild", "--catalog", str(catalog), "--quiet")  # same variant: no note, nothing rewritten
    assert "note:" not in again.stderr and "0 partitions written, 6 unchanged" in again.stdout
