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


def _built(paths, directory):
    """``directory``, a catalog built from the stores ``paths`` (``{"aia": …, "hmi": …, "eve": …}``)."""
    from sdoml_sql.catalog_builder.build import build_catalog

    build_catalog(**{name: str(path) for name, path in paths.items()}, catalog=directory, progress=False)
    return directory


@pytest.fixture(scope="session")
def catalog_dir(sample_paths, tmp_path_factory):
    """A catalog built from the sample stores. Tests must not modify it (copy it first)."""
    return _built(sample_paths, tmp_path_factory.mktemp("catalog") / "catalog")


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


# --- SDOMLv2a twins: a test that takes `layout` (or a `layout_*` fixture) runs on both layouts ---

LAYOUTS = ("v2", "v2a")
#: AIA frames per channel and year of the v2a sample: enough for the nine channels to align.
V2A_FRAMES = 16


@pytest.fixture(scope="session")
def v2a_sample_paths(tmp_path_factory):
    """Sample stores in the SDOMLv2a layout (``AIA.zarr``, ``HMI.zarr``, ``EVE_legacy.zarr``):
    AIA and HMI in 2010, 2020 (the T_OBS format change) and 2023, HMI out of time order, flat EVE."""
    from sdoml_sql.stores.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("sample-v2a"), layout="v2a", aia_frames=V2A_FRAMES)


@pytest.fixture(scope="session")
def v2a_catalog_dir(v2a_sample_paths, tmp_path_factory):
    """A catalog built from the v2a sample stores. Tests must not modify it (copy it first)."""
    return _built(v2a_sample_paths, tmp_path_factory.mktemp("catalog-v2a") / "catalog")


@pytest.fixture(scope="module")
def v2a_catalog(v2a_catalog_dir):
    """The v2a catalog opened for SQL; ``v2a_source`` and ``v2a_eve_source`` as ``source``, ``eve_source``."""
    from sdoml_sql import Catalog

    return Catalog(v2a_catalog_dir)


@pytest.fixture(scope="module")
def v2a_source(v2a_sample_paths):
    import sql_brute

    return sql_brute.source_frames(v2a_sample_paths)


@pytest.fixture(scope="module")
def v2a_eve_source(v2a_sample_paths):
    import sql_brute

    return sql_brute.source_eve(v2a_sample_paths)


@pytest.fixture(params=LAYOUTS)
def layout(request):
    """The sample layout a twinned test runs on: ``v2`` (the session sample) or ``v2a``."""
    return request.param


def _of_layout(request, layout: str, name: str):
    return request.getfixturevalue(name if layout == "v2" else f"v2a_{name}")


@pytest.fixture
def layout_paths(request, layout):
    """``sample_paths`` of the layout."""
    return _of_layout(request, layout, "sample_paths")


@pytest.fixture
def layout_catalog_dir(request, layout):
    """``catalog_dir`` of the layout."""
    return _of_layout(request, layout, "catalog_dir")


@pytest.fixture
def layout_catalog(request, layout):
    """``catalog`` of the layout."""
    return _of_layout(request, layout, "catalog")


@pytest.fixture
def layout_source(request, layout):
    """``source`` (brute-force frames) of the layout."""
    return _of_layout(request, layout, "source")


@pytest.fixture
def layout_eve_source(request, layout):
    """``eve_source`` of the layout."""
    return _of_layout(request, layout, "eve_source")


# Object-store emulators on 127.0.0.1 (GCS, S3) and the fault-injecting proxy: tests/emulators.py.
from emulators import gcs_remote, no_store_env, remote, s3_remote  # noqa: E402,F401 - fixtures, re-exported


@pytest.fixture(scope="module")
def cluster_client():
    """A dask.distributed LocalCluster of 2 worker processes (one per test module)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client
