"""The sample's pixels: a synthetic Sun with active regions fixed in Carrington longitude."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sdoml_sql.stores.sample_headers import AIA_CHANNELS, CHANNEL_LOOK, HMI_COMPONENTS, IMAGE_SIZE, SOLAR_RADIUS_PX


@dataclass
class ActiveRegion:
    """A region fixed in Carrington coordinates (deg) with a size in pixels and a strength."""

    longitude: float
    latitude: float
    size: float
    strength: float


def active_regions(seed: int, year: int, central_longitude: float) -> list[ActiveRegion]:
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


DARK_FACTOR = 0.3


def seed_pixel_defects(image: np.ndarray, i: int, defects: dict[str, int]) -> np.ndarray:
    if defects.get("partial_nan") == i:
        image[100:132] = np.nan
    if defects.get("dark") == i:
        image *= np.float32(DARK_FACTOR)
    return image
