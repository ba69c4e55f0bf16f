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

import math
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numcodecs
import numpy as np
import orjson

from sdoml_sql.exceptions import InputError, StoreError, items, unknown_names, years_list
from sdoml_sql.stores.source import PRESETS

AIA_CHANNELS = ("94A", "131A", "171A", "193A", "211A", "304A", "335A", "1600A", "1700A")
HMI_COMPONENTS = ("Bx", "By", "Bz")

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

# The AIA key set of the real store, by value type (the data contract's lists).
AIA_STR_KEYS = tuple("""ACS_CGT ACS_ECLP ACS_MODE ACS_SAFE ACS_SUNP AECMODE AISTATE ASD_REC CHECKSUM
    COMMENT CTYPE1 CTYPE2 CUNIT1 CUNIT2 DATASUM DATE DATE-OBS DETECTOR FLAT_REC GCIEC_X GCIEC_Y
    GCIEC_Z HCIEC_X HCIEC_Y HCIEC_Z HISTORY IMG_TYPE INSTRUME ISPPKTIM ISPPKTVN ISPSNAME MPO_REC
    ORB_REC ORIGIN OSCNMEAN OSCNRMS PIXLUNIT RSUN_LF TELESCOP TRECEPOC T_OBS T_REC WAVEUNIT
    WAVE_STR X0_LF XTENSION Y0_LF""".split())
AIA_INT_KEYS = tuple("""AECDELAY AECTYPE AGT1SVY AGT1SVZ AGT2SVY AGT2SVZ AGT3SVY AGT3SVZ AGT4SVY
    AGT4SVZ AIAECENF AIAECTI AIAGP1 AIAGP2 AIAGP3 AIAGP4 AIAGP5 AIAGP6 AIAGP7 AIAGP8 AIAGP9
    AIAGP10 AIAHFSN AIASEN AIAWVLEN AICFGDL1 AICFGDL2 AICFGDL3 AICFGDL4 AIFCPS AIFDBID AIFILTYP
    AIFOENFL AIFRMLID AIFTSID AIFTSWTH AIFWEN AIHIS192 AIHIS348 AIHIS604 AIHIS860 AIHISMXB
    AIMGFSN AIMGOTS AIMGOTSS AIMGSHCE AIMGSHEN AIMGTYP AIVNMST ASQFSN ASQHDR ASQTNUM BITPIX BLANK
    CAMERA CAR_ROT DATAMAX DATAMEDN DATAMIN DATAVALS FID FSN GCOUNT MISSVALS NAXIS PCOUNT QUALITY
    QUALLEV0 RECNUM ROI_LLX1 ROI_LLX2 ROI_LLY1 ROI_LLY2 ROI_NAX1 ROI_NAX2 ROI_NAY1 ROI_NAY2
    ROI_NWIN ROI_SUM TOTVALS WAVELNTH""".split())
AIA_FLOAT_KEYS = tuple("""AIMSHCBC AIMSHCBE AIMSHCTC AIMSHCTE AIMSHOBC AIMSHOBE AIMSHOTC AIMSHOTE
    BSCALE BZERO CDELT1 CDELT2 CRLN_OBS CRLT_OBS CROTA2 CRPIX1 CRPIX2 CRVAL1 CRVAL2 DATAKURT
    DATAMEAN DATARMS DATASKEW DEG_COR DSUN_OBS DSUN_REF EXPSDEV EXPTIME IMSCL_MP INST_ROT INT_TIME
    LVL_NUM NAXIS1 NAXIS2 OBS_VN OBS_VR OBS_VW PERCENTD RSUN_OBS RSUN_REF R_SUN SAT_ROT SAT_Y0
    SAT_Z0 TRECSTEP X0_MP Y0_MP""".split())
AIA_NAN_STRING_KEYS = ("GCIEC_X", "GCIEC_Y", "GCIEC_Z", "HCIEC_X", "HCIEC_Y", "HCIEC_Z",
                       "OSCNMEAN", "OSCNRMS", "RSUN_LF", "X0_LF", "Y0_LF")
#: Keys of the quirky (last) AIA year whose lists are shorter than the frame count.
RAGGED_KEYS = ("DRMS_ID", "HEADSUM", "LONGSTRN", "PRIMARYK")
#: Keys of the quirky year holding some JSON nulls.
NULL_KEYS = ("DATAKURT", "DATASKEW", "AIMGOTSS")

#: Frames per chunk of the AIA and HMI arrays, as the SDOML production scripts write them
#: (``chunks=(15, None, None)``); ``chunk_frames`` / ``--chunk-frames`` writes other layouts.
CHUNK_FRAMES = 15
IMAGE_SIZE = 512
#: SDOML scales every image so the solar radius is 976/4.8 pixels (CDELT1 = 4.8·RSUN_OBS/976).
SOLAR_RADIUS_PX = 976 / 4.8
COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)

#: Default AIA frames per channel and year; in the first year 171A gets
#: ``DEFAULT_LONG_CHANNEL_FRAMES`` so that it crosses a 120-frame chunk boundary.
DEFAULT_CHANNEL_FRAMES = 8
DEFAULT_LONG_CHANNEL = "171A"
DEFAULT_LONG_CHANNEL_FRAMES = 125
DEFAULT_HMI_FRAMES = 16
DEFAULT_EVE_SAMPLES = 3000

SLOT_MS = 6 * 60_000
SLOTS_PER_DAY = 240
DAY_MS = 86_400_000
HMI_CADENCE_MS = 12 * 60_000
#: (UTC instant of a leap second's end, TAI − UTC from then on), 2009–2017.
LEAP_SECONDS = (("2009-01-01", 34), ("2012-07-01", 35), ("2015-07-01", 36), ("2017-01-01", 37))

