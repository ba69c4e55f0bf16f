"""Export a dataset to a local Zarr for training at disk speed, and read it back.

``export(selection or dataset, "OUT.zarr")`` writes ``OUT.zarr/images`` — float32
``(N, C, H, W)``, one sample per chunk ``(1, C, H, W)``, Blosc LZ4 + bitshuffle, Zarr format 2
— and ``OUT.zarr/rows.parquet`` (one row per sample: ``sample``, ``row``, ``time``,
``<channel>.year``, ``<channel>.idx``, ``checksum``).  Images are written as the dataset
serves them (downsampled, normalised), before any ``transform``.

The work happens in ``OUT.zarr.partial``: every written sample is appended to a journal with
its checksum, so an export that is killed continues where it stopped when run again with the
same selection and options.  At the end every sample is read back and checked against its
checksum, and the row count against the dataset's, before the directory is renamed to
``OUT.zarr``.  :func:`open_export` reads it back; its ``loader`` shuffles uniformly (each
sample is one chunk, so any order reads at disk speed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdoml_sql.datasets.samples import FrameDataset, _iso, dataset
from sdoml_sql.datasets.shuffle import DEFAULT_CACHE_MB, block_line, sample_blocks, schedule
from sdoml_sql.exceptions import DatasetError

IMAGES = "images"
ROWS = "rows.parquet"
JOURNAL = "written.tsv"
DESCRIPTION = "export.json"


def sample_compressor():
    """The exports' compressor: Blosc LZ4 with bitshuffle (fast to decode, lossless)."""
    import numcodecs

    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


def create_zarr_array(directory: Path, name: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                      attributes: dict[str, Any]):
    """A new float32 array ``name`` in a Zarr format 2 group at ``directory``, attributes set once."""
    import zarr

    group = zarr.open_group(str(directory), mode="a", zarr_format=2)
    return group.create_array(name, shape=shape, chunks=chunks, dtype="<f4", compressor=sample_compressor(),
                              fill_value=np.nan, attributes=attributes)


def checksum(image: np.ndarray) -> str:
    """A sample's checksum: BLAKE2b (8 bytes) of its float32 bytes."""
    return hashlib.blake2b(np.ascontiguousarray(image, dtype=np.float32).tobytes(), digest_size=8).hexdigest()


def export(source, output, progress: bool = True, **dataset_options) -> Path:
    """Write ``source`` (a :class:`FrameDataset`, or a selection made into one with
    ``dataset_options``) to the local Zarr ``output``; resume an interrupted export of the same
    samples (a finished one is left as it is).  Returns the path written."""
    ds = source if isinstance(source, FrameDataset) else dataset(source, **dataset_options)
    ds = dataclasses.replace(ds, transform=None)
    output = Path(output)
    if output.exists():
        described = output / DESCRIPTION
        if described.is_file() and json.loads(described.read_text(encoding="utf-8")) == _description(ds):
            return output  # a finished export of the same samples: complete, nothing to do
        raise DatasetError(f"{output} exists and holds other samples or options: remove it or choose another name")
    partial = output.with_name(output.name + ".partial")
    done = _start_or_resume(partial, ds)
    _write_missing(ds, partial, done, progress)
    _verify(partial, ds, done)
    _write_rows(partial, ds, done)
    (partial / JOURNAL).unlink()
    os.replace(partial, output)
    return output


def _description(ds: FrameDataset) -> dict[str, Any]:
    fingerprint = hashlib.sha256()
    for part in (ds.array_ids, ds.idx, ds.times.astype("datetime64[ns]").astype(np.int64)):
        fingerprint.update(np.ascontiguousarray(part).tobytes())
    fingerprint.update(json.dumps([str(a) for a in ds.arrays]).encode())
    stats = ds.normalizer.stats.get("key") if ds.normalizer is not None else None
    return {"samples": len(ds), "image_shape": list(ds.image_shape), "channels": ds.channels,
            "downsample": ds.downsample, "method": ds.method, "normalization": stats,
            "fingerprint": fingerprint.hexdigest()}


def _start_or_resume(partial: Path, ds: FrameDataset) -> dict[int, str]:
    description = _description(ds)
    if partial.exists():
        described = partial / DESCRIPTION
        found = json.loads(described.read_text(encoding="utf-8")) if described.is_file() else None
        if found == description:
            return _read_journal(partial / JOURNAL)
        if found is not None:
            raise DatasetError(f"{partial} holds an unfinished export of other samples or options: "
                               "remove it, or rerun the export that made it")
        shutil.rmtree(partial)  # killed before it described itself: nothing to keep
    partial.mkdir(parents=True)
    n, shape = len(ds), ds.image_shape
    create_zarr_array(partial, IMAGES, (n, *shape), (1, *shape),
                      {"channels": ds.channels, "downsample": ds.downsample, "method": ds.method})
    (partial / JOURNAL).touch()
    (partial / DESCRIPTION).write_text(json.dumps(description, indent=1), encoding="utf-8")
    return {}


