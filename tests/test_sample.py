"""The sample stores must be structurally indistinguishable from the real SDOML v2 stores."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import warnings

import numcodecs
import numpy as np
import pytest
import zarr

from sdoml_sql.stores.sample import (
    AIA_CHANNELS,
    AIA_FLOAT_KEYS,
    AIA_INT_KEYS,
    AIA_NAN_STRING_KEYS,
    AIA_STR_KEYS,
    EVE_LINES,
    HMI_COMPONENTS,
    RAGGED_KEYS,
    write_sample,
)

BLOSC = {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": numcodecs.Blosc.BITSHUFFLE, "blocksize": 0}


def read_json(path: pathlib.Path):
    return json.loads(path.read_bytes())


def attrs_of(store: pathlib.Path, array_path: str) -> dict:
    return read_json(store / array_path / ".zattrs")


def arrays(store: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p.parent for p in store.rglob(".zarray"))


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.rstrip("Z"))


def parse_tai(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y.%m.%d_%H:%M:%S_TAI")


# --- structure -----------------------------------------------------------------------------

def test_layout_and_names(sample_paths):
    aia, hmi, eve = (sample_paths[k] for k in ("aia", "hmi", "eve"))
    assert sorted(p.name for p in aia.iterdir() if p.is_dir()) == ["2010", "2020"]
    for year in ("2010", "2020"):
        assert sorted(p.name for p in (aia / year).iterdir() if p.is_dir()) == sorted(AIA_CHANNELS)
    assert sorted(p.name for p in hmi.iterdir() if p.is_dir()) == ["2010", "2012"]
    for year in ("2010", "2012"):
        assert sorted(p.name for p in (hmi / year).iterdir() if p.is_dir()) == sorted(HMI_COMPONENTS)
    assert sorted(p.name for p in (eve / "MEGS-A").iterdir()) == sorted([*EVE_LINES, "Time", ".zgroup", ".zattrs"])
    assert len(EVE_LINES) == 39


def test_zarray_metadata_matches_the_real_stores(sample_paths):
    for name, chunk in (("aia", 15), ("hmi", 15)):  # the production scripts' chunks=(15, None, None)
        for array in arrays(sample_paths[name]):
            meta = read_json(array / ".zarray")
            assert meta["zarr_format"] == 2
            assert meta["dtype"] == "<f4" and meta["order"] == "C" and meta["filters"] is None
            assert meta["fill_value"] == 0.0 and meta["dimension_separator"] == "."
            assert meta["compressor"] == BLOSC
            assert meta["shape"][1:] == [512, 512] and meta["chunks"] == [chunk, 512, 512]
    hmi = sample_paths["hmi"]
    for year in ("2010", "2012"):
        shapes = {read_json(hmi / year / c / ".zarray")["shape"][0] for c in HMI_COMPONENTS}
        assert len(shapes) == 1 and shapes.pop() > 15  # identical shapes, at least two chunks
    time_meta = read_json(sample_paths["eve"] / "MEGS-A" / "Time" / ".zarray")
    assert time_meta["dtype"] == "<U23"
    assert read_json(sample_paths["eve"] / "MEGS-A" / "Fe XX" / ".zarray")["dtype"] == "<f4"


def test_groups_have_no_attributes_and_metadata_is_consolidated(sample_paths):
    for store in sample_paths.values():
        for zgroup in store.rglob(".zgroup"):
            zattrs = zgroup.parent / ".zattrs"
            assert not zattrs.exists() or read_json(zattrs) == {}
        consolidated = read_json(store / ".zmetadata")
        assert consolidated["zarr_consolidated_format"] == 1
        on_disk = {p.relative_to(store).as_posix() for p in store.rglob(".z*") if p.name != ".zmetadata"}
        assert set(consolidated["metadata"]) == on_disk
        group = zarr.open_consolidated(str(store), zarr_format=2)
        assert group.metadata.consolidated_metadata is not None


def test_store_opens_without_consolidated_metadata(sample_paths, tmp_path):
    import shutil

    copy = tmp_path / "aia.zarr"
    shutil.copytree(sample_paths["aia"], copy)
    (copy / ".zmetadata").unlink()
    group = zarr.open_group(str(copy), mode="r", zarr_format=2, use_consolidated=False)
    assert group["2010/171A"].shape == zarr.open_group(str(sample_paths["aia"]), mode="r")["2010/171A"].shape


# --- AIA headers ---------------------------------------------------------------------------

def test_aia_key_set_and_types(sample_paths):
    assert (len(AIA_STR_KEYS), len(AIA_INT_KEYS), len(AIA_FLOAT_KEYS)) == (47, 81, 47)
    kinds = {**dict.fromkeys(AIA_STR_KEYS, str), **dict.fromkeys(AIA_INT_KEYS, int),
             **dict.fromkeys(AIA_FLOAT_KEYS, float)}
    for year in ("2010", "2020"):
        for channel in AIA_CHANNELS:
            attrs = attrs_of(sample_paths["aia"], f"{year}/{channel}")
            n = read_json(sample_paths["aia"] / year / channel / ".zarray")["shape"][0]
            assert set(kinds) <= set(attrs)
            assert list(attrs) == sorted(attrs)  # zarr 2 wrote sorted keys
            for key, kind in kinds.items():
                values = attrs[key]
                assert len(values) == n, (year, channel, key)
                assert all(type(v) is kind for v in values if v is not None), (year, channel, key)
            extra = set(attrs) - set(kinds)
            assert extra == (set(RAGGED_KEYS) if year == "2020" else set())
            assert "HGLN_OBS" not in attrs and "BUNIT" not in attrs and "HAEX_OBS" not in attrs


def test_aia_trap_values(sample_paths):
    attrs = attrs_of(sample_paths["aia"], "2010/193A")
    for key in AIA_NAN_STRING_KEYS:
        assert set(attrs[key]) == {"nan"}
    assert set(attrs["NAXIS1"]) == {512.0} and set(attrs["NAXIS"]) == {2}
    assert set(attrs["PIXLUNIT"]) == {"DN/s"} and set(attrs["QUALITY"]) == {0}
    assert set(attrs["INSTRUME"]) == {"AIA_2"} and set(attrs["WAVE_STR"]) == {"193_THIN"}
    assert set(attrs["WAVELNTH"]) == {193} and set(attrs["TRECEPOC"]) == {"1977.01.01_00:00:00_TAI"}
    radius_px = np.array(attrs["RSUN_OBS"]) / np.array(attrs["CDELT1"])
    assert np.allclose(radius_px, 976 / 4.8, atol=0.01)
    assert np.allclose(attrs["CRPIX1"], 256.25, atol=0.5)
    assert np.allclose(attrs["DSUN_OBS"], 1.511e11, rtol=2e-3)
    assert np.all(np.array(attrs["DEG_COR"]) <= 1)
    cameras = {"131A": 1, "335A": 1, "193A": 2, "211A": 2, "171A": 3, "1600A": 3, "1700A": 3, "94A": 4, "304A": 4}
    for channel, camera in cameras.items():
        assert set(attrs_of(sample_paths["aia"], f"2010/{channel}")["INSTRUME"]) == {f"AIA_{camera}"}


def test_aia_time_formats(sample_paths):
    attrs = attrs_of(sample_paths["aia"], "2010/171A")
    for t_obs, date_obs, t_rec, packet in zip(attrs["T_OBS"], attrs["DATE-OBS"], attrs["T_REC"], attrs["ISPPKTIM"]):
        assert len(t_obs) == len("2010-08-27T15:00:08.07Z") and t_obs.endswith("Z")
        assert len(date_obs) == len("2010-08-27T15:00:06.62") and not date_obs.endswith("Z")
        assert len(t_rec) == len("2010-08-27T15:00:08Z") and t_rec.endswith("Z")
        assert packet.endswith("Z")
        exposure_start = parse_iso(t_obs) - parse_iso(date_obs)
        assert dt.timedelta(0) < exposure_start < dt.timedelta(seconds=2)
    later = attrs_of(sample_paths["aia"], "2020/171A")["T_OBS"]
    assert all(len(t.rstrip("Z")) == len("2020-01-01T00:00:09.123") for t in later)


def days_in_storage_order(t_obs: list[str]) -> list[str]:
    days = []
    for t in t_obs:
        if not days or days[-1] != t[:10]:
            days.append(t[:10])
    return days


def test_days_out_of_order_but_chronological_within_a_day(sample_paths):
    for year in ("2010", "2020"):
        for channel in AIA_CHANNELS:
            t_obs = attrs_of(sample_paths["aia"], f"{year}/{channel}")["T_OBS"]
            days = days_in_storage_order(t_obs)
            assert len(days) == len(set(days)), "each day is stored as one block"
            assert len(set(d for d in days if d.startswith(year))) >= 2
            assert days != sorted(days), (year, channel)
            for day in days:
                times = [parse_iso(t) for t in t_obs if t.startswith(day)]
                assert times == sorted(times)
            minutes = [parse_iso(t).minute % 6 for t in t_obs]
            assert set(minutes) == {0}  # 6-minute slots plus a per-channel offset in seconds


def test_channel_lengths_differ_and_one_crosses_a_chunk(sample_paths):
    lengths = {c: read_json(sample_paths["aia"] / "2010" / c / ".zarray")["shape"][0] for c in AIA_CHANNELS}
    assert len(set(lengths.values())) > 1
    assert lengths["171A"] > 120


def test_short_exposures_exist(sample_paths):
    for year in ("2010", "2020"):
        for channel in AIA_CHANNELS:
            exptime = np.array(attrs_of(sample_paths["aia"], f"{year}/{channel}")["EXPTIME"])
            assert (exptime < 2.0).sum() >= 1
            assert np.median(exptime) >= 2.0


def test_2020_quirks(sample_paths):
    aia = sample_paths["aia"]
    nulls = 0
    for channel in AIA_CHANNELS:
        attrs = attrs_of(aia, f"2020/{channel}")
        n = read_json(aia / "2020" / channel / ".zarray")["shape"][0]
        nulls += sum(v is None for values in attrs.values() for v in values)
        for key in RAGGED_KEYS:
            assert 0 < len(attrs[key]) < n
        assert any(t.startswith("2019-") for t in attrs["T_OBS"])
        assert any(not t.endswith("Z") for t in attrs["T_OBS"])
    assert nulls > 0
    assert not any(v is None for values in attrs_of(aia, "2010/171A").values() for v in values)
    frames = zarr.open_group(str(aia), mode="r", zarr_format=2)["2020/171A"][:]
    all_nan = [i for i in range(len(frames)) if np.isnan(frames[i]).all()]
    assert len(all_nan) == 1
    assert not np.isnan(zarr.open_group(str(aia), mode="r")["2010/171A"][:]).any()


# --- HMI headers ---------------------------------------------------------------------------

def test_hmi_keys(sample_paths):
    attrs = attrs_of(sample_paths["hmi"], "2010/Bz")
    for key in ("EXPTIME", "WAVEUNIT", "HISTORY", "BUNIT"):
        assert key not in attrs
    assert set(attrs["PIXLUNIT"]) == {"Gauss"} and set(attrs["NAXIS1"]) == {512.0}
    assert np.allclose(np.array(attrs["RSUN_OBS"]) / np.array(attrs["CDELT1"]), attrs["R_SUN"])
    n = read_json(sample_paths["hmi"] / "2010" / "Bz" / ".zarray")["shape"][0]
    assert all(len(v) == n for v in attrs.values())
    assert attrs_of(sample_paths["hmi"], "2010/Bx")["T_OBS"] == attrs["T_OBS"]


def test_hmi_times_are_tai_and_cross_the_leap_second(sample_paths):
    def offsets(year):
        attrs = attrs_of(sample_paths["hmi"], f"{year}/Bz")
        return attrs["T_OBS"], attrs["T_REC"], attrs["DATE-OBS"]

    t_obs, t_rec, date_obs = offsets("2010")
    for tai, utc in zip(t_obs, date_obs):
        assert (parse_tai(tai) - parse_iso(utc)).total_seconds() == 34
    t_obs, t_rec, date_obs = offsets("2012")
    leap_start = dt.datetime(2012, 7, 1, 0, 0, 34)
    inside = [i for i, t in enumerate(t_obs) if leap_start <= parse_tai(t) < leap_start + dt.timedelta(seconds=1)]
    assert len(inside) == 1 and date_obs[inside[0]].startswith("2012-06-30T23:59:60")
    for i, (tai, utc) in enumerate(zip(t_obs, date_obs)):
        if i == inside[0]:
            continue
        expected = 35 if parse_tai(tai) >= leap_start else 34
        assert (parse_tai(tai) - parse_iso(utc)).total_seconds() == expected
    assert any(parse_tai(t) < leap_start for t in t_obs) and any(parse_tai(t) > leap_start for t in t_obs)
    recs = [parse_tai(t) for t in t_rec]
    assert all(b - a == dt.timedelta(minutes=12) for a, b in zip(recs, recs[1:]))  # time ordered


# --- EVE -----------------------------------------------------------------------------------

def test_eve(sample_paths):
    eve = zarr.open_group(str(sample_paths["eve"]), mode="r", zarr_format=2)["MEGS-A"]
    times = eve["Time"][:]
    assert times.dtype == np.dtype("<U23") and len(times[0]) == 23
    parsed = np.array(times, dtype="datetime64[ms]")
    assert np.all(np.diff(parsed) >= np.timedelta64(59, "s"))
    assert np.any(np.diff(parsed) > np.timedelta64(90, "s"))  # gaps
    for name in EVE_LINES:
        attrs = eve[name].attrs.asdict()
        assert set(attrs) == {"ion", "logT", "wavelength"}
        assert attrs["ion"] == name.split("_")[0]
        assert attrs["logT"].endswith(" MK") and attrs["wavelength"].endswith(" nm")
        float(attrs["logT"].split()[0]), float(attrs["wavelength"].split()[0])
        assert eve[name].shape == times.shape
        assert (eve[name][:] < 0).any()
    assert (eve["Fe XVI_2"][:] < 0).mean() > 0.5
    aia_days = {t[:10] for t in attrs_of(sample_paths["aia"], "2010/171A")["T_OBS"]}
    assert aia_days <= {str(d) for d in parsed.astype("datetime64[D]")}


# --- images ---------------------------------------------------------------------------------

def test_images_look_like_the_sun(sample_paths):
    aia = zarr.open_group(str(sample_paths["aia"]), mode="r", zarr_format=2)
    frame = aia["2010/171A"][0]
    yy, xx = np.mgrid[:512, :512]
    r = np.hypot(xx - 255.5, yy - 255.5) / (976 / 4.8)
    assert np.median(frame[r < 0.9]) > 3 * np.median(frame[r > 1.3])
    assert np.median(frame[(r > 0.95) & (r < 1)]) > np.median(frame[r < 0.5])  # EUV limb brightening
    uv = aia["2010/1700A"][0]
    assert np.median(uv[(r > 0.95) & (r < 1)]) < np.median(uv[r < 0.5])  # UV limb darkening
    hmi = zarr.open_group(str(sample_paths["hmi"]), mode="r", zarr_format=2)
    bz = hmi["2010/Bz"][0]
    assert np.all(bz[r >= 1] == 0)
    assert bz.max() > 500 and bz.min() < -500
    assert aia["2010/171A"][121].std() > 0  # the second chunk is written


def test_chunk_frames_sets_the_layout_from_python_and_the_command_line(tmp_path):
    from click.testing import CliRunner

    from sdoml_sql.cli import main

    result = CliRunner().invoke(main, ["sample", str(tmp_path / "cli"), "--frames", "130", "--channels", "171A",
                                       "--hmi-frames", "20", "--eve-samples", "50", "--chunk-frames", "120",
                                       "--years", "2010", "--hmi-years", "2010"])
    assert result.exit_code == 0, result.output
    paths = {name: tmp_path / "cli" / store for name, store in
             (("aia", "sdomlv2_small.zarr"), ("hmi", "sdomlv2_hmi_small.zarr"))}
    assert read_json(paths["aia"] / "2010" / "171A" / ".zarray")["chunks"] == [120, 512, 512]
    assert read_json(paths["hmi"] / "2010" / "Bz" / ".zarray")["chunks"] == [120, 512, 512]
    assert sorted(p.name for p in (paths["aia"] / "2010" / "171A").glob("*.0.0")) == ["0.0.0", "1.0.0"]
    with pytest.raises(ValueError, match="chunk_frames=0"):
        write_sample(tmp_path / "none", chunk_frames=0, images=False, eve=False)
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "bad"), "--chunk-frames", "0"])
    assert result.exit_code != 0 and "--chunk-frames" in result.output


def test_headers_only_writes_no_chunks(tmp_path):
    paths = write_sample(tmp_path, aia_frames=130, hmi_frames=20, eve_samples=50, images=False,
                         channels=("171A", "94A"))
    assert not [p for p in paths["aia"].rglob("*") if p.name[0].isdigit() and p.is_file()]
    assert read_json(paths["aia"] / "2010" / "171A" / ".zarray")["shape"] == [130, 512, 512]
    assert read_json(paths["aia"] / "2010" / "94A" / ".zarray")["shape"] == [129, 512, 512]
    assert zarr.open_group(str(paths["aia"]), mode="r")["2010/171A"][5].max() == 0


def test_big_headers_only_sample_is_quick(tmp_path):
    import time

    start = time.perf_counter()
    paths = write_sample(tmp_path, aia_frames=20000, hmi_frames=30, eve_samples=100, images=False,
                         channels=("171A", "193A"), years=(2010,))
    assert time.perf_counter() - start < 30
    attrs = attrs_of(paths["aia"], "2010/193A")
    assert len(attrs["T_OBS"]) == 19999
    assert len(set(days_in_storage_order(attrs["T_OBS"]))) >= 90


def test_same_seed_same_store(tmp_path):
    options = dict(aia_frames=6, hmi_frames=16, eve_samples=30, channels=("171A",), hmi_years=(2012,))
    first = write_sample(tmp_path / "a", seed=3, **options)
    second = write_sample(tmp_path / "b", seed=3, **options)
    other = write_sample(tmp_path / "c", seed=4, **options)
    for name in first:
        files = sorted(p.relative_to(first[name]) for p in first[name].rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(second[name]) for p in second[name].rglob("*") if p.is_file())
        for file in files:
            assert (first[name] / file).read_bytes() == (second[name] / file).read_bytes(), file
    assert (first["aia"] / "2010/171A/0.0.0").read_bytes() != (other["aia"] / "2010/171A/0.0.0").read_bytes()


def tree_bytes(directory: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_sample_that_fails_part_way_leaves_the_old_stores_whole(tmp_path, monkeypatch):
    import sdoml_sql.stores.sample as sample

    options = {"aia_frames": 3, "hmi_frames": 2, "eve_samples": 5, "channels": "171A", "years": 2010,
               "hmi_years": 2010, "images": False}
    paths = write_sample(tmp_path, **options)
    paths["eve"].rename(tmp_path / "eve-elsewhere")
    paths["eve"].symlink_to(tmp_path / "eve-elsewhere")  # a store may be a link: it is replaced, not followed
    before = tree_bytes(tmp_path)

    def disk_full(*args, **kwargs):  # AIA and HMI are complete by then, in the staging directory
        raise OSError("No space left on device")

    monkeypatch.setattr(sample, "_write_eve", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_sample(tmp_path, seed=4, overwrite=True, **options)
    assert tree_bytes(tmp_path) == before and not list(tmp_path.glob(".sample-*"))
    monkeypatch.undo()
    write_sample(tmp_path, seed=4, overwrite=True, **options)
    assert paths["eve"].is_dir() and not paths["eve"].is_symlink() and tree_bytes(tmp_path) != before
    assert (tmp_path / "eve-elsewhere" / ".zmetadata").is_file()  # the link's target was not written into


def test_unknown_channel_is_refused(tmp_path):
    with pytest.raises(ValueError, match="4500A"):
        write_sample(tmp_path, channels=("4500A",))


# --- SunPy, the way the seed notebook builds maps --------------------------------------------

def notebook_map(store: pathlib.Path, array_path: str, index: int, waveunit: str | None = None):
    import sunpy.map

    array = zarr.open_group(str(store), mode="r", zarr_format=2)[array_path]
    attrs = array.attrs.asdict()
    header = {k: v[index] for k, v in attrs.items() if len(v) == array.shape[0]}
    if waveunit:
        header["WAVEUNIT"] = waveunit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sunpy.map.Map((array[index], header)), header


@pytest.mark.parametrize(("store", "array_path", "waveunit"),
                         [("aia", "2010/171A", None), ("aia", "2020/193A", None), ("hmi", "2010/Bz", "nm")])
def test_sunpy_map_from_sample_headers(sample_paths, store, array_path, waveunit):
    import astropy.units as u

    the_map, header = notebook_map(sample_paths[store], array_path, 5, waveunit)
    observer = the_map.observer_coordinate
    assert observer.radius.to_value(u.m) == pytest.approx(header["DSUN_OBS"], rel=1e-9)
    from sunpy.coordinates import HeliographicCarrington

    carrington = observer.transform_to(HeliographicCarrington(observer="self", obstime=observer.obstime))
    assert carrington.lon.to_value(u.deg) == pytest.approx(header["CRLN_OBS"], abs=1e-3)
    assert carrington.lat.to_value(u.deg) == pytest.approx(header["CRLT_OBS"], abs=1e-3)
    assert (the_map.rsun_obs / the_map.scale[0]).to_value(u.pix) == pytest.approx(203.3, abs=0.1)
    assert the_map.data.shape == (512, 512)


def test_look_pngs(sample_paths):
    """Save an AIA 171 and an HMI Bz frame as SunPy plots (for a human to look at)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path("/tmp/sample_look")
    out.mkdir(exist_ok=True)
    for store, array_path, name, options in (("aia", "2010/171A", "aia171.png", {}),
                                             ("hmi", "2010/Bz", "hmi_bz.png",
                                              {"vmin": -1000, "vmax": 1000, "cmap": "hmimag"})):
        the_map, _ = notebook_map(sample_paths[store], array_path, 3, "nm" if store == "hmi" else None)
        figure = plt.figure()
        the_map.plot(**options)
        figure.savefig(out / name)
        plt.close(figure)
        assert (out / name).stat().st_size > 10_000


