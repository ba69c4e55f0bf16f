"""Normalisation as the SDOML papers do it, with statistics computed once and kept.

* AIA: ``log10(max(x, floor))``, then a z-score with the channel's mean and standard
  deviation of that log;
* HMI: clip to ±``limit`` gauss, then divide by ``limit`` (values in [-1, 1]).

The AIA statistics come from a seeded sample of ``frames`` frames per channel of the dataset,
read chunk by chunk (each chunk the sample touches is decoded once).  They are written to
``CATALOG/ml_stats/<key>.json``, where the key hashes the sampled frames and the options, so
the same selection with the same seed and options reuses them (and a fresh computation gives
the same numbers).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sdoml_sql.config import user_cache_dir
from sdoml_sql.exceptions import DatasetError
from sdoml_sql.files import write_atomically

NORMALIZE_CHOICES = ("none", "sdoml")
STATS_DIR = "ml_stats"


@dataclass(frozen=True)
class Normalization:
    """Parameters of ``normalize="sdoml"``: AIA log floor, HMI clip limit (gauss), and the
    statistics sample: ``frames`` per AIA channel drawn with ``seed``."""

    aia_floor: float = 1.0
    hmi_limit: float = 1500.0
    frames: int = 32
    seed: int = 0


def normalization(value) -> Normalization | None:
    """The :class:`Normalization` a ``normalize=`` argument names (None for ``"none"``)."""
    if value is None or (isinstance(value, str) and value == "none"):
        return None
    if isinstance(value, Normalization):
        return value
    if isinstance(value, str) and value == "sdoml":
        return Normalization()
    raise DatasetError(f"normalize={value!r}: choose one of {', '.join(NORMALIZE_CHOICES)} "
                       "or a sdoml_sql.datasets.normalize.Normalization(...)")


@dataclass
class Normalizer:
    """Applies a :class:`Normalization` to images, one rule per source array."""

    rule: Normalization
    instruments: list[str]
    mean: np.ndarray
    std: np.ndarray
    stats_path: str | None = None
    reused: bool = False
    stats: dict = field(default_factory=dict)

    def apply(self, image: np.ndarray, array_ids: np.ndarray) -> np.ndarray:
        for c, a in enumerate(array_ids):
            if a < 0:
                continue
            if self.instruments[a] == "hmi":
                np.clip(image[c], -self.rule.hmi_limit, self.rule.hmi_limit, out=image[c])
                image[c] /= self.rule.hmi_limit
            else:
                np.log10(np.maximum(image[c], self.rule.aia_floor), out=image[c])
                image[c] -= self.mean[a]
                image[c] /= self.std[a]
        return image


def make_normalizer(ds, rule: Normalization, catalog_dir: Path | None) -> Normalizer:
    """The dataset's normalizer, its AIA statistics read from ``catalog_dir`` (None for a
    remote catalog: the user cache only) or computed and stored."""
    if not isinstance(rule.frames, int) or rule.frames < 1:
        raise DatasetError(f"Normalization(frames={rule.frames!r}): give a positive number of frames per channel")
    chosen = stats_frames(ds, rule)
    key = _stats_key(ds, rule, chosen)
    path, stats = _load_stats(catalog_dir, key)
    reused = stats is not None
    if stats is None:
        stats = {"key": key, "normalization": asdict(rule), "downsample": ds.downsample, "method": ds.method,
                 "channels": channel_stats(ds, rule, chosen)}
        path = _store_stats(catalog_dir, key, stats)
    instruments = [ref.instrument for ref in ds.arrays]
    mean = np.array([stats["channels"].get(ref.channel, {}).get("mean", 0.0) for ref in ds.arrays], dtype=np.float32)
    std = np.array([stats["channels"].get(ref.channel, {}).get("std", 1.0) or 1.0 for ref in ds.arrays],
                   dtype=np.float32)
    return Normalizer(rule, instruments, mean, std, str(path), reused, stats)


def stats_frames(ds, rule: Normalization) -> dict[str, list[tuple[int, int]]]:
    """Per AIA channel, the ``(array_id, idx)`` frames the statistics are computed from (seeded)."""
    frames: dict[str, set] = defaultdict(set)
    for a, x in zip(ds.array_ids.ravel().tolist(), ds.idx.ravel().tolist()):
        if a >= 0 and ds.arrays[a].instrument != "hmi":
            frames[ds.arrays[a].channel].add((a, x))
    rng = np.random.default_rng(rule.seed)
    chosen = {}
    for channel in sorted(frames):
        pool = sorted(frames[channel], key=lambda f: (str(ds.arrays[f[0]]), f[1]))
        picks = np.sort(rng.choice(len(pool), size=min(rule.frames, len(pool)), replace=False))
        chosen[channel] = [pool[p] for p in picks]
    return chosen


def channel_stats(ds, rule: Normalization, chosen: dict[str, list[tuple[int, int]]]) -> dict[str, dict]:
    """Mean and standard deviation of ``log10(max(x, floor))`` per channel over the chosen frames."""
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3))
    by_chunk: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
    for channel, frames in chosen.items():
        for a, x in frames:
            by_chunk[a, ds.chunk_of(a, x)].append((channel, x))
    for (a, _), members in sorted(by_chunk.items()):
        wanted = sorted({x for _, x in members})
        for frame in ds.read_frames(a, wanted[0], wanted[-1] + 1, tuple(x - wanted[0] for x in wanted)):
            values = np.log10(np.maximum(frame[np.isfinite(frame)], rule.aia_floor), dtype=np.float64)
            sums[members[0][0]] += (values.size, values.sum(), np.square(values).sum())
    result = {}
    for channel in chosen:
        n, total, squares = sums[channel]
        mean = total / n if n else 0.0
        result[channel] = {"mean": float(mean), "std": float(np.sqrt(max(squares / n - mean ** 2, 0.0))) if n else 1.0,
                           "frames": len(chosen[channel])}
    return result


def _stats_key(ds, rule: Normalization, chosen) -> str:
    described = {channel: [[str(ds.arrays[a]), int(x)] for a, x in frames] for channel, frames in chosen.items()}
    text = json.dumps({"frames": described, "rule": asdict(rule), "downsample": ds.downsample,
                       "method": ds.method}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _stats_dirs(catalog_dir: Path | None) -> list[Path]:
    cache = user_cache_dir() / STATS_DIR
    return [catalog_dir / STATS_DIR, cache] if catalog_dir is not None else [cache]


def _load_stats(catalog_dir: Path | None, key: str):
    for directory in _stats_dirs(catalog_dir):
        path = directory / f"{key}.json"
        if path.is_file():
            return path, json.loads(path.read_text(encoding="utf-8"))
    return None, None


def _store_stats(catalog_dir: Path | None, key: str, stats: dict) -> Path:
    """Write the statistics beside the catalog (or in the user cache if the catalog is read-only)."""
    for directory in _stats_dirs(catalog_dir):
        try:
            return write_atomically(directory / f"{key}.json", json.dumps(stats, indent=1, sort_keys=True))
        except OSError:
            continue
    raise DatasetError(f"cannot store normalisation statistics in {' nor '.join(map(str, _stats_dirs(catalog_dir)))}")
