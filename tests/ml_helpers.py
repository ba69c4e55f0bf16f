"""Helpers for the ML dataset tests: a small AIA+HMI sample over two years, and its catalog."""

from __future__ import annotations

from pathlib import Path

#: 171A and 193A cross the 120-frame chunk boundary; HMI follows the AIA years and days.
ML_SAMPLE = {"aia_frames": {"171A": 125, "193A": 125}, "channels": ("171A", "193A"), "years": (2010, 2011),
             "hmi_years": (2010, 2011), "hmi_frames": 60, "eve": False, "progress": False}
RANGE = "'2010-08-26', '2011-01-04'"
AIA_SQL = f"SELECT * FROM aligned(['193A', '171A'], {RANGE}, INTERVAL 12 minutes, INTERVAL 6 minutes)"
MIXED_SQL = f"SELECT * FROM aligned(['Bz', '171A', '193A'], {RANGE}, INTERVAL 12 minutes, INTERVAL 6 minutes)"


def ml_catalog(directory: Path) -> Path:
    """Write the ML sample stores and build their catalog under ``directory``; return the catalog."""
    from sdoml_sql.catalog_builder.build import build_catalog
    from sdoml_sql.stores.sample import write_sample

    paths = write_sample(directory / "stores", **ML_SAMPLE)
    catalog = directory / "catalog"
    build_catalog(aia=str(paths["aia"]), hmi=str(paths["hmi"]), catalog=catalog, progress=False)
    return catalog


def trace_lines(directory) -> list[list[str]]:
    """The decode trace lines the dataset's workers wrote (pid, array, chunk, bytes, peak RSS kB)."""
    return [line.split("\t") for path in sorted(Path(directory).glob("decodes-*.tsv"))
            for line in path.read_text().splitlines()]
