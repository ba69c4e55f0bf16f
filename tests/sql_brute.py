"""Brute-force answers computed from the sample stores' source attributes (the raw ``.zattrs``
lists), independently of the harvester: what the SQL views and macros must agree with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from astropy.time import Time


def _aia_times(strings) -> pd.Series:
    return pd.to_datetime(pd.Series(strings, dtype=object).str.rstrip("Z"), format="ISO8601")


def _tai_to_utc(strings) -> pd.Series:
    """JSOC TAI strings → naive UTC (a time inside a leap second → 1 µs before the leap)."""
    iso = [s[:10].replace(".", "-") + "T" + s[11:].removesuffix("_TAI") for s in strings]
    utc = Time(iso, format="isot", scale="tai").utc.isot
    fixed = [u[:17] + "59.999999" if u[17:19] == "60" else u for u in utc]
    return pd.to_datetime(pd.Series(fixed), format="ISO8601")


def source_frames(sample_paths) -> pd.DataFrame:
    """Every AIA and HMI frame of the sample stores: instrument, year, channel, idx, T_OBS
    (UTC), EXPTIME (AIA), read from the arrays' ``.zattrs``."""
    parts = []
    for instrument in ("aia", "hmi"):
        root = Path(sample_paths[instrument])
        for attrs_path in sorted(root.glob("*/*/.zattrs")):
            attrs = json.loads(attrs_path.read_text())
            year, channel = int(attrs_path.parent.parent.name), attrs_path.parent.name
            strings = attrs["T_OBS"]
            times = _aia_times(strings) if instrument == "aia" else _tai_to_utc(strings)
            parts.append(pd.DataFrame({
                "instrument": instrument, "year": year, "channel": channel,
                "idx": np.arange(len(strings)), "T_OBS": times.values,
                "EXPTIME": attrs.get("EXPTIME", [np.nan] * len(strings)),
            }))
    return pd.concat(parts, ignore_index=True)


def source_eve(sample_paths) -> pd.DataFrame:
    """EVE samples: idx, time, and every line (NaN where negative)."""
    group = eve_group(sample_paths["eve"])
    times = pd.to_datetime(pd.Series(group["Time"][:].astype(str)), format="ISO8601")
    lines = {name: np.asarray(array[:], dtype="float64") for name, array in group.arrays() if name != "Time"}
    return pd.DataFrame({"idx": np.arange(len(times)), "time": times.values,
                         **{name: np.where(line < 0, np.nan, line) for name, line in sorted(lines.items())}})


def eve_group(store):
    """The zarr group holding a sample EVE store's lines: ``MEGS-A`` (v2), or the root (v2a)."""
    root = zarr.open_group(str(store), mode="r", zarr_format=2)
    return root["MEGS-A"] if "MEGS-A" in root else root


def grid(start: str, stop: str, cadence: str) -> pd.DatetimeIndex:
    """start, start + cadence, … < stop."""
    times = pd.date_range(pd.Timestamp(start), pd.Timestamp(stop), freq=pd.Timedelta(cadence))
    return times[times < pd.Timestamp(stop)]


def nearest(frames: pd.DataFrame, channel: str, start, stop, cadence, tolerance) -> pd.DataFrame:
    """The reference nearest-frame search: for each grid time, the frame of ``channel`` (all
    years) with the smallest |T_OBS − t|, ties → earlier T_OBS, then lowest (year, idx);
    NA when further than ``tolerance``."""
    pool = frames[(frames.channel == channel) & frames.T_OBS.notna()]
    pool = pool.sort_values(["T_OBS", "year", "idx"])
    times = pool.T_OBS.values
    limit = pd.Timedelta(tolerance).to_timedelta64()
    rows = []
    for row, t in enumerate(grid(start, stop, cadence)):
        distance = np.abs(times - t.to_datetime64())
        if len(distance) and distance.min() <= limit:
            best = pool.iloc[int(np.argmin(distance))]  # first minimum = earliest T_OBS, year, idx
            rows.append((row, t, int(best.year), int(best.idx), best.T_OBS))
        else:
            rows.append((row, t, None, None, pd.NaT))
    result = pd.DataFrame(rows, columns=["row", "time", "year", "idx", "T_OBS"])
    result["year"] = result["year"].astype("Int64")
    result["idx"] = result["idx"].astype("Int64")
    return result


