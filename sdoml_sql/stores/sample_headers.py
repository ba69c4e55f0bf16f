"""The sample's FITS headers: the real AIA and HMI key sets and values, and the seeded header defects."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from sdoml_sql.stores.sample_times import (
    DAY_MS,
    HMI_CADENCE_MS,
    epoch_ms,
    iso_times,
    sdo_observer,
    tai_minus_utc,
    tai_string,
    tai_to_utc_iso,
)

AIA_CHANNELS = ("94A", "131A", "171A", "193A", "211A", "304A", "335A", "1600A", "1700A")
HMI_COMPONENTS = ("Bx", "By", "Bz")


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


IMAGE_SIZE = 512
#: SDOML scales every image so the solar radius is 976/4.8 pixels (CDELT1 = 4.8·RSUN_OBS/976).
SOLAR_RADIUS_PX = 976 / 4.8


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
    observer = sdo_observer(t_obs_ms)
    exptime = np.where(short, rng.uniform(0.3, 1.6, n), exposure + 1.5e-4 + np.abs(rng.normal(0, 5e-5, n)))
    rsun_obs = np.degrees(np.arcsin(696_000_000.0 / observer["DSUN_OBS"])) * 3600
    cdelt = rsun_obs / SOLAR_RADIUS_PX
    years_in = (t_obs_ms - epoch_ms("2010-05-01")) / (365.25 * DAY_MS)
    data_mean = CHANNEL_LOOK[channel][0] * 2.5 * rng.lognormal(0, 0.05, n) * np.where(short, 3.0, 1.0)
    fsn = 20_000_000 + ((t_obs_ms - epoch_ms("2010-05-01")) // 1500).astype(np.int64) + camera
    decimals = 2 if year <= 2010 else 3
    t_obs = iso_times(t_obs_ms, decimals).tolist()
    without_z = rng.random(n) < (0.1 if year > 2010 else 0.0)  # a trailing Z is sometimes missing
    if year > 2010 and n:
        without_z[n // 2] = True
    day_ms = t_obs_ms // DAY_MS * DAY_MS
    tai_seconds = (t_obs_ms - epoch_ms("1958-01-01")) // 1000 + tai_minus_utc(t_obs_ms)
    columns.update({
        "T_OBS": [t if bare else t + "Z" for t, bare in zip(t_obs, without_z.tolist())],
        "DATE-OBS": iso_times(t_obs_ms - (exptime * 500).astype(np.int64), 2).tolist(),
        "T_REC": [t + "Z" for t in iso_times(t_obs_ms // 1000 * 1000, 0).tolist()],
        "ISPPKTIM": [t + "Z" for t in iso_times(t_obs_ms - 2840, 2).tolist()],
        "DATE": iso_times(t_obs_ms + 3 * DAY_MS + rng.integers(0, 6 * 3600_000, n), 0).tolist(),
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
    utc_ms = t_tai_ms - 1000 * tai_minus_utc(t_tai_ms - 37_000)
    observer = sdo_observer(utc_ms)
    rsun_obs = np.degrees(np.arcsin(696_000_000.0 / observer["DSUN_OBS"])) * 3600
    cdelt = rsun_obs / SOLAR_RADIUS_PX
    columns: dict[str, Any] = {key: [value] * n for key, value in _hmi_template().items()}
    columns.update({
        "T_OBS": tai_string(t_tai_ms), "T_REC": tai_string(t_rec_tai_ms),
        "DATE-OBS": tai_to_utc_iso(t_tai_ms, 2),
        "DATE": iso_times(utc_ms + 2 * DAY_MS + rng.integers(0, 6 * 3600_000, n), 0).tolist(),
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
        "RECNUM": (5_000_000 + (t_tai_ms - epoch_ms("2010-05-01")) // HMI_CADENCE_MS).tolist(),
        "DATAMEAN": np.round(rng.normal(0.5, 0.3, n), 6).tolist(),
        "DATARMS": np.round(rng.uniform(40, 120, n), 6).tolist(),
        "DATAMIN": np.round(rng.uniform(-3000, -1500, n), 6).tolist(),
        "DATAMAX": np.round(rng.uniform(1500, 3000, n), 6).tolist(),
    })
    for key in ("CRLN_OBS", "CRLT_OBS", "OBS_VR", "OBS_VW", "OBS_VN"):
        columns[key] = np.round(observer[key], 6).tolist()
    return dict(sorted(columns.items()))


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


def seeded_defects(channel: str, t_obs: np.ndarray, short: np.ndarray, year: int) -> dict[str, int]:
    """``{kind: idx}`` of the defects seeded in ``channel``'s array of the quirky ``year``."""
    previous_year = t_obs < epoch_ms(f"{year}-01-01")
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


def seed_header_defects(attributes: dict[str, list], channel: str, defects: dict[str, int]) -> None:
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