def _read_journal(path: Path) -> dict[int, str]:
    done = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].isdigit() and len(parts[1]) == 16:  # a torn last line is skipped
            done[int(parts[0])] = parts[1]
    return done


def _export_order(ds: FrameDataset, remaining: set[int]) -> list[int]:
    """The remaining samples block by block along the block line (each chunk decoded about once)."""
    blocks = sample_blocks(ds)
    return [int(s) for b in block_line(ds, blocks) for s in sorted(blocks[b]) if int(s) in remaining]


def _write_missing(ds: FrameDataset, partial: Path, done: dict[int, str], progress: bool) -> None:
    import zarr
    from tqdm import tqdm

    images = zarr.open_array(str(partial / IMAGES), mode="r+", zarr_format=2)
    order = _export_order(ds, set(range(len(ds))) - set(done))
    plan = schedule(ds, order, int(DEFAULT_CACHE_MB * 1e6) // ds.sample_bytes)
    bar = tqdm(total=len(ds), initial=len(done), unit="sample", desc="export", disable=not progress)
    with open(partial / JOURNAL, "a", encoding="utf-8") as journal:
        for step, item in zip(plan.steps, ds.run(plan)):
            images[step.sample] = item["image"][None]
            done[step.sample] = checksum(item["image"])
            journal.write(f"{step.sample}\t{done[step.sample]}\n")
            journal.flush()
            bar.update()
    bar.close()


def _verify(partial: Path, ds: FrameDataset, done: dict[int, str]) -> None:
    import zarr

    if len(done) != len(ds):
        raise DatasetError(f"export {partial}: {len(done)} samples written, the dataset has {len(ds)}")
    images = zarr.open_array(str(partial / IMAGES), mode="r", zarr_format=2)
    for i in range(len(ds)):
        if checksum(images[i]) != done[i]:
            raise DatasetError(f"export {partial}: sample {i} does not match its checksum; rerun the export")


def _write_rows(partial: Path, ds: FrameDataset, done: dict[int, str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"sample": np.arange(len(ds)), "row": ds.rows, "time": ds.times}
    for c, channel in enumerate(ds.channels):
        present = ds.array_ids[:, c] >= 0
        years = np.array([ds.arrays[a].year if a >= 0 else -1 for a in ds.array_ids[:, c]], dtype=np.int64)
        columns[f"{channel}.year"] = years
        columns[f"{channel}.idx"] = np.where(present, ds.idx[:, c], -1)
    columns["checksum"] = [done[i] for i in range(len(ds))]
    pq.write_table(pa.table(columns), partial / ROWS)


# --- reading an export back ----------------------------------------------------------------

class ExportDataset:
    """A finished export as a map-style dataset: ``ds[i]`` as for :class:`FrameDataset`."""

    def __init__(self, path, transform: Callable[[dict], Any] | None = None):
        self.path = Path(path)
        if not (self.path / ROWS).is_file() or not (self.path / IMAGES).is_dir():
            raise DatasetError(f"{self.path} is not a finished sdoml-sql export (no {ROWS} or {IMAGES})")
        self.rows = pd.read_parquet(self.path / ROWS)
        self.channels = [c[:-len(".idx")] for c in self.rows.columns if c.endswith(".idx")]
        self.transform = transform
        self._images = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"<ExportDataset {self.path} samples={len(self)} channels={self.channels}>"

    def images(self):
        """The ``images`` array (opened once per process)."""
        import zarr

        if self._images is None or self._pid != os.getpid():
            self._images, self._pid = zarr.open_array(str(self.path / IMAGES), mode="r", zarr_format=2), os.getpid()
        return self._images

    def __getitem__(self, i: int) -> Any:
        if not isinstance(i, (int, np.integer)) or not -len(self) <= i < len(self):
            raise IndexError(f"sample {i!r} out of range: the export has {len(self)} samples")
        row = self.rows.iloc[int(i)]
        item = {"image": np.asarray(self.images()[int(i)], dtype=np.float32), "time": _iso(row["time"]),
                "row": int(row["row"]),
                "year": np.array([row[f"{c}.year"] for c in self.channels], dtype=np.int64),
                "idx": np.array([row[f"{c}.idx"] for c in self.channels], dtype=np.int64)}
        return self.transform(item) if self.transform is not None else item

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0, num_workers: int = 0,
               rank: int = 0, world_size: int = 1, drop_last: bool = False):
        """A ``DataLoader`` with a uniform shuffle fixed by ``(seed, epoch)``; ``rank``/``world_size``
        shard it for distributed training."""
        from sdoml_sql.datasets.loader import uniform_loader

        return uniform_loader(self, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, num_workers=num_workers,
                              rank=rank, world_size=world_size, drop_last=drop_last)


def open_export(path, transform: Callable[[dict], Any] | None = None) -> ExportDataset:
    """Open a finished export (``OUT.zarr``) as a map-style dataset."""
    return ExportDataset(path, transform)