CHANNEL_INFO = {  # wavelength, camera, WAVE_STR, T_OBS offset in the 6-min slot (s), nominal EXPTIME
    "94A": (94, 4, "94_THIN", 2.12, 2.901), "131A": (131, 1, "131_THIN", 9.62, 2.901),
    "171A": (171, 3, "171_THIN", 9.35, 2.000), "193A": (193, 2, "193_THIN", 6.84, 2.000),
    "211A": (211, 2, "211_THIN", 11.62, 2.901), "304A": (304, 4, "304_THIN", 5.13, 2.901),
    "335A": (335, 1, "335_THIN", 3.62, 2.901), "1600A": (1600, 3, "1600", 14.13, 2.901),
    "1700A": (1700, 3, "1700", 6.71, 2.901),
}
AIA_WAVELENGTH_CODES = {"94A": 9, "131A": 1, "171A": 7, "193A": 4, "211A": 5, "304A": 3,
                        "335A": 8, "1600A": 11, "1700A": 12}
# Appearance: quiet-Sun DN/s at disk centre, active-region gain, limb brightening (EUV, >0)
# or darkening (UV, <0), off-disk intensity at the limb and its scale height in radii,
# yearly degradation rate of DEG_COR.
CHANNEL_LOOK = {
    "94A": (1.5, 25.0, 0.5, 0.6, 0.10, 0.01), "131A": (6.0, 12.0, 0.4, 0.5, 0.08, 0.03),
    "171A": (250.0, 5.0, 0.5, 0.8, 0.10, 0.06), "193A": (350.0, 7.0, 0.6, 0.7, 0.12, 0.04),
    "211A": (90.0, 9.0, 0.6, 0.7, 0.12, 0.06), "304A": (60.0, 4.0, 0.3, 0.6, 0.02, 0.15),
    "335A": (4.0, 12.0, 0.5, 0.6, 0.12, 0.12), "1600A": (80.0, 3.0, -0.5, 0.05, 0.004, 0.05),
    "1700A": (1200.0, 1.5, -0.6, 0.02, 0.003, 0.03),
}


#: The published layouts a sample can take: SDOML v2 (``sdomlv2_small.zarr`` …) and SDOMLv2a
#: (``AIA.zarr``, ``HMI.zarr``, ``EVE_legacy.zarr``), with the store names of their presets.
LAYOUTS = {
    "v2": {"aia": PRESETS["aia-small"], "hmi": PRESETS["hmi-small"], "eve": PRESETS["eve"]},
    "v2a": {"aia": PRESETS["aia-v2a"], "hmi": PRESETS["hmi-v2a"], "eve": PRESETS["eve-v2a"]},
}
#: Default AIA years and HMI years of each layout (v2a: past 2020, HMI on the AIA days).
DEFAULT_YEARS = {"v2": (2010, 2020), "v2a": (2010, 2020, 2023)}
DEFAULT_HMI_YEARS = {"v2": (2010, 2012), "v2a": (2010, 2020, 2023)}
#: The year inside which SDOMLv2a's AIA ``T_OBS`` changes from ``…08.07Z`` to ``…08.072``.
V2A_T_OBS_CHANGE_YEAR = 2020


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
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            os.replace(staging / store_names[name], final)
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


# --- times ---------------------------------------------------------------------------------

def _year_start(year: int, quirky: bool) -> np.datetime64:
    return np.datetime64(f"{year}-01-01" if quirky else f"{year}-08-27", "D")


def _day_plan(year: int, n_slots: int, quirky: bool) -> np.ndarray:
    """Consecutive days (datetime64[D]) holding ``n_slots`` 6-minute slots, inside ``year``."""
    days_in_year = 366 if year % 4 == 0 else 365  # valid for 1901-2099
    if n_slots > days_in_year * SLOTS_PER_DAY:
        raise ValueError(f"{n_slots} frames do not fit in {year} at one per 6 minutes")
    n_days = min(days_in_year, max(2, math.ceil(n_slots / 216)))
    last_start = np.datetime64(f"{year}-12-31", "D") - np.timedelta64(n_days - 1, "D")
    start = min(_year_start(year, quirky), last_start)
    return start + _days(n_days)


def _aia_slots(days: np.ndarray, n_slots: int, rng: np.random.Generator) -> np.ndarray:
    """Slot start times (int64 ms) in storage order: whole days permuted, each day in order."""
    per_day = np.full(len(days), n_slots // len(days))
    per_day[: n_slots % len(days)] += 1
    order = rng.permutation(len(days))
    if len(days) > 1 and np.all(order == np.arange(len(days))):
        order = order[::-1]
    blocks = []
    for d in order:
        count = int(per_day[d])
        span = min(SLOTS_PER_DAY, math.ceil(count * 1.08) + 1)  # a few gaps in each day
        slots = np.sort(rng.choice(span, size=count, replace=False))
        blocks.append(_ms(days[d]) + slots * SLOT_MS)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int64)


def _days(n: int) -> np.ndarray:
    """0, 1, … n-1 days (``timedelta64[D]``: an int added to a date has numpy's deprecated generic unit)."""
    return np.arange(n).astype("timedelta64[D]")


def _ms(value) -> np.int64:
    return np.datetime64(value, "ms").astype(np.int64)


