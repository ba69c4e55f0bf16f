"""EVE: time series from the catalog, plots titled from eve_lines, missing values as gaps."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from sdoml_sql.cli import main
from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.eve import eve_lines, eve_series, plot_eve, with_gaps

EVE_SQL = 'SELECT idx, time, "Fe XX_2", "He II", "Fe XVI_2" FROM eve ORDER BY time'


def test_series_turns_nulls_into_nan(catalog):
    selection = catalog.query(EVE_SQL)
    assert selection.kind == "eve"
    series = eve_series(selection)
    nulls = catalog.sql('SELECT count(*) FILTER (WHERE "Fe XVI_2" IS NULL) FROM eve').fetchall()[0][0]
    assert nulls > 0 and int(series["Fe XVI_2"].isna().sum()) == nulls
    assert (series.fillna(0) >= 0).all().all()
    assert series.index.is_monotonic_increasing and list(series.columns) == ["Fe XX_2", "He II", "Fe XVI_2"]


def test_plot_titles_and_gaps(catalog, tmp_path):
    selection = catalog.query(EVE_SQL)
    lines = eve_lines(catalog)
    figure = selection.plot_eve(lines=["Fe XX_2", "Fe XVI_2"], output=tmp_path / "eve.png")
    titles = [axis.get_title() for axis in figure.axes]
    info = lines.loc["Fe XX_2"]
    assert titles[0].startswith(f"Fe XX_2 — {info['ion']} {info['wavelength']:.3f} nm")
    assert f"log T {info['logT']:g}" in titles[0]
    y = figure.axes[1].lines[0].get_ydata()
    assert np.isnan(y).any() and np.nanmin(y) >= 0
    assert (tmp_path / "eve.png").stat().st_size > 10_000


def test_time_gaps_break_the_line():
    import pandas as pd

    index = pd.to_datetime(["2010-01-01 00:00", "2010-01-01 00:01", "2010-01-01 00:02", "2010-01-01 03:00",
                            "2010-01-01 03:01"])
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0]}, index=index)
    gapped = with_gaps(frame)
    assert len(gapped) == 6 and np.isnan(gapped["x"].iloc[3])


def test_unknown_line_is_named(catalog):
    with pytest.raises(FetchError, match="'Fe XXX'"):
        plot_eve(catalog.query(EVE_SQL), lines=["Fe XXX"])


def test_cli_plot_eve_and_map(catalog_dir, tmp_path):
    for sql, name in ((EVE_SQL, "eve.png"),
                      ("SELECT year, channel, idx FROM aia WHERE channel = '304A' AND year = 2010 LIMIT 1", "map.png")):
        result = CliRunner().invoke(main, ["plot", sql, str(tmp_path / name), "--catalog", str(catalog_dir)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).stat().st_size > 10_000
