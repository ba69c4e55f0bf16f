"""Sample AIA, HMI and EVE stores shaped like the published SDOML v2 ones.

The real stores cannot be reached from a test machine, so every test runs on stores written
here.  They follow ``docs/`` and the data contract (``sdoml-v2-format.md``): Zarr format 2,
the real array names, dtypes, chunking and compressor, one list per FITS keyword with one
entry per frame, the real key set and value types, and the real quirks (days stored out of
order, channels of one year with different lengths, ``'nan'`` strings, TAI times in HMI
across a leap second, the 2020 group's nulls, ragged lists, all-NaN frame and 2019 times),
plus one frame of each other defect kind in known places (:data:`SEEDED_DEFECTS`).

Header values start from the real AIA and HMI headers that SunPy ships as test data and are
scaled to 512 pixels; the observer (``CRLN_OBS``, ``CRLT_OBS``, ``DSUN_OBS``) comes from
SunPy's ephemeris.  Images are a synthetic Sun of the header's radius with active regions
fixed in Carrington longitude, so they rotate with the headers' observer.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence

import numcodecs
import numpy as np
import orjson

from sdoml_sql.exceptions import InputError, StoreError, items, unknown_names, years_list
from sdoml_sql.files import move_into_place
from sdoml_sql.stores.sample_headers import (
    AIA_CHANNELS,
    AIA_FLOAT_KEYS,
    AIA_INT_KEYS,
    AIA_NAN_STRING_KEYS,
    AIA_STR_KEYS,
    AIA_WAVELENGTH_CODES,
    CHANNEL_INFO,
    CHANNEL_LOOK,
    HMI_COMPONENTS,
    HMI_EXTRA,
    IMAGE_SIZE,
    NULL_KEYS,
    RAGGED_KEYS,
    SEEDED_DEFECTS,
    SOLAR_RADIUS_PX,
    aia_headers,
    hmi_headers,
    seed_header_defects,
    seeded_defects,
)
from sdoml_sql.stores.sample_images import (
    DARK_FACTOR,
    ActiveRegion,
    AiaPainter,
    HmiPainter,
    active_regions,
    seed_pixel_defects,
)
from sdoml_sql.stores.sample_times import (
    DAY_MS,
    HMI_CADENCE_MS,
    LEAP_SECONDS,
    PREVIOUS_YEAR_FRAMES,
    SLOT_MS,
    SLOTS_PER_DAY,
    V2A_T_OBS_CHANGE_YEAR,
    aia_slots,
    day_plan,
    epoch_ms,
    eve_times,
    hmi_times,
    iso_times,
    scrambled_order,
    sdo_observer,
    v2a_format_change,
    v2a_t_obs,
    with_previous_year_frames,
)
from sdoml_sql.stores.source import PRESETS

#: ``name: (ion, logT, wavelength)`` of the EVE lines, in the store's order.
EVE_LINE_INFO = {
    "C III": ("C III", "4.8", "97.702"), "Fe IX": ("Fe IX", "5.85", "17.107"),
    "Fe VIII": ("Fe VIII", "5.6", "13.124"), "Fe X": ("Fe X", "6.05", "17.724"),
    "Fe XI": ("Fe XI", "6.15", "18.044"), "Fe XII": ("Fe XII", "6.2", "19.512"),
    "Fe XIII": ("Fe XIII", "6.25", "20.204"), "Fe XIV": ("Fe XIV", "6.3", "21.132"),
    "Fe XIX": ("Fe XIX", "6.95", "10.847"), "Fe XV": ("Fe XV", "6.35", "28.415"),
    "Fe XVI": ("Fe XVI", "6.45", "33.541"), "Fe XVIII": ("Fe XVIII", "6.85", "9.393"),
    "Fe XVI_2": ("Fe XVI", "6.45", "36.076"), "Fe XX": ("Fe XX", "7.0", "12.182"),
    "Fe XX_2": ("Fe XX", "6.8", "13.285"), "Fe XX_3": ("Fe XX", "7.0", "13.841"),
    "H I": ("H I", "4.4", "102.572"), "H I_2": ("H I", "4.4", "97.254"),
    "H I_3": ("H I", "4.4", "93.781"), "He I": ("He I", "4.2", "58.433"),
    "He II": ("He II", "4.7", "30.378"), "He II_2": ("He II", "4.7", "25.632"),
    "He I_2": ("He I", "4.2", "53.703"), "Mg IX": ("Mg IX", "5.95", "36.807"),
    "Mg X": ("Mg X", "6.05", "62.494"), "Mg X_2": ("Mg X", "6.05", "60.976"),
    "Ne VII": ("Ne VII", "5.7", "46.522"), "Ne VIII": ("Ne VIII", "5.8", "77.041"),
    "O II": ("O II", "4.4", "83.446"), "O III": ("O III", "4.9", "52.576"),
    "O III_2": ("O III", "4.9", "59.961"), "O II_2": ("O II", "4.4", "71.850"),
    "O IV": ("O IV", "5.2", "55.437"), "O IV_2": ("O IV", "5.2", "79.020"),
    "O V": ("O V", "5.4", "62.973"), "O VI": ("O VI", "5.5", "103.191"),
    "S XIV": ("S XIV", "6.3", "44.570"), "Si XII": ("Si XII", "6.3", "49.937"),
    "Si XII_2": ("Si XII", "6.3", "52.070"),
}
EVE_LINES = tuple(EVE_LINE_INFO)
#: The group of SDOML v2's EVE store (SDOMLv2a's EVE_legacy has the lines at its root).
EVE_GROUP = "MEGS-A"


#: Frames per chunk of the AIA and HMI arrays, as the SDOML production scripts write them
#: (``chunks=(15, None, None)``); ``chunk_frames`` / ``--chunk-frames`` writes other layouts.
CHUNK_FRAMES = 15
COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)

#: Default AIA frames per channel and year; in the first year 171A gets
#: ``DEFAULT_LONG_CHANNEL_FRAMES`` so that it crosses a 120-frame chunk boundary.
DEFAULT_CHANNEL_FRAMES = 8
DEFAULT_LONG_CHANNEL = "171A"
DEFAULT_LONG_CHANNEL_FRAMES = 125
DEFAULT_HMI_FRAMES = 16
DEFAULT_EVE_SAMPLES = 3000


#: The published layouts a sample can take: SDOML v2 (``sdomlv2_small.zarr`` …) and SDOMLv2a
#: (``AIA.zarr``, ``HMI.zarr``, ``EVE_legacy.zarr``), with the store names of their presets.
LAYOUTS = {
    "v2": {"aia": PRESETS["aia-small"], "hmi": PRESETS["hmi-small"], "eve": PRESETS["eve"]},
    "v2a": {"aia": PRESETS["aia-v2a"], "hmi": PRESETS["hmi-v2a"], "eve": PRESETS["eve-v2a"]},
}
#: Default AIA years and HMI years of each layout (v2a: past 2020, HMI on the AIA days).
DEFAULT_YEARS = {"v2": (2010, 2020), "v2a": (2010, 2020, 2023)}
DEFAULT_HMI_YEARS = {"v2": (2010, 2012), "v2a": (2010, 2020, 2023)}


def write_sample(
    directory: str | pathlib.Path,
    *,
    aia_frames: int | Mapping[str, int] | None = None,
    hmi_frames: int = DEFAULT_HMI_FRAMES,
    eve_samples: int = DEFAULT_EVE_SAMPLES,
    years: Sequence[int] | None = None,
    hmi_years: Sequence[int] | None = None,
    channels: Sequence[str] = AIA_CHANNELS,
    seed: int = 0,
    images: bool = True,
    eve: bool = True,
    progress: bool | None = None,
    chunk_frames: int = CHUNK_FRAMES,
    layout: str = "v2",
    overwrite: bool = False,
) -> dict[str, pathlib.Path]:
    """Write sample AIA, HMI and EVE stores into ``directory`` and return their paths.

    ``aia_frames`` is the number of frames per channel and year (an int, or a mapping
    channel → count, missing channels getting 8; by default 8, except 125 for 171A of the
    first year so that it crosses a 120-frame chunk boundary).  Each channel drops 0–2 frames
    so the channels of a year differ in length.  ``hmi_frames`` is per component and year,
    ``eve_samples`` the EVE length (about one per minute, starting on the first AIA day).
    When ``years`` has more than one year, the last carries the 2020 quirks and the
    :data:`SEEDED_DEFECTS`.  ``hmi_years`` containing 2012 (or 2015) gets frames across that
    year's leap second.  ``images=False`` writes metadata and headers only (all
    chunks left unwritten, reading as 0).  The same ``seed`` gives byte-identical stores.
    ``progress`` shows a tqdm bar on stderr (default: only for big image writes).
    ``chunk_frames`` is the frames per chunk of the AIA and HMI arrays (15, as in the real
    stores; 120 gives the layout the sample had before).

    ``layout="v2a"`` writes SDOMLv2a instead (``AIA.zarr``, ``HMI.zarr``, ``EVE_legacy.zarr``;
    default years 2010, 2020, 2023 for AIA and HMI, HMI on the AIA days): the same AIA frames
    for the same years and seed, the AIA ``T_OBS`` format changing inside 2020 (``…09.37Z``
    before the year's middle sample day, ``…09.372`` from it on and in later years), HMI
    frames in a scrambled order (even within a day), and EVE flat: lines and ``Time`` at the
    store's root.  Years default to :data:`DEFAULT_YEARS` and :data:`DEFAULT_HMI_YEARS` of
    the layout.  Returns ``{"aia": path, "hmi": path, "eve": path}`` (names: :data:`LAYOUTS`).

    A store that is already there (a catalog may point to it) is refused with a
    :class:`StoreError` unless ``overwrite=True``; the stores are written under a temporary
    name and renamed in when complete.  ``channels`` and ``years`` take one value or a list
    (``"171A"``, ``2020``).
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    years = DEFAULT_YEARS[layout] if years is None else years
    hmi_years = DEFAULT_HMI_YEARS[layout] if hmi_years is None else hmi_years
    directory = pathlib.Path(directory)
    channels = tuple(items(channels, "channels"))
    unknown = unknown_names("channel", channels, AIA_CHANNELS, "AIA has")
    if unknown:
        raise InputError(unknown)
    years = tuple(years_list(years))
    hmi_years = tuple(years_list(hmi_years, "hmi_years"))
    if int(chunk_frames) < 1:
        raise InputError(f"chunk_frames={chunk_frames}: give a positive number of frames per chunk")
    store_names = LAYOUTS[layout]
    finals = {name: directory / store for name, store in store_names.items() if eve or name != "eve"}
    existing = [str(path) for path in finals.values() if path.exists() and (not path.is_dir() or any(path.iterdir()))]
    if existing and not overwrite:
        raise StoreError(f"{existing[0]} exists: a catalog may point to it; give overwrite=True (sdoml-sql sample "
                         "--overwrite) to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".sample-", dir=directory))
    try:
        _write_stores(staging, store_names, aia_frames, hmi_frames, eve_samples, years, hmi_years, channels, seed,
                      images, eve, progress, chunk_frames, layout == "v2a")
        for name, final in finals.items():  # each store whole or not at all
            move_into_place(staging / store_names[name], final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return finals


def _write_stores(directory, store_names, aia_frames, hmi_frames, eve_samples, years, hmi_years, channels, seed,
                  images, eve, progress, chunk_frames, v2a: bool) -> None:
    counts = {year: _channel_counts(aia_frames, channels, first_year=year == years[0]) for year in years}
    paths = {name: directory / store for name, store in store_names.items()}
    n_aia = sum(sum(year_counts.values()) for year_counts in counts.values())
    if len(years) > 1:  # the quirky year's channels also get the previous year's frames
        n_aia += PREVIOUS_YEAR_FRAMES * len(channels)
    n_images = (n_aia + 3 * hmi_frames * len(hmi_years)) if images else 0
    bar = _progress_bar(n_images, progress)
    aia_days, flares = _write_aia(paths["aia"], counts, years, seed, images, bar, int(chunk_frames), v2a)
    _write_hmi(paths["hmi"], hmi_frames, hmi_years, aia_days, seed, images, bar, int(chunk_frames), v2a)
    if eve:
        first_day = aia_days[years[0]][0] if years else np.datetime64("2010-05-01", "D")
        _write_eve(paths["eve"], eve_samples, first_day, seed, flares.get(years[0]) if years else None,
                   flat=v2a)
    if bar is not None:
        bar.close()


def _channel_counts(aia_frames, channels, first_year: bool) -> dict[str, int]:
    if aia_frames is None:
        long = DEFAULT_LONG_CHANNEL_FRAMES if first_year else DEFAULT_CHANNEL_FRAMES
        base = {c: long if c == DEFAULT_LONG_CHANNEL else DEFAULT_CHANNEL_FRAMES for c in channels}
    elif isinstance(aia_frames, Mapping):
        base = {c: int(aia_frames.get(c, DEFAULT_CHANNEL_FRAMES)) for c in channels}
    else:
        base = {c: int(aia_frames) for c in channels}
    # Channels of one year differ by a frame or two, as in the real store (6134, 6135, 6136).
    return {c: max(1, n - (i % 3 if n > 3 else 0)) for i, (c, n) in enumerate(base.items())}


def _progress_bar(n_images: int, progress: bool | None):
    if progress is False or (progress is None and n_images < 2000):
        return None
    from tqdm import tqdm

    return tqdm(total=n_images, unit="frame", desc="sample images", file=sys.stderr)


# --- writing -------------------------------------------------------------------------------

def _create_array(group, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str = "<f4"):
    return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, compressor=COMPRESSOR,
                              fill_value=0.0 if dtype == "<f4" else "", attributes={})


def _write_attributes(store_path: pathlib.Path, array_path: str, attributes: dict) -> None:
    """Write an array's ``.zattrs`` in one go (orjson: zarr's indented ``json.dumps`` is slow)."""
    (store_path / array_path / ".zattrs").write_bytes(orjson.dumps(attributes, option=orjson.OPT_INDENT_2))


def _write_frames(array_dir: pathlib.Path, count: int, chunk: int, draw, bar) -> None:
    """Write ``count`` frames one chunk at a time; ``draw(i)`` returns frame ``i``.

    Chunks are encoded here exactly as zarr would (the edge chunk padded with the fill
    value, key ``"<n>.0.0"``): zarr's own write path takes twice as long for these.
    """
    for number, start in enumerate(range(0, count, chunk)):
        stop = min(count, start + chunk)
        block = np.zeros((chunk, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        for i in range(start, stop):
            block[i - start] = draw(i)
        (array_dir / f"{number}.0.0").write_bytes(COMPRESSOR.encode(block))
        if bar is not None:
            bar.update(stop - start)


def _open_new_group(path: pathlib.Path):
    import zarr

    return zarr.open_group(str(path), mode="w", zarr_format=2)


def _write_aia(path, counts, years, seed, images, bar, chunk_frames,
               v2a=False) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Write the AIA store; return each year's days (datetime64[D], chronological) and flare time (UTC ms)."""
    root = _open_new_group(path)
    days_by_year, flares = {}, {}
    for position, year in enumerate(years):
        quirky = len(years) > 1 and position == len(years) - 1
        rng = np.random.default_rng([seed, year, 0])
        n_slots = max(counts[year].values())
        days = day_plan(year, n_slots, quirky)
        days_by_year[year] = days
        slots = aia_slots(days, n_slots, rng)
        group = root.create_group(str(year))
        first = sdo_observer(np.array([epoch_ms(days[0])]))["CRLN_OBS"][0]
        regions = active_regions(seed, year, first)
        flare_ms = flares[year] = int(slots[len(slots) // 3])
        format_change = v2a_format_change(year, days) if v2a else None
        for channel, count in counts[year].items():
            _write_aia_channel(path, group, channel, year, slots, count, quirky, regions,
                               flare_ms, seed, images, bar, chunk_frames, format_change)
    _consolidate(path)
    return days_by_year, flares


def _write_aia_channel(path, group, channel, year, slots, count, quirky, regions, flare_ms,
                       seed, images, bar, chunk_frames, format_change: int | None = None) -> None:
    rng = np.random.default_rng([seed, year, AIA_CHANNELS.index(channel), 2])
    keep = np.sort(rng.choice(len(slots), size=min(count, len(slots)), replace=False))
    offset_s = CHANNEL_INFO[channel][3]
    t_obs = slots[keep] + int(offset_s * 1000) + rng.integers(-150, 150, len(keep))
    if quirky:
        t_obs = with_previous_year_frames(t_obs, year, offset_s)
    short = np.abs(t_obs - flare_ms) <= 12 * 60_000
    if not short.any():
        short[np.argmin(np.abs(t_obs - flare_ms))] = True
    defects = seeded_defects(channel, t_obs, short, year) if quirky else {}
    if "duplicate_time" in defects:
        at = defects["duplicate_time"]
        t_obs[at] = t_obs[at - 1]
    attributes = aia_headers(channel, t_obs, short, year, quirky=quirky, seed=seed)
    if format_change is not None:
        attributes["T_OBS"] = v2a_t_obs(t_obs, format_change)
    seed_header_defects(attributes, channel, defects)
    _create_array(group, channel, (len(t_obs), IMAGE_SIZE, IMAGE_SIZE), (chunk_frames, IMAGE_SIZE, IMAGE_SIZE))
    _write_attributes(path, f"{year}/{channel}", attributes)
    if not images:
        return
    painter = AiaPainter(channel, regions, seed)
    crln, crlt = attributes["CRLN_OBS"], attributes["CRLT_OBS"]
    flare = np.where(short, 8.0, 1.0)
    nan_frame = min(3, len(t_obs) - 1) if quirky and channel == "171A" else -1

    def draw(i):
        if i == nan_frame:  # SDOMLv2#1: all-NaN frames in 2020
            return np.full((IMAGE_SIZE, IMAGE_SIZE), np.nan, np.float32)
        return seed_pixel_defects(painter.frame(crln[i], crlt[i], flare[i], i), i, defects)

    _write_frames(path / f"{year}" / channel, len(t_obs), chunk_frames, draw, bar)


def _write_hmi(path, n_frames, years, aia_days_by_year, seed, images, bar, chunk_frames, v2a=False) -> None:
    root = _open_new_group(path)
    for year in years:
        rng = np.random.default_rng([seed, year, 6])
        t_rec, t_obs = hmi_times(year, n_frames, aia_days_by_year.get(year), rng)
        if v2a:
            order = scrambled_order(t_obs, np.random.default_rng([seed, year, 8]))
            t_rec, t_obs = t_rec[order], t_obs[order]
        group = root.create_group(str(year))
        first = sdo_observer(t_obs[:1] - 34_000)["CRLN_OBS"][0]
        regions = active_regions(seed, year, first)
        for component in HMI_COMPONENTS:
            attributes = hmi_headers(component, t_obs, t_rec, seed=seed)
            _create_array(group, component, (n_frames, IMAGE_SIZE, IMAGE_SIZE),
                                  (chunk_frames, IMAGE_SIZE, IMAGE_SIZE))
            _write_attributes(path, f"{year}/{component}", attributes)
            if images:
                painter = HmiPainter(component, regions, seed)
                crln, crlt = attributes["CRLN_OBS"], attributes["CRLT_OBS"]
                _write_frames(path / f"{year}" / component, n_frames, chunk_frames,
                              lambda i, painter=painter, crln=crln, crlt=crlt: painter.frame(crln[i], crlt[i], i),
                              bar)
    _consolidate(path)


def _write_eve(path, n, first_day, seed, flare_ms: int | None = None, flat: bool = False) -> None:
    """EVE lines with a flare at the AIA flare's time (when EVE covers it) so the two agree;
    in a ``MEGS-A`` group (SDOML v2) or, ``flat``, at the store's root (SDOMLv2a's EVE_legacy)."""
    rng = np.random.default_rng([seed, 7])
    times = eve_times(n, first_day, rng)
    root = _open_new_group(path)
    group = root if flat else root.create_group(EVE_GROUP)
    prefix = "" if flat else EVE_GROUP + "/"
    chunks = (min(n, 2**17),)
    minutes = (times - times[0]) / 60_000
    in_range = flare_ms is not None and times[0] <= flare_ms <= times[-1]
    peak = (flare_ms - times[0]) / 60_000 if in_range else minutes[n // 3]
    flare = np.exp(-0.5 * ((minutes - peak) / 20) ** 2)
    for number, (name, (ion, log_t, wavelength)) in enumerate(EVE_LINE_INFO.items()):
        base = 10 ** rng.uniform(-6, -4)
        hot = float(log_t) > 6.6
        values = base * (1 + 0.03 * np.sin(2 * np.pi * minutes / 1440 + number)
                         + (20.0 if hot else 0.5) * flare + 0.01 * rng.standard_normal(n))
        values[rng.random(n) < 0.01] = -1.0  # missing samples are negative
        if name == "Fe XVI_2":  # mostly unusable in the real data
            values[rng.random(n) < 0.9] = -1.0
        array = _create_array(group, name, (n,), chunks)
        array[:] = values.astype(np.float32)
        _write_attributes(path, f"{prefix}{name}",
                          {"ion": ion, "logT": f"{log_t} MK", "wavelength": f"{wavelength} nm"})
    time_array = _create_array(group, "Time", (n,), chunks, dtype="<U23")
    time_array[:] = np.char.replace(iso_times(times, 3), "T", " ")
    _consolidate(path)


def _consolidate(path: pathlib.Path) -> None:
    """Write ``.zmetadata`` as zarr 2 did: every metadata object keyed by its path.

    Each file's JSON text is copied in as it is, one file at a time, so a store with
    hundreds of MB of attributes is consolidated without holding them all in memory (zarr's
    own ``consolidate_metadata`` parses and re-encodes everything).
    """
    files = [f for f in sorted(path.rglob(".z*")) if f.name in (".zgroup", ".zarray", ".zattrs")]
    with open(path / ".zmetadata", "wb") as out:
        out.write(b'{\n  "metadata": {')
        for number, file in enumerate(files):
            out.write(b"," if number else b"")
            out.write(b"\n    " + orjson.dumps(file.relative_to(path).as_posix()) + b": ")
            out.write(file.read_bytes())
        out.write(b'\n  },\n  "zarr_consolidated_format": 1\n}')


__all__ = [
    "AIA_CHANNELS", "AIA_FLOAT_KEYS", "AIA_INT_KEYS", "AIA_NAN_STRING_KEYS", "AIA_STR_KEYS", "AIA_WAVELENGTH_CODES",
    "ActiveRegion", "AiaPainter", "CHANNEL_INFO", "CHANNEL_LOOK", "CHUNK_FRAMES", "COMPRESSOR", "DARK_FACTOR",
    "DAY_MS", "DEFAULT_CHANNEL_FRAMES", "DEFAULT_EVE_SAMPLES", "DEFAULT_HMI_FRAMES", "DEFAULT_HMI_YEARS",
    "DEFAULT_LONG_CHANNEL", "DEFAULT_LONG_CHANNEL_FRAMES", "DEFAULT_YEARS", "EVE_GROUP", "EVE_LINES",
    "EVE_LINE_INFO", "HMI_CADENCE_MS", "HMI_COMPONENTS", "HMI_EXTRA", "HmiPainter", "IMAGE_SIZE", "LAYOUTS",
    "LEAP_SECONDS", "NULL_KEYS", "PREVIOUS_YEAR_FRAMES", "RAGGED_KEYS", "SEEDED_DEFECTS", "SLOTS_PER_DAY",
    "SLOT_MS", "SOLAR_RADIUS_PX", "V2A_T_OBS_CHANGE_YEAR", "aia_headers", "hmi_headers", "scrambled_order",
    "seeded_defects", "v2a_t_obs", "write_sample",
]