def _iso(t_ms: np.ndarray, decimals: int) -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SS[.ff]`` strings of UTC times in ms (rounded to ``decimals``)."""
    t = np.asarray(t_ms, np.int64)
    if decimals == 0:
        return np.datetime_as_string(((t + 500) // 1000 * 1000).astype("datetime64[ms]"), unit="s")
    step = 10 ** (3 - decimals)
    text = np.datetime_as_string(((t + step // 2) // step * step).astype("datetime64[ms]"), unit="ms")
    return text.astype(f"<U{20 + decimals}") if decimals < 3 else text


def _tai_minus_utc(t_utc_ms: np.ndarray) -> np.ndarray:
    edges = np.array([_ms(day) for day, _ in LEAP_SECONDS])
    offsets = np.array([offset for _, offset in LEAP_SECONDS])
    return offsets[np.clip(np.searchsorted(edges, t_utc_ms, side="right") - 1, 0, None)]


def _tai_to_utc_iso(t_tai_ms: np.ndarray, decimals: int) -> list[str]:
    """UTC ISO strings of TAI times (ms), with ``23:59:60.x`` for times inside a leap second."""
    t_tai_ms = np.asarray(t_tai_ms, np.int64)
    offsets = np.full(len(t_tai_ms), LEAP_SECONDS[0][1], np.int64)
    inside = []
    for day, offset in LEAP_SECONDS[1:]:
        leap_start = _ms(day) + 1000 * (offset - 1)  # TAI when UTC reads 23:59:60
        offsets[t_tai_ms >= leap_start + 1000] = offset
        inside += [(i, day, leap_start) for i in
                   np.flatnonzero((t_tai_ms >= leap_start) & (t_tai_ms < leap_start + 1000)).tolist()]
    text = _iso(t_tai_ms - 1000 * offsets, decimals).tolist()
    for i, day, leap_start in inside:
        previous_day = str(np.datetime64(day, "D") - np.timedelta64(1, "D"))
        second = 60 + (t_tai_ms[i] - leap_start) / 1000
        text[i] = f"{previous_day}T23:59:{second:0{3 + decimals if decimals else 2}.{decimals}f}"
    return text


def _tai_string(t_tai_ms: np.ndarray) -> list[str]:
    """JSOC TAI strings ``2010.08.28_00:00:05_TAI`` of TAI times in ms."""
    text = np.datetime_as_string((t_tai_ms // 1000 * 1000).astype("datetime64[ms]"), unit="s")
    return [s.replace("-", ".").replace("T", "_") + "_TAI" for s in text.tolist()]


# --- ephemeris -----------------------------------------------------------------------------

@lru_cache(maxsize=32)
def _daily_ephemeris(first_day: str, n_days: int):
    """Earth's L0, B0 (deg), distance (m) and Carrington rotation at 00:00 of each day."""
    from astropy.time import Time
    from sunpy.coordinates import sun

    days = np.datetime64(first_day, "D") + _days(n_days)
    times = Time(days.astype("datetime64[ms]"), scale="utc")
    l0 = np.degrees(np.unwrap(np.radians(sun.L0(times).deg)))
    return (_ms(days[0]) + DAY_MS * np.arange(n_days), l0, sun.B0(times).deg,
            sun.earth_distance(times).to_value("m"), sun.carrington_rotation_number(times))


