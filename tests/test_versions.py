"""Kept answers are never stale: a catalog rebuilt under a running explorer, or a catalog file
replaced under the same manifest, is read anew."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests

from sdoml_sql import Catalog
from sdoml_sql.fetch.headers import headers
from sdoml_sql.fetch.images import frame_rgba
from sdoml_sql.web import Settings
from web_helpers import png_pixels, running_server

COUNTS = "SELECT instrument, year, channel, count(*) AS n FROM frames GROUP BY ALL ORDER BY ALL"


def replace_catalog(target, source) -> None:
    """Put the catalog ``source`` in place of ``target`` as the builder does: every file
    renamed into place first, the manifest last."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            final = target / path.relative_to(source)
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, final.with_name(final.name + ".new"))
            os.replace(final.with_name(final.name + ".new"), final)
    shutil.copyfile(source / "manifest.json", target / "manifest.new")
    os.replace(target / "manifest.new", target / "manifest.json")


def test_a_rebuilt_catalog_is_served_anew(catalog_dir, v2a_catalog_dir, tmp_path):
    served = tmp_path / "catalog"
    shutil.copytree(catalog_dir, served)
    before, after = Catalog(catalog_dir), Catalog(v2a_catalog_dir)
    assert before.query(COUNTS).to_pandas().equals(after.query(COUNTS).to_pandas()) is False
    frame = "aia/2010/171A/3"
    with running_server(Catalog(served), Settings()) as url, requests.Session() as http:
        def answers():
            rows = http.get(f"{url}/api/query", params={"sql": COUNTS}, timeout=60).json()["rows"]
            picture = http.get(f"{url}/api/frames/{frame}/thumbnail.png", timeout=60)
            header = http.get(f"{url}/api/frames/{frame}/header", timeout=60).json()["header"]
            return rows, picture, header

        for _ in range(2):  # the second time from what the explorer keeps
            rows, picture, header = answers()
            assert rows == before.page(COUNTS)[0].to_records()[1]
        tag = picture.headers["ETag"]
        assert http.get(f"{url}/api/frames/{frame}/thumbnail.png", headers={"If-None-Match": tag},
                        timeout=60).status_code == 304

        replace_catalog(served, v2a_catalog_dir)
        rows, picture, header = answers()
        assert rows == after.page(COUNTS)[0].to_records()[1]
        assert picture.headers["ETag"] != tag
        assert http.get(f"{url}/api/frames/{frame}/thumbnail.png", headers={"If-None-Match": tag},
                        timeout=60).status_code == 200
        expected = frame_rgba(after, "aia", 2010, "171A", 3, 4, "mean")
        assert np.abs(png_pixels(picture.content).astype(int) - expected.astype(int)).max() <= 1
        locator = pd.DataFrame({"instrument": ["aia"], "year": [2010], "channel": ["171A"], "idx": [3]})
        assert [key for key, _ in header] == list(headers(after, locator)[0])


def test_a_catalog_file_replaced_under_the_same_manifest_is_read_anew(catalog_dir, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    catalog = Catalog(copy)
    locator = pd.DataFrame({"instrument": ["aia"], "year": [2010], "channel": ["171A"], "idx": [3]})
    exposure = headers(catalog, locator)[0]["EXPTIME"]
    partition = copy / "aia" / "year=2010" / "channel=171A" / "data.parquet"
    table = pq.read_table(partition)
    column = table.schema.get_field_index("EXPTIME")
    table = table.set_column(column, "EXPTIME", pc.add(table.column("EXPTIME"), pa.scalar(1000.0)))
    pq.write_table(table, partition.with_name("data.new"), compression="zstd", row_group_size=8192)
    os.replace(partition.with_name("data.new"), partition)
    assert headers(catalog, locator)[0]["EXPTIME"] == pytest.approx(exposure + 1000)