# --- SDOMLv2a --------------------------------------------------------------------------------

def test_v2a_layout_and_quirks(v2a_sample_paths):
    aia, hmi, eve = (v2a_sample_paths[k] for k in ("aia", "hmi", "eve"))
    assert (aia.name, hmi.name, eve.name) == ("AIA.zarr", "HMI.zarr", "EVE_legacy.zarr")
    for store in (aia, hmi):
        assert sorted(p.name for p in store.iterdir() if p.is_dir()) == ["2010", "2020", "2023"]
    # EVE flat: the 39 lines and Time at the root, no group
    assert sorted(p.name for p in eve.iterdir() if p.is_dir()) == sorted([*EVE_LINES, "Time"])
    assert read_json(eve / "Fe XX_2" / ".zattrs") == {"ion": "Fe XX", "logT": "6.8 MK", "wavelength": "13.285 nm"}
    # AIA T_OBS changes format inside 2020: '…09.37Z' before, '…09.372' (no Z) after and in 2023
    t_obs_2020 = attrs_of(aia, "2020/171A")["T_OBS"]
    old = [t for t in t_obs_2020 if t.endswith("Z")]
    new = [t for t in t_obs_2020 if not t.endswith("Z")]
    assert old and new and max(parse_iso(t) for t in old) < min(parse_iso(t) for t in new)
    assert all(len(t.split(".")[-1]) == 3 for t in old) and all(len(t.split(".")[-1]) == 3 for t in new)
    assert all(not t.endswith("Z") and len(t.split(".")[-1]) == 3 for t in attrs_of(aia, "2023/171A")["T_OBS"])
    # AIA days out of order; HMI scrambled even within a day, the same order for Bx, By, Bz
    times = [parse_tai(t) for t in attrs_of(hmi, "2010/Bz")["T_OBS"]]
    first_day = [t for t in times if t.date() == min(times).date()]
    assert len(first_day) > 1 and first_day != sorted(first_day)
    assert attrs_of(hmi, "2010/Bx")["T_OBS"] == attrs_of(hmi, "2010/Bz")["T_OBS"]