def _observer(t_ms: np.ndarray) -> dict[str, np.ndarray]:
    """SDO's Carrington longitude/latitude, distance and velocities at the given UTC times."""
    first = np.datetime64(int(t_ms.min()), "ms").astype("datetime64[D]")
    n_days = int((t_ms.max() - _ms(first)) // DAY_MS) + 2
    grid, l0, b0, distance, rotation = _daily_ephemeris(str(first), n_days)
    orbit = 2 * np.pi * (t_ms % 86_164_091) / 86_164_091  # geosynchronous orbit, one sidereal day
    return {
        "CRLN_OBS": np.interp(t_ms, grid, l0) % 360.0,
        "CRLT_OBS": np.interp(t_ms, grid, b0),
        "DSUN_OBS": np.interp(t_ms, grid, distance) + 3.5e7 * np.cos(orbit),
        "CAR_ROT": np.floor(np.interp(t_ms, grid, rotation)).astype(np.int64),
        "OBS_VR": 3075.0 * np.sin(orbit) + 10.0,
        "OBS_VW": 29850.0 + 310.0 * np.cos(orbit),
        "OBS_VN": -3100.0 * np.cos(orbit + 0.4),
    }


# --- AIA headers ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _aia_template() -> dict[str, Any]:
    """The 175 AIA keys with the values of the AIA 171 level-1 header SunPy ships."""
    header = _sunpy_header("aia_171_level1.fits")
    defaults = {"BSCALE": 1.0, "BZERO": 0.0, "CHECKSUM": "", "DATASUM": "", "DEG_COR": 1.0,
                "GCOUNT": 1, "PCOUNT": 0, "XTENSION": "IMAGE", "HISTORY": "",
                **{key: "nan" for key in AIA_NAN_STRING_KEYS}}
    template = {}
    for keys, kind in ((AIA_STR_KEYS, str), (AIA_INT_KEYS, int), (AIA_FLOAT_KEYS, float)):
        for key in keys:
            value = header.get(key, defaults.get(key))
            template[key] = kind(value).strip() if kind is str else kind(value)
    template["COMMENT"] = " ".join(str(c) for c in header["COMMENT"])
    template["PIXLUNIT"] = "DN/s"
    return template


@lru_cache(maxsize=2)
def _sunpy_header(name: str) -> dict[str, Any]:
    import warnings

    from astropy.io import fits
    from sunpy.data.test import get_test_filepath

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.getheader(get_test_filepath(name))
        return {key: header[key] for key in header if key not in ("", "COMMENT", "HISTORY")} | {
            "COMMENT": list(header.get("COMMENT", []))}


def _random_strings(rng: np.random.Generator, n: int, length: int, alphabet: str) -> list[str]:
    letters = np.array(list(alphabet), dtype="<U1")
    chars = letters[rng.integers(0, len(letters), size=(n, length))]
    return chars.view(f"<U{length}").ravel().tolist()


def aia_headers(channel: str, t_obs_ms: np.ndarray, short: np.ndarray, year: int, *,
                quirky: bool, seed: int) -> dict[str, list]:
    """Per-frame header lists (key → list) for AIA frames observed at ``t_obs_ms`` (UTC ms).

    ``short`` marks frames with a short (automatic exposure control) exposure.  Keys and
    types are the real store's; ``quirky`` adds the 2020 group's nulls and ragged keys.
    """
    rng = np.random.default_rng([seed, year, AIA_CHANNELS.index(channel), 1])
    n = len(t_obs_ms)
    wavelength, camera, wave_str, _, exposure = CHANNEL_INFO[channel]
    *_, degradation_rate = CHANNEL_LOOK[channel]
    columns: dict[str, Any] = {key: [value] * n for key, value in _aia_template().items()}
    observer = _observer(t_obs_ms)
    exptime = np.where(short, rng.uniform(0.3, 1.6, n), exposure + 1.5e-4 + np.abs(rng.normal(0, 5e-5, n)))
    rsun_obs = np.degrees(np.arcsin(696_000_000.0 / observer["DSUN_OBS"])) * 3600
    cdelt = rsun_obs / SOLAR_RADIUS_PX
    years_in = (t_obs_ms - _ms("2010-05-01")) / (365.25 * DAY_MS)
    data_mean = CHANNEL_LOOK[channel][0] * 2.5 * rng.lognormal(0, 0.05, n) * np.where(short, 3.0, 1.0)
    fsn = 20_000_000 + ((t_obs_ms - _ms("2010-05-01")) // 1500).astype(np.int64) + camera
    decimals = 2 if year <= 2010 else 3
    t_obs = _iso(t_obs_ms, decimals).tolist()
    without_z = rng.random(n) < (0.1 if year > 2010 else 0.0)  # a trailing Z is sometimes missing
    if year > 2010 and n:
        without_z[n // 2] = True
    day_ms = t_obs_ms // DAY_MS * DAY_MS
    tai_seconds = (t_obs_ms - _ms("1958-01-01")) // 1000 + _tai_minus_utc(t_obs_ms)
    columns.update({
        "T_OBS": [t if bare else t + "Z" for t, bare in zip(t_obs, without_z.tolist())],
        "DATE-OBS": _iso(t_obs_ms - (exptime * 500).astype(np.int64), 2).tolist(),
        "T_REC": [t + "Z" for t in _iso(t_obs_ms // 1000 * 1000, 0).tolist()],
        "ISPPKTIM": [t + "Z" for t in _iso(t_obs_ms - 2840, 2).tolist()],
        "DATE": _iso(t_obs_ms + 3 * DAY_MS + rng.integers(0, 6 * 3600_000, n), 0).tolist(),
        "ORB_REC": [f"sdo.fds_orbit_vectors[{d.replace('-', '.')}_00:00:00_UTC]"
                    for d in np.datetime_as_string(day_ms.astype("datetime64[ms]"), unit="D").tolist()],
        "WAVELNTH": [wavelength] * n, "WAVE_STR": [wave_str] * n, "CAMERA": [camera] * n,
        "INSTRUME": [f"AIA_{camera}"] * n, "AIAWVLEN": [AIA_WAVELENGTH_CODES[channel]] * n,
        "EXPTIME": np.round(exptime, 6).tolist(),
        "INT_TIME": np.round(exptime + 0.2734, 6).tolist(),
        "EXPSDEV": np.round(np.abs(rng.normal(1.5e-4, 5e-5, n)), 6).tolist(),
        "DEG_COR": np.round(np.minimum(1.0, np.exp(-degradation_rate * years_in)), 6).tolist(),
        "RSUN_OBS": np.round(rsun_obs, 6).tolist(), "R_SUN": np.round(rsun_obs / cdelt, 6).tolist(),
        "CDELT1": np.round(cdelt, 6).tolist(), "CDELT2": np.round(cdelt, 6).tolist(),
        "CRPIX1": np.round(256.25 + rng.normal(0, 0.08, n), 4).tolist(),
        "CRPIX2": np.round(256.5 + rng.normal(0, 0.08, n), 4).tolist(),
        "CRVAL1": np.round(rng.normal(0, 1.5, n), 6).tolist(),
        "CRVAL2": np.round(rng.normal(0, 1.5, n), 6).tolist(),
        "CROTA2": np.round(0.0134 + rng.normal(0, 0.003, n), 6).tolist(),
        "NAXIS1": [float(IMAGE_SIZE)] * n, "NAXIS2": [float(IMAGE_SIZE)] * n,
        "FSN": fsn.tolist(), "ASQFSN": fsn.tolist(), "AIAHFSN": (fsn - 8).tolist(),
        "RECNUM": (fsn * 3 + 9_981_867).tolist(),
        "AIMGOTS": tai_seconds.tolist(), "AIMGOTSS": rng.integers(0, 65536, n).tolist(),
        "DATAMEAN": np.round(data_mean, 2).tolist(),
        "DATAMEDN": np.round(data_mean * 0.69).astype(np.int64).tolist(),
        "DATAMAX": np.round(data_mean * rng.uniform(30, 60, n)).astype(np.int64).tolist(),
        "DATAMIN": rng.integers(-8, 1, n).tolist(),
        "DATARMS": np.round(data_mean * rng.uniform(1.1, 1.4, n), 2).tolist(),
        "DATASKEW": np.round(rng.uniform(2.5, 4.5, n), 2).tolist(),
        "DATAKURT": np.round(rng.uniform(15, 30, n), 2).tolist(),
        "CHECKSUM": _random_strings(rng, n, 16, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
        "DATASUM": _random_strings(rng, n, 10, "0123456789"),
    })
    for key in ("CRLN_OBS", "CRLT_OBS", "OBS_VR", "OBS_VW", "OBS_VN"):
        columns[key] = np.round(observer[key], 6).tolist()
    columns["DSUN_OBS"] = np.round(observer["DSUN_OBS"], 2).tolist()
    columns["CAR_ROT"] = observer["CAR_ROT"].tolist()
    if quirky:
        _add_quirks(columns, rng, t_obs_ms, channel)
    return dict(sorted(columns.items()))  # zarr 2 wrote .zattrs with sorted keys


def _add_quirks(columns: dict[str, list], rng: np.random.Generator, t_obs_ms, channel) -> None:
    """The 2020 group's extras: JSON nulls in a few keys and ragged, shorter lists."""
    n = len(t_obs_ms)
    for key in NULL_KEYS:
        for i in rng.choice(n, size=max(1, n // 50), replace=False).tolist():
            columns[key][i] = None
    n_ragged = min(n - 1, max(2, n // 360)) if n > 1 else 0
    picks = np.sort(rng.choice(n, size=n_ragged, replace=False)) if n_ragged else np.zeros(0, int)
    t_rec = [columns["T_REC"][i] for i in picks.tolist()]
    wavelength = CHANNEL_INFO[channel][0]
    columns["DRMS_ID"] = [f"aia.lev1_euv_12s:{t}:{wavelength}:image_lev1" for t in t_rec]
    columns["HEADSUM"] = _random_strings(rng, n_ragged, 16, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    columns["LONGSTRN"] = ["OGIP 1.0"] * n_ragged
    columns["PRIMARYK"] = ["T_REC, WAVELNTH"] * n_ragged


# --- HMI headers ---------------------------------------------------------------------------

# hmi.B_720s keys beyond those of the HMI header SunPy ships (vector-field inversion and
# disambiguation metadata).
HMI_EXTRA = {
    "INVCODEV": "vfisv FD10 2011 Apr. 24", "INVDOCU": "Borrero et al. 2011, Centeno et al. 2014",
    "INVITERA": 200, "INVLLMDA": 1.0, "INVCONTI": 1, "INVFLPRF": "", "INVPHMAP": "",
    "INVNPRCS": 16777216, "INVNCNVG": 12504117, "INVBLAVE": 63.527, "INVBBAVE": 48.125,
    "AMBCODEV": "disambig_v3 2013 Dec 06", "AMBDOCU": "Leka et al. 2009", "AMBGMTRY": 1,
    "AMBPATCH": 0, "AMBWEAK": 2, "AMBNEROD": 1, "AMBNGROW": 5, "AMBNPAD": 200, "AMBNAP": 10,
    "AMBNTX": 30, "AMBNTY": 30, "AMBBTHR0": 200.0, "AMBBTHR1": 400.0, "AMBSEED": 4,
    "AMBNEQ": 100, "AMBLMBDA": 1.0, "AMBTFCT0": 2.0, "AMBTFCTR": 0.98, "DATE_S": "", "DATE_B": "",
    "QUAL_S": 0, "QUALLEV1": 0, "CALVER64": 8466,
}


@lru_cache(maxsize=1)
def _hmi_template() -> dict[str, Any]:
    """HMI keys: the SunPy HMI header minus BUNIT/WAVEUNIT/HISTORY, plus hmi.B_720s extras."""
    header = dict(_sunpy_header("resampled_hmi.fits"))
    for key in ("SIMPLE", "BUNIT", "WAVEUNIT", "HISTORY", "CONTINUE", "EXPTIME"):
        header.pop(key, None)
    header["COMMENT"] = " ".join(str(c) for c in header["COMMENT"])
    header.update({"CONTENT": "MAGNETIC FIELD", "INSTRUME": "HMI_SIDE1", "CAMERA": 1,
                   "CADENCE": 720.0, "TRECSTEP": 720.0, "WAVELNTH": 6173.0, "PIXLUNIT": "Gauss",
                   "BLANK": int(header["BLANK"]), "RSUN_REF": 696000000.0,
                   "DSUN_REF": 149597870691.0, "TELESCOP": "SDO/HMI"})
    return {k: v.strip() if isinstance(v, str) else v for k, v in (header | HMI_EXTRA).items()}


def hmi_headers(component: str, t_tai_ms: np.ndarray, t_rec_tai_ms: np.ndarray, *, seed: int) -> dict[str, list]:
    """Per-frame HMI header lists for frames observed at TAI times ``t_tai_ms`` (ms)."""
    rng = np.random.default_rng([seed, HMI_COMPONENTS.index(component), int(t_tai_ms[0]) % 2**31, 2])
    n = len(t_tai_ms)
    utc_ms = t_tai_ms - 1000 * _tai_minus_utc(t_tai_ms - 37_000)
    observer = _observer(utc_ms)
    rsun_obs = np.degrees(np.arcsin(696_000_000.0 / observer["DSUN_OBS"])) * 3600
    cdelt = rsun_obs / SOLAR_RADIUS_PX
    columns: dict[str, Any] = {key: [value] * n for key, value in _hmi_template().items()}
    columns.update({
        "T_OBS": _tai_string(t_tai_ms), "T_REC": _tai_string(t_rec_tai_ms),
        "DATE-OBS": _tai_to_utc_iso(t_tai_ms, 2),
        "DATE": _iso(utc_ms + 2 * DAY_MS + rng.integers(0, 6 * 3600_000, n), 0).tolist(),
        "NAXIS1": [float(IMAGE_SIZE)] * n, "NAXIS2": [float(IMAGE_SIZE)] * n,
        "RSUN_OBS": np.round(rsun_obs, 6).tolist(), "R_SUN": np.round(rsun_obs / cdelt, 6).tolist(),
        "CDELT1": np.round(cdelt, 6).tolist(), "CDELT2": np.round(cdelt, 6).tolist(),
        "CRPIX1": np.round(256.5 + rng.normal(0, 0.05, n), 4).tolist(),
        "CRPIX2": np.round(256.5 + rng.normal(0, 0.05, n), 4).tolist(),
        "CRVAL1": [0.0] * n, "CRVAL2": [0.0] * n,
        # The sample's images are north up, so CROTA2 is ~0 (JSOC full-disk HMI has ~180).
        "CROTA2": np.round(rng.normal(0, 0.01, n), 6).tolist(),
        "DSUN_OBS": np.round(observer["DSUN_OBS"], 2).tolist(),
        "CAR_ROT": observer["CAR_ROT"].tolist(),
        "RECNUM": (5_000_000 + (t_tai_ms - _ms("2010-05-01")) // HMI_CADENCE_MS).tolist(),
        "DATAMEAN": np.round(rng.normal(0.5, 0.3, n), 6).tolist(),
        "DATARMS": np.round(rng.uniform(40, 120, n), 6).tolist(),
        "DATAMIN": np.round(rng.uniform(-3000, -1500, n), 6).tolist(),
        "DATAMAX": np.round(rng.uniform(1500, 3000, n), 6).tolist(),
    })
    for key in ("CRLN_OBS", "CRLT_OBS", "OBS_VR", "OBS_VW", "OBS_VN"):
        columns[key] = np.round(observer[key], 6).tolist()
    return dict(sorted(columns.items()))


# --- images --------------------------------------------------------------------------------

@dataclass
class ActiveRegion:
    """A region fixed in Carrington coordinates (deg) with a size in pixels and a strength."""

    longitude: float
    latitude: float
    size: float
    strength: float


def _active_regions(seed: int, year: int, central_longitude: float) -> list[ActiveRegion]:
    rng = np.random.default_rng([seed, year, 3])
    regions = []
    for _ in range(4):
        latitude = rng.choice([-1, 1]) * rng.uniform(8, 30)
        regions.append(ActiveRegion(longitude=central_longitude + rng.uniform(-70, 35),
                                    latitude=latitude, size=rng.uniform(7, 13),
                                    strength=rng.uniform(0.5, 1.0)))
    return regions


def _project(region: ActiveRegion, crln: float, crlt: float):
    """Pixel offsets (x west, y north) of a region seen from the observer, and its μ."""
    lon, lat, b0 = np.radians(region.longitude - crln), np.radians(region.latitude), np.radians(crlt)
    x = math.cos(lat) * math.sin(lon)
    y = math.sin(lat) * math.cos(b0) - math.cos(lat) * math.sin(b0) * math.cos(lon)
    mu = math.sin(lat) * math.sin(b0) + math.cos(lat) * math.cos(b0) * math.cos(lon)
    return x * SOLAR_RADIUS_PX, y * SOLAR_RADIUS_PX, mu


def _blob(image: np.ndarray, cx: float, cy: float, sigma: float, amplitude: float) -> None:
    """Add a Gaussian blob in place, touching only a small window around it."""
    half = int(3.5 * sigma) + 1
    x0, x1 = max(0, int(cx) - half), min(IMAGE_SIZE, int(cx) + half + 1)
    y0, y1 = max(0, int(cy) - half), min(IMAGE_SIZE, int(cy) + half + 1)
    if x0 >= x1 or y0 >= y1:
        return
    ex = np.exp(-0.5 * ((np.arange(x0, x1) - cx) / sigma) ** 2, dtype=np.float32)
    ey = np.exp(-0.5 * ((np.arange(y0, y1) - cy) / sigma) ** 2, dtype=np.float32)
    image[y0:y1, x0:x1] += np.float32(amplitude) * np.outer(ey, ex)


@lru_cache(maxsize=4)
def _geometry():
    """Distance from disk centre in solar radii and μ = cos(θ) on the disk (0 off it)."""
    centre = (IMAGE_SIZE - 1) / 2
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE].astype(np.float32)
    r = np.hypot(xx - centre, yy - centre) / np.float32(SOLAR_RADIUS_PX)
    mu = np.sqrt(np.clip(1 - r**2, 0, None)).astype(np.float32)
    return r, mu


def _texture(rng: np.random.Generator, scale_px: float) -> np.ndarray:
    """Smooth unit-variance random texture (Gaussian-filtered white noise, via FFT)."""
    noise = rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE))
    k = np.fft.fftfreq(IMAGE_SIZE)
    kernel = np.exp(-2 * (np.pi * scale_px) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    smooth = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    return (smooth / smooth.std()).astype(np.float32)


@lru_cache(maxsize=16)
def _aia_background(channel: str, seed: int):
    """A channel's quiet Sun (disk, limb, corona, texture), its noise fields and noise scale."""
    rng = np.random.default_rng([seed, AIA_CHANNELS.index(channel), 4])
    quiet, _, limb, off_disk, height, _ = CHANNEL_LOOK[channel]
    r, mu = _geometry()
    on_disk = r <= 1
    if limb >= 0:  # EUV: limb brightening on the disk, a corona above it
        disk = 1 + limb * (np.minimum(1 / np.maximum(mu, 0.05), 4) - 1) / 3
    else:  # UV: limb darkening
        disk = 1 + limb * (1 - mu)
    corona = off_disk * np.exp(-np.clip(r - 1, 0, None) / height) * (1 + limb)
    texture = 1 + 0.25 * _texture(rng, 2.5) + 0.1 * _texture(rng, 10)
    base = (quiet * np.where(on_disk, disk * np.clip(texture, 0.3, None), corona)).astype(np.float32)
    noise = rng.standard_normal((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    sigma = (0.03 * np.sqrt(quiet * base + 1e-3)).astype(np.float32)
    return base, noise, sigma


class AiaPainter:
    """Draws frames of one AIA channel: a precomputed disk plus rotating active regions."""

    def __init__(self, channel: str, regions: list[ActiveRegion], seed: int):
        quiet, self.gain, *_ = CHANNEL_LOOK[channel]
        self.quiet = np.float32(quiet)
        self.base, self.noise, self.sigma = _aia_background(channel, seed)
        # A power-of-two pixel quantum leaves the low mantissa bits zero: chunks compress.
        self.step = np.float32(2.0 ** np.floor(np.log2(quiet / 32)))
        self.regions = regions

    def frame(self, crln: float, crlt: float, flare: float, index: int) -> np.ndarray:
        """One frame (float32, DN/s) seen from Carrington longitude/latitude ``crln``/``crlt``."""
        image = self.base.copy()
        centre = (IMAGE_SIZE - 1) / 2
        for number, region in enumerate(self.regions):
            x, y, mu = _project(region, crln, crlt)
            if mu > -0.15:  # regions just behind the limb still show loops above it
                boost = flare if number == 0 else 1.0
                amplitude = self.quiet * self.gain * region.strength * boost * (0.4 + 0.6 * max(mu, 0))
                _blob(image, centre + x, centre + y, region.size * max(mu, 0.35), amplitude)
        noise = np.roll(self.noise[index % 3], (index * 37) % IMAGE_SIZE, axis=1)
        image += self.sigma * noise
        return np.round(image / self.step) * self.step


class HmiPainter:
    """Draws one HMI component in Gauss: bipolar active regions, zero off the disk."""

    def __init__(self, component: str, regions: list[ActiveRegion], seed: int):
        rng = np.random.default_rng([seed, HMI_COMPONENTS.index(component), 5])
        r, mu = _geometry()
        self.on_disk = (r < 1).astype(np.float32)
        self.noise = rng.standard_normal((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        self.noise_level = np.float32(8.0 if component == "Bz" else 60.0)
        self.step = np.float32(0.125 if component == "Bz" else 0.5)  # power of two: compressible
        self.component = component
        self.regions = regions

    def frame(self, crln: float, crlt: float, index: int) -> np.ndarray:
        """One frame (float32, Gauss) seen from Carrington longitude/latitude ``crln``/``crlt``."""
        image = np.roll(self.noise[index % 3], (index * 41) % IMAGE_SIZE, axis=1) * self.noise_level
        centre = (IMAGE_SIZE - 1) / 2
        for region in self.regions:
            x, y, mu = _project(region, crln, crlt)
            if mu <= 0:
                continue
            # Cycle 24: leading polarity negative in the north, positive in the south.
            leading = -1.0 if region.latitude > 0 else 1.0
            separation = 1.2 * region.size * mu
            field = 2200.0 * region.strength
            if self.component == "Bz":
                _blob(image, centre + x + separation, centre + y, region.size * 0.6, leading * field)
                _blob(image, centre + x - separation, centre + y - 0.2 * separation, region.size * 0.8,
                      -leading * field * 0.7)
            else:  # horizontal field from the following to the leading spot, with some shear
                share = 0.6 if self.component == "Bx" else 0.2
                _blob(image, centre + x, centre + y, region.size * 0.9, -leading * field * share)
        return np.round(image * self.on_disk / self.step) * self.step


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
        days = _day_plan(year, n_slots, quirky)
        days_by_year[year] = days
        slots = _aia_slots(days, n_slots, rng)
        group = root.create_group(str(year))
        first = _observer(np.array([_ms(days[0])]))["CRLN_OBS"][0]
        regions = _active_regions(seed, year, first)
        flare_ms = flares[year] = int(slots[len(slots) // 3])
        format_change = _v2a_format_change(year, days) if v2a else None
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
        t_obs = _with_previous_year_frames(t_obs, year, offset_s)
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
    _seed_header_defects(attributes, channel, defects)
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
        return _seed_pixel_defects(painter.frame(crln[i], crlt[i], flare[i], i), i, defects)

    _write_frames(path / f"{year}" / channel, len(t_obs), chunk_frames, draw, bar)


def _v2a_format_change(year: int, days: np.ndarray) -> int | None:
    """The instant (UTC ms) from which SDOMLv2a writes AIA ``T_OBS`` as ``…08.072`` (no ``Z``):
    the year's middle sample day in 2020, the year's start after it, None before it."""
    if year < V2A_T_OBS_CHANGE_YEAR:
        return None
    if year > V2A_T_OBS_CHANGE_YEAR:
        return int(_ms(f"{year}-01-01")) - DAY_MS  # the previous year's frames filed here too
    return int(_ms(days[len(days) // 2]))


def v2a_t_obs(t_obs_ms: np.ndarray, change_ms: int) -> list[str]:
    """SDOMLv2a's AIA ``T_OBS`` strings: ``2020-08-27T00:00:09.37Z`` before ``change_ms``,
    ``2020-08-28T00:00:09.372`` (3 decimals, no ``Z``) from it on."""
    old = _iso(t_obs_ms, 2).tolist()
    new = _iso(t_obs_ms, 3).tolist()
    return [n if t >= change_ms else o + "Z" for t, o, n in zip(np.asarray(t_obs_ms).tolist(), old, new)]


PREVIOUS_YEAR_FRAMES = 2

#: Defects seeded in the quirky (last) year, each in one frame: ``kind: (channel, position)``.
#: The position is the frame's idx (with the default sizes and seed), or the next one if
#: that frame is a previous-year frame, a short-exposure (flare) frame or the all-NaN frame,
#: so that each seeded frame has exactly one defect.  ``duplicate_time`` copies the T_OBS of the frame before;
#: ``channel_mismatch`` gives 335A the WAVELNTH/WAVE_STR of 131A; ``quality_nonzero`` sets
#: QUALITY bit 13 (0x2000, eclipse); ``long_exposure`` sets EXPTIME to 4x the nominal,
#: ``zero_exposure`` to 0; ``off_centre`` moves CRPIX1 by 40 pixels; ``partial_nan``
#: blanks 32 rows of pixels; ``dark`` scales a frame by 0.3 (an eclipse).  Other years have none.
SEEDED_DEFECTS = {
    "duplicate_time": ("211A", 7), "channel_mismatch": ("335A", 6), "quality_nonzero": ("94A", 6),
    "long_exposure": ("1600A", 6), "zero_exposure": ("1700A", 5), "off_centre": ("304A", 5),
    "partial_nan": ("193A", 6), "dark": ("131A", 6),
}
DARK_FACTOR = 0.3


def seeded_defects(channel: str, t_obs: np.ndarray, short: np.ndarray, year: int) -> dict[str, int]:
    """``{kind: idx}`` of the defects seeded in ``channel``'s array of the quirky ``year``."""
    previous_year = t_obs < _ms(f"{year}-01-01")
    found = {}
    for kind, (where, wanted) in SEEDED_DEFECTS.items():
        if where != channel or len(t_obs) < 3:
            continue
        start = min(wanted, len(t_obs) - 1)  # then onwards, wrapping round to 1 (0 has no frame before it)
        candidates = [*range(start, len(t_obs)), *range(1, start)]
        usable = [p for p in candidates if not (previous_year[p] or short[p] or (channel == "171A" and p == 3) or (
            kind == "duplicate_time" and previous_year[p - 1]))]
        if usable:  # a short array may have no frame free of other quirks: then no seeded defect
            found[kind] = usable[0]
    return found


def _seed_header_defects(attributes: dict[str, list], channel: str, defects: dict[str, int]) -> None:
    if "channel_mismatch" in defects:
        other = "131A"
        attributes["WAVELNTH"][defects["channel_mismatch"]] = CHANNEL_INFO[other][0]
        attributes["WAVE_STR"][defects["channel_mismatch"]] = CHANNEL_INFO[other][2]
    if "quality_nonzero" in defects:
        attributes["QUALITY"][defects["quality_nonzero"]] = 0x2000
    if "long_exposure" in defects:
        attributes["EXPTIME"][defects["long_exposure"]] = round(4 * CHANNEL_INFO[channel][4], 6)
    if "zero_exposure" in defects:
        attributes["EXPTIME"][defects["zero_exposure"]] = 0.0
    if "off_centre" in defects:
        attributes["CRPIX1"][defects["off_centre"]] = round(attributes["CRPIX1"][defects["off_centre"]] + 40, 4)


def _seed_pixel_defects(image: np.ndarray, i: int, defects: dict[str, int]) -> np.ndarray:
    if defects.get("partial_nan") == i:
        image[100:132] = np.nan
    if defects.get("dark") == i:
        image *= np.float32(DARK_FACTOR)
    return image


def _with_previous_year_frames(t_obs: np.ndarray, year: int, offset_s: float) -> np.ndarray:
    """Insert frames from Dec 31 of the previous year before the Jan 1 block (SDOMLv2#2)."""
    new_year = _ms(f"{year}-01-01")
    extra = new_year - np.arange(PREVIOUS_YEAR_FRAMES, 0, -1) * SLOT_MS + int(offset_s * 1000)
    first_of_day = np.flatnonzero((t_obs >= new_year) & (t_obs < new_year + DAY_MS))
    at = int(first_of_day[0]) if len(first_of_day) else 0
    return np.concatenate([t_obs[:at], extra, t_obs[at:]])


def _hmi_times(year: int, n: int, aia_days, rng) -> tuple[np.ndarray, np.ndarray]:
    """T_REC and T_OBS (TAI ms) of a year's HMI frames: 12-minute TAI grid, in time order."""
    leaps = [_ms(day) for day, _ in LEAP_SECONDS[1:] if _ms(day) - DAY_MS >= _ms(f"{year}-01-01")
             and _ms(day) <= _ms(f"{year + 1}-01-01")]
    if leaps:  # centre the frames on the leap second, one frame inside it
        leap_tai_grid = leaps[0]  # TAI 00:00:00 of the day after the leap: UTC 23:59:26 before it
        start = min(leap_tai_grid - (n // 2) * HMI_CADENCE_MS, leap_tai_grid - (n - 1) * HMI_CADENCE_MS
                    if leap_tai_grid == _ms(f"{year + 1}-01-01") else leap_tai_grid)
        t_rec = start + HMI_CADENCE_MS * np.arange(n)
    else:
        days = aia_days if aia_days is not None else np.datetime64(f"{year}-08-27", "D") + _days(2)
        per_day = -(-n // len(days))
        t_rec = np.concatenate([_ms(d) + HMI_CADENCE_MS * np.arange(per_day) for d in days])[:n]
    t_obs = t_rec + 1000 * rng.integers(2, 30, n)
    for leap in leaps:  # a frame whose TAI time is inside the leap second (TAI 00:00:34.x)
        t_obs[t_rec == leap] = leap + 34_000
    return t_rec, t_obs


def _write_hmi(path, n_frames, years, aia_days_by_year, seed, images, bar, chunk_frames, v2a=False) -> None:
    root = _open_new_group(path)
    for year in years:
        rng = np.random.default_rng([seed, year, 6])
        t_rec, t_obs = _hmi_times(year, n_frames, aia_days_by_year.get(year), rng)
        if v2a:
            order = scrambled_order(t_obs, np.random.default_rng([seed, year, 8]))
            t_rec, t_obs = t_rec[order], t_obs[order]
        group = root.create_group(str(year))
        first = _observer(t_obs[:1] - 34_000)["CRLN_OBS"][0]
        regions = _active_regions(seed, year, first)
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


def scrambled_order(t_ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A storage order of frames at times ``t_ms`` (SDOMLv2a's HMI): a random permutation,
    never chronological within the first day that has two frames."""
    order = rng.permutation(len(t_ms))
    days = t_ms[order] // DAY_MS
    for day in np.unique(days):
        within = np.flatnonzero(days == day)
        if len(within) > 1:
            if np.all(np.diff(t_ms[order][within]) > 0):
                order[within] = order[within[::-1]]
            break
    return order


def _eve_times(n: int, first_day: np.datetime64, rng) -> np.ndarray:
    """About one sample a minute (UTC ms) from ``first_day``, with a few gaps."""
    steps = np.full(n, 60_000, np.int64)
    steps[0] = 10_484
    gaps = rng.choice(np.arange(1, n), size=min(n - 1, max(1, n // 500)), replace=False) if n > 1 else []
    steps[gaps] += 60_000 * rng.integers(2, 30, len(gaps))
    return _ms(first_day) + np.cumsum(steps)


def _write_eve(path, n, first_day, seed, flare_ms: int | None = None, flat: bool = False) -> None:
    """EVE lines with a flare at the AIA flare's time (when EVE covers it) so the two agree;
    in a ``MEGS-A`` group (SDOML v2) or, ``flat``, at the store's root (SDOMLv2a's EVE_legacy)."""
    rng = np.random.default_rng([seed, 7])
    times = _eve_times(n, first_day, rng)
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
    time_array[:] = np.char.replace(_iso(times, 3), "T", " ")
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
