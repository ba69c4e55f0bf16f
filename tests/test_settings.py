"""Settings live in sdoml_sql/config.py: arguments win over command-line options, which win
over the environment; the command line never writes ``os.environ``."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner

from sdoml_sql import config
from sdoml_sql.cli import main
from sdoml_sql.exceptions import QueryError, StoreError
from sdoml_sql.query.catalog import Catalog
from sdoml_sql.stores.source import DEFAULT_RETRIES, ReadPolicy, open_store


def test_arguments_win_over_options_which_win_over_the_environment(sample_paths, monkeypatch, tmp_path):
    monkeypatch.setenv(config.STORE_TIMEOUT_ENV, "30")
    monkeypatch.delenv(config.RETRIES_ENV, raising=False)
    assert open_store(str(sample_paths["aia"])).policy == ReadPolicy(timeout=30.0, retries=DEFAULT_RETRIES)
    with config.using(store_timeout=12.5, retries=None, cache_dir=tmp_path / "cache"):
        opened = open_store(str(sample_paths["aia"]))
        assert opened.policy.timeout == 12.5 and opened.cache_dir == str(tmp_path / "cache")
        assert open_store(str(sample_paths["aia"]), timeout=4, retries=1).policy == ReadPolicy(timeout=4.0, retries=1)
    assert open_store(str(sample_paths["aia"])).policy.timeout == 30.0 and os.environ[config.STORE_TIMEOUT_ENV] == "30"
    monkeypatch.setenv(config.STORE_TIMEOUT_ENV, "soon")
    with pytest.raises(StoreError, match="SDOML_TIMEOUT='soon' is not a valid float"):
        open_store(str(sample_paths["aia"]))
    with pytest.raises(TypeError, match="unknown setting 'timeout'"):
        with config.using(timeout=3):
            pass


def test_a_catalog_opens_its_stores_with_its_store_settings(catalog_dir, tmp_path):
    catalog = Catalog(catalog_dir, store_timeout=7, retries=2, cache_dir=tmp_path / "chunks")
    source = catalog.source("aia")
    assert source.policy == ReadPolicy(timeout=7.0, retries=2) and source.cache_dir == str(tmp_path / "chunks")
    assert Catalog(catalog_dir).source("aia").policy == ReadPolicy()


def test_the_query_time_limit_has_its_own_name_and_keeps_the_old_one(catalog_dir):
    catalog = Catalog(catalog_dir)
    assert len(catalog.query("SELECT 1 AS one", query_timeout=5)) == 1
    assert len(catalog.query("SELECT 1 AS one", timeout=5)) == 1
    with pytest.raises(QueryError, match="query_timeout=5 and timeout=6 name the same limit"):
        catalog.query("SELECT 1 AS one", query_timeout=5, timeout=6)


def test_cli_store_options_hold_for_one_command_and_never_touch_the_environment(catalog_dir, tmp_path, monkeypatch):
    for name in config.SETTING_ENVS.values():
        monkeypatch.delenv(name, raising=False)
    copy = tmp_path / "catalog"
    shutil.copytree(catalog_dir, copy)
    seen = {}
    real = config.using

    def spy(**settings):
        seen.update(settings)
        return real(**settings)

    monkeypatch.setattr(config, "using", spy)
    runner = CliRunner()
    for timeout_option in ("--store-timeout", "--timeout"):
        result = runner.invoke(main, ["fetch", "SELECT year, channel, idx FROM aia LIMIT 1", "--catalog", str(copy),
                                      "--output", str(tmp_path / "one.npy"), "--quiet", timeout_option, "9",
                                      "--retries", "1", "--cache-dir", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
        assert seen == {"store_timeout": 9.0, "retries": 1, "cache_dir": str(tmp_path / "cache")}
        seen.clear()
    assert not {name for name in config.SETTING_ENVS.values() if name in os.environ}
    assert [config.setting(name) for name in config.SETTING_ENVS] == [None] * len(config.SETTING_ENVS)


def test_cli_and_api_names_mirror_each_other(catalog_dir, tmp_path):
    import matplotlib.pyplot as plt

    import sdoml_sql

    assert sdoml_sql.stats is sdoml_sql.compute_frame_stats
    movie = main.commands["movie"]
    for args, sortby, progress in ((["--sortby", "date"], "date", True), (["--sort-by-date", "--quiet"], "date", False),
                                   ([], None, True), (["--progress"], None, True)):
        params = movie.make_context("movie", ["SQL", "out.gif", *args]).params
        assert (params["sortby"], params["progress"]) == (sortby, progress), args
    catalog = Catalog(catalog_dir)
    eve = sdoml_sql.plot(catalog.query('SELECT time, "He II" FROM eve ORDER BY time LIMIT 50'), tmp_path / "eve.png")
    frame = sdoml_sql.plot(catalog.query("SELECT year, channel, idx FROM aia LIMIT 2"), tmp_path / "map.png", row=1)
    assert len(eve.axes) == 1 and (tmp_path / "eve.png").stat().st_size > 1000
    assert (tmp_path / "map.png").stat().st_size > 1000 and frame is not eve
    plt.close("all")
    written = sdoml_sql.movie(catalog.query("SELECT year, channel, idx FROM aia WHERE channel = '171A' LIMIT 3"),
                              tmp_path / "three.gif", downsample=8, sortby="date", progress=False)
    assert written == tmp_path / "three.gif" and written.stat().st_size > 1000
