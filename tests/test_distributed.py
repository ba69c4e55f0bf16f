"""The harvest spread over a dask.distributed cluster gives the same catalog as one process."""

from __future__ import annotations

import pyarrow.parquet as pq

from sdoml_sql.catalog_builder.build import build_catalog, read_manifest


def comparable(manifest: dict) -> dict:
    """Manifest partitions without their build times."""
    return {key: {k: v for k, v in entry.items() if k != "built_at"} for key, entry in manifest["partitions"].items()}


def test_distributed_build_equals_single_process_build(cluster_client, sample_paths, catalog_dir, tmp_path):
    catalog = tmp_path / "catalog"
    report = build_catalog(aia=str(sample_paths["aia"]), hmi=str(sample_paths["hmi"]), eve=str(sample_paths["eve"]),
                           catalog=catalog, progress=False, client=cluster_client)
    assert report.rows > 0 and report.written
    workers = {w["id"] for w in cluster_client.scheduler_info()["workers"].values()}
    assert len(workers) == 2
    assert comparable(read_manifest(catalog)) == comparable(read_manifest(catalog_dir))
    files = sorted(p.relative_to(catalog_dir) for p in catalog_dir.rglob("*.parquet"))
    assert files == sorted(p.relative_to(catalog) for p in catalog.rglob("*.parquet"))
    for relative in files:
        assert pq.read_table(catalog / relative).equals(pq.read_table(catalog_dir / relative)), relative


def test_cli_build_with_a_scheduler(cluster_client, sample_paths, catalog_dir, tmp_path):
    import subprocess
    import sys

    address = cluster_client.scheduler.address
    catalog = tmp_path / "catalog"
    result = subprocess.run([sys.executable, "-m", "sdoml_sql.cli", "build", "--hmi", str(sample_paths["hmi"]),
                             "--catalog", str(catalog), "--scheduler", address, "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    hmi = {k: v for k, v in comparable(read_manifest(catalog_dir)).items() if k.startswith("hmi/")}
    assert comparable(read_manifest(catalog)) == hmi


def test_cli_build_with_an_unreachable_scheduler(sample_paths, tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "sdoml_sql.cli", "build", "--hmi", str(sample_paths["hmi"]),
                             "--catalog", str(tmp_path / "c"), "--scheduler", "tcp://127.0.0.1:9", "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