def test_v2a_aia_2010_equals_v2_and_the_cli_writes_either_layout(tmp_path):
    from click.testing import CliRunner

    from sdoml_sql.cli import main

    written = {}
    for layout in ("v2", "v2a"):
        result = CliRunner().invoke(main, ["sample", str(tmp_path / layout), "--layout", layout, "--frames", "6",
                                           "--channels", "171A", "--years", "2010,2021", "--hmi-frames", "4",
                                           "--hmi-years", "aia", "--eve-samples", "50", "--no-images"])
        assert result.exit_code == 0, result.output
        written[layout] = dict(line.split("\t") for line in result.output.splitlines())
    v2, v2a = ({k: pathlib.Path(v) for k, v in written[layout].items()} for layout in ("v2", "v2a"))
    assert v2a["aia"].name == "AIA.zarr" and (v2a["eve"] / "Time" / ".zarray").exists()
    assert (v2["eve"] / "MEGS-A" / "Time" / ".zarray").exists()
    # SDOMLv2a's 2010 is SDOML v2's: same frames in the same order; later years differ in T_OBS format
    assert attrs_of(v2a["aia"], "2010/171A") == attrs_of(v2["aia"], "2010/171A")
    assert attrs_of(v2a["aia"], "2021/171A")["T_OBS"] != attrs_of(v2["aia"], "2021/171A")["T_OBS"]
    assert sorted(attrs_of(v2a["hmi"], "2010/Bz")["T_OBS"]) == attrs_of(v2["hmi"], "2010/Bz")["T_OBS"]
    assert attrs_of(v2a["hmi"], "2010/Bz")["T_OBS"] != attrs_of(v2["hmi"], "2010/Bz")["T_OBS"]
