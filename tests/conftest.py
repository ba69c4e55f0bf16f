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


def _fixtures_of_a_sample(prefix: str):
    """The fixtures of one sample layout, built from its ``{prefix}sample_paths``:
    ``{prefix}catalog_dir`` (its catalog; tests must not modify it, copy it first),
    ``{prefix}catalog`` (opened for SQL, one per test module), ``{prefix}source`` (every
    AIA/HMI frame read straight from the stores' attrs, brute force) and ``{prefix}eve_source``
    (its EVE samples read straight from the store)."""

    @pytest.fixture(scope="session", name=f"{prefix}catalog_dir")
    def catalog_dir(request, tmp_path_factory):
        paths = request.getfixturevalue(f"{prefix}sample_paths")
        return _built(paths, tmp_path_factory.mktemp(f"{prefix}catalog") / "catalog")

    @pytest.fixture(scope="module", name=f"{prefix}catalog")
    def catalog(request):
        from sdoml_sql import Catalog

        return Catalog(request.getfixturevalue(f"{prefix}catalog_dir"))

    @pytest.fixture(scope="module", name=f"{prefix}source")
    def source(request):
        import sql_brute

        return sql_brute.source_frames(request.getfixturevalue(f"{prefix}sample_paths"))

    @pytest.fixture(scope="module", name=f"{prefix}eve_source")
    def eve_source(request):
        import sql_brute

        return sql_brute.source_eve(request.getfixturevalue(f"{prefix}sample_paths"))

    return catalog_dir, catalog, source, eve_source


catalog_dir, catalog, source, eve_source = _fixtures_of_a_sample("")
v2a_catalog_dir, v2a_catalog, v2a_source, v2a_eve_source = _fixtures_of_a_sample("v2a_")


@pytest.fixture(params=LAYOUTS)
def layout(request):
    """The sample layout a twinned test runs on: ``v2`` (the session sample) or ``v2a``."""
    return request.param


def _of_the_layout(name: str):
    """The fixture ``layout_{name}``: fixture ``name`` of the twinned test's layout."""

    @pytest.fixture(name=f"layout_{name.removeprefix('sample_')}")
    def of_the_layout(request, layout):
        return request.getfixturevalue(name if layout == "v2" else f"v2a_{name}")

    return of_the_layout


layout_paths = _of_the_layout("sample_paths")
layout_catalog_dir = _of_the_layout("catalog_dir")
layout_catalog = _of_the_layout("catalog")
layout_source = _of_the_layout("source")
layout_eve_source = _of_the_layout("eve_source")


# Object-store emulators on 127.0.0.1 (GCS, S3) and the fault-injecting proxy: tests/emulators.py.
from emulators import gcs_remote, no_store_env, remote, s3_remote  # noqa: E402,F401 - fixtures, re-exported


@pytest.fixture(scope="module")
def cluster_client():
    """A dask.distributed LocalCluster of 2 worker processes (one per test module)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client