def nearest_eve(eve: pd.DataFrame, start, stop, cadence, tolerance) -> pd.Series:
    """EVE idx nearest each grid time (ties → earlier), NA beyond tolerance."""
    pool = eve.sort_values(["time", "idx"])
    limit = pd.Timedelta(tolerance).to_timedelta64()
    picked = []
    for t in grid(start, stop, cadence):
        distance = np.abs(pool.time.values - t.to_datetime64())
        i = int(np.argmin(distance))
        picked.append(int(pool.idx.iloc[i]) if distance[i] <= limit else None)
    return pd.Series(picked, dtype="Int64")


def sdofm_aligndata(frames: pd.DataFrame, eve: pd.DataFrame, channels, cadence="12 minutes",
                    tolerance="6 minutes") -> pd.DataFrame:
    """SDO-FM's aligndata table the way sql/examples/sdofm_aligndata.sql defines it: on the
    grid over EVE's coverage, the nearest frame of each channel and EVE sample within
    tolerance; rows kept where all are found, each frame's year is the grid time's, and every
    EVE line but Fe XVI_2 is positive.  Columns Time, idx_<channel>…, idx_eve."""
    start = max(pd.Timestamp("2010-01-01"), eve.time.min().floor(pd.Timedelta(cadence)))
    stop = min(pd.Timestamp("2015-01-01"), eve.time.max() + pd.Timedelta("12 minutes"))
    table = pd.DataFrame({"Time": grid(start, stop, cadence)})
    keep = np.ones(len(table), bool)
    for channel in channels:
        found = nearest(frames, channel, start, stop, cadence, tolerance)
        table[f"idx_{channel}"] = found.idx
        keep &= (found.year.fillna(-1) == table.Time.dt.year).to_numpy()
    table["idx_eve"] = nearest_eve(eve, start, stop, cadence, tolerance)
    lines = [c for c in eve.columns if c not in ("idx", "time", "Fe XVI_2")]
    usable = set(eve.idx[(eve[lines] > 0).all(axis=1)])
    keep &= table.idx_eve.isin(usable).to_numpy()
    return table[keep].reset_index(drop=True)


def coverage(frames: pd.DataFrame, start, stop, bucket, gap) -> pd.DataFrame:
    """Frames, gaps (> gap, counted where they start) and longest step per channel and bucket."""
    start, stop = pd.Timestamp(start), pd.Timestamp(stop)
    rows = []
    for (instrument, channel), group in frames.groupby(["instrument", "channel"]):
        inside = np.sort(group.T_OBS[(group.T_OBS >= start) & (group.T_OBS < stop)].values)
        points = np.concatenate([[start.to_datetime64()], inside, [stop.to_datetime64()]])
        steps = np.diff(points)
        for b in grid(start, stop, bucket):
            end = b + pd.Timedelta(bucket)
            in_bucket = (points[:-1] >= b.to_datetime64()) & (points[:-1] < end.to_datetime64())
            chosen = steps[in_bucket]
            rows.append({
                "instrument": instrument, "channel": channel, "bucket": b,
                "frames": int(((inside >= b.to_datetime64()) & (inside < end.to_datetime64())).sum()),
                "gaps": int((chosen > pd.Timedelta(gap).to_timedelta64()).sum()),
                "longest_step_s": chosen.max() / np.timedelta64(1, "s") if len(chosen) else np.nan,
            })
    return pd.DataFrame(rows).sort_values(["instrument", "channel", "bucket"]).reset_index(drop=True)


def tree_state(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and mtime (to prove nothing changed)."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*"))}
