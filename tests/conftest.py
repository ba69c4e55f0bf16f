"""Shared fixtures: one sample store set and one catalog per test session (per xdist worker)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """Sample AIA, HMI and EVE stores written by the project's generator (default sizes)."""
    from sdoml_sql.stores.sample import write_sample

    directory = tmp_path_factory.mktemp("sample")
    write_sample(directory)
    return directory


@pytest.fixture(scope="session")
def sample_paths(sample_dir):
    """``{"aia": path, "hmi": path, "eve": path}`` of the sample stores."""
    return {
        "aia": sample_dir / "sdomlv2_small.zarr",
        "hmi": sample_dir / "sdomlv2_hmi_small.zarr",
        "eve": sample_dir / "sdomlv2_eve.zarr",
    }


@pytest.fixture(scope="session")
def catalog_dir(sample_paths, tmp_path_factory):
    """A catalog built from the sample stores. Tests must not modify it (copy it first)."""
    from sdoml_sql.catalog_builder.build import build_catalog

    directory = tmp_path_factory.mktemp("catalog") / "catalog"
    build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]),
                  eve=str(sample_paths["eve"]), catalog=directory, progress=False)
    return directory


@pytest.fixture(scope="module")
def catalog(catalog_dir):
    """The session catalog opened for SQL (one per test module)."""
    from sdoml_sql import Catalog

    return Catalog(catalog_dir)


@pytest.fixture(scope="module")
def source(sample_paths):
    """Every AIA/HMI frame of the sample read straight from the stores' attrs (brute force)."""
    import sql_brute

    return sql_brute.source_frames(sample_paths)


@pytest.fixture(scope="module")
def eve_source(sample_paths):
    """The sample's EVE samples read straight from the store (brute force)."""
    import sql_brute

    return sql_brute.source_eve(sample_paths)


# Object-store emulators on 127.0.0.1 (GCS, S3) and the fault-injecting proxy: tests/emulators.py.
from emulators import gcs_remote, no_store_env, remote, s3_remote  # noqa: E402,F401


@pytest.fixture(scope="module")
def cluster_client():
    """A dask.distributed LocalCluster of 2 worker processes (one per test module)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client
