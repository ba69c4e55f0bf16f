"""When the sample's frames were taken: AIA slots, HMI and EVE times, leap seconds, SDO's observer."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SLOT_MS = 6 * 60_000
SLOTS_PER_DAY = 240
DAY_MS = 86_400_000
HMI_CADENCE_MS = 12 * 60_000
#: (UTC instant of a leap second's end, TAI − UTC from then on), 2009–2017.
LEAP_SECONDS = (("2009-01-01", 34), ("2012-07-01", 35), ("2015-07-01", 36), ("2017-01-01", 37))


#: The year inside which SDOMLv2a's AIA ``T_OBS`` changes from ``…08.07Z`` to ``…08.072``.
V2A_T_OBS_CHANGE_YEAR = 2020


def _year_start(year: int, quirky: bool) -> np.datetime64:
    return np.datetime64(f"{year}-01-01" if quirky else f"{year}-08-27", "D")


def day_plan(year: int, n_slots: int, quirky: bool) -> np.ndarray:
    """Consecutive days (datetime64[D]) holding ``n_slots`` 6-minute slots, inside ``year``."""
    days_in_year = 366 if year % 4 == 0 else 365  # valid for 1901-2099
    if n_slots > days_in_year * SLOTS_PER_DAY:
        raise ValueError(f"{n_slots} frames do not fit in {year} at one per 6 minutes")
    n_days = min(days_in_year, max(2, math.ceil(n_slots / 216)))
    last_start = np.datetime64(f"{year}-12-31", "D") - np.timedelta64(n_days - 1, "D")
    start = min(_year_start(year, quirky), last_start)
    return start + _days(n_days)


def aia_slots(days: np.ndarray, n_slots: int, rng: np.random.Generator) -> np.ndarray:
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
        blocks.append(epoch_ms(days[d]) + slots * SLOT_MS)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int64)


def _days(n: int) -> np.ndarray:
    """0, 1, … n-1 days (``timedelta64[D]``: an int added to a date has numpy's deprecated generic unit)."""
    return np.arange(n).astype("timedelta64[D]")


def epoch_ms(value) -> np.int64:
    return np.datetime64(value, "ms").astype(np.int64)


def iso_times(t_ms: np.ndarray, decimals: int) -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SS[.ff]`` strings of UTC times in ms (rounded to ``decimals``)."""
    t = np.asarray(t_ms, np.int64)
    if decimals == 0:
        return np.datetime_as_string(((t + 500) // 1000 * 1000).astype("datetime64[ms]"), unit="s")
    step = 10 ** (3 - decimals)
    text = np.datetime_as_string(((t + step // 2) // step * step).astype("datetime64[ms]"), unit="ms")
    return text.astype(f"<U{20 + decimals}") if decimals < 3 else text


def tai_minus_utc(t_utc_ms: np.ndarray) -> np.ndarray:
    edges = np.array([epoch_ms(day) for day, _ in LEAP_SECONDS])
    offsets = np.array([offset for _, offset in LEAP_SECONDS])
    return offsets[np.clip(np.searchsorted(edges, t_utc_ms, side="right") - 1, 0, None)]


def tai_to_utc_iso(t_tai_ms: np.ndarray, decimals: int) -> list[str]:
    """UTC ISO strings of TAI times (ms), with ``23:59:60.x`` for times inside a leap second."""
    t_tai_ms = np.asarray(t_tai_ms, np.int64)
    offsets = np.full(len(t_tai_ms), LEAP_SECONDS[0][1], np.int64)
    inside = []
    for day, offset in LEAP_SECONDS[1:]:
        leap_start = epoch_ms(day) + 1000 * (offset - 1)  # TAI when UTC reads 23:59:60
        offsets[t_tai_ms >= leap_start + 1000] = offset
        inside += [(i, day, leap_start) for i in
                   np.flatnonzero((t_tai_ms >= leap_start) & (t_tai_ms < leap_start + 1000)).tolist()]
    text = iso_times(t_tai_ms - 1000 * offsets, decimals).tolist()
    for i, day, leap_start in inside:
        previous_day = str(np.datetime64(day, "D") - np.timedelta64(1, "D"))
        second = 60 + (t_tai_ms[i] - leap_start) / 1000
        text[i] = f"{previous_day}T23:59:{second:0{3 + decimals if decimals else 2}.{decimals}f}"
    return text


def tai_string(t_tai_ms: np.ndarray) -> list[str]:
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
    return (epoch_ms(days[0]) + DAY_MS * np.arange(n_days), l0, sun.B0(times).deg,
            sun.earth_distance(times).to_value("m"), sun.carrington_rotation_number(times))


def sdo_observer(t_ms: np.ndarray) -> dict[str, np.ndarray]:
    """SDO's Carrington longitude/latitude, distance and velocities at the given UTC times."""
    first = np.datetime64(int(t_ms.min()), "ms").astype("datetime64[D]")
    n_days = int((t_ms.max() - epoch_ms(first)) // DAY_MS) + 2
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


def v2a_format_change(year: int, days: np.ndarray) -> int | None:
    """The instant (UTC ms) from which SDOMLv2a writes AIA ``T_OBS`` as ``…08.072`` (no ``Z``):
    the year's middle sample day in 2020, the year's start after it, None before it."""
    if year < V2A_T_OBS_CHANGE_YEAR:
        return None
    if year > V2A_T_OBS_CHANGE_YEAR:
        return int(epoch_ms(f"{year}-01-01")) - DAY_MS  # the previous year's frames filed here too
    return int(epoch_ms(days[len(days) // 2]))


def v2a_t_obs(t_obs_ms: np.ndarray, change_ms: int) -> list[str]:
    """SDOMLv2a's AIA ``T_OBS`` strings: ``2020-08-27T00:00:09.37Z`` before ``change_ms``,
    ``2020-08-28T00:00:09.372`` (3 decimals, no ``Z``) from it on."""
    old = iso_times(t_obs_ms, 2).tolist()
    new = iso_times(t_obs_ms, 3).tolist()
    return [n if t >= change_ms else o + "Z" for t, o, n in zip(np.asarray(t_obs_ms).tolist(), old, new)]


PREVIOUS_YEAR_FRAMES = 2


def with_previous_year_frames(t_obs: np.ndarray, year: int, offset_s: float) -> np.ndarray:
    """Insert frames from Dec 31 of the previous year before the Jan 1 block (SDOMLv2#2)."""
    new_year = epoch_ms(f"{year}-01-01")
    extra = new_year - np.arange(PREVIOUS_YEAR_FRAMES, 0, -1) * SLOT_MS + int(offset_s * 1000)
    first_of_day = np.flatnonzero((t_obs >= new_year) & (t_obs < new_year + DAY_MS))
    at = int(first_of_day[0]) if len(first_of_day) else 0
    return np.concatenate([t_obs[:at], extra, t_obs[at:]])


def hmi_times(year: int, n: int, aia_days, rng) -> tuple[np.ndarray, np.ndarray]:
    """T_REC and T_OBS (TAI ms) of a year's HMI frames: 12-minute TAI grid, in time order."""
    leaps = [epoch_ms(day) for day, _ in LEAP_SECONDS[1:] if epoch_ms(day) - DAY_MS >= epoch_ms(f"{year}-01-01")
             and epoch_ms(day) <= epoch_ms(f"{year + 1}-01-01")]
    if leaps:  # centre the frames on the leap second, one frame inside it
        leap_tai_grid = leaps[0]  # TAI 00:00:00 of the day after the leap: UTC 23:59:26 before it
        start = min(leap_tai_grid - (n // 2) * HMI_CADENCE_MS, leap_tai_grid - (n - 1) * HMI_CADENCE_MS
                    if leap_tai_grid == epoch_ms(f"{year + 1}-01-01") else leap_tai_grid)
        t_rec = start + HMI_CADENCE_MS * np.arange(n)
    else:
        days = aia_days if aia_days is not None else np.datetime64(f"{year}-08-27", "D") + _days(2)
        per_day = -(-n // len(days))
        t_rec = np.concatenate([epoch_ms(d) + HMI_CADENCE_MS * np.arange(per_day) for d in days])[:n]
    t_obs = t_rec + 1000 * rng.integers(2, 30, n)
    for leap in leaps:  # a frame whose TAI time is inside the leap second (TAI 00:00:34.x)
        t_obs[t_rec == leap] = leap + 34_000
    return t_rec, t_obs


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


def eve_times(n: int, first_day: np.datetime64, rng) -> np.ndarray:
    """About one sample a minute (UTC ms) from ``first_day``, with a few gaps."""
    steps = np.full(n, 60_000, np.int64)
    steps[0] = 10_484
    gaps = rng.choice(np.arange(1, n), size=min(n - 1, max(1, n // 500)), replace=False) if n > 1 else []
    steps[gaps] += 60_000 * rng.integers(2, 30, len(gaps))
    return epoch_ms(first_day) + np.cumsum(steps)
