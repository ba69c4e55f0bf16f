"""Jupyter views: ``Selection._repr_html_``, ``Selection.show`` and ``Catalog._repr_html_``."""

from __future__ import annotations

import io
import re

import numpy as np

from sdoml_sql.fetch.images import map_rgba
from sdoml_sql.fetch.maps import maps

ALIGNED = ("SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27', '2010-08-27 06:00', INTERVAL 1 hour, "
           "INTERVAL 6 minutes)")


def test_selection_html_shows_first_rows_count_span_and_channels(catalog):
    selection = catalog.query("SELECT year, channel, idx, T_OBS, '<b>' AS tag FROM aia "
                              "WHERE channel IN ('171A', '193A') ORDER BY T_OBS")
    page = selection._repr_html_()
    frame = selection.to_pandas()
    assert f"{len(selection):,} rows" in page
    assert f"from {frame.T_OBS.min():%Y-%m-%d %H:%M:%S} to {frame.T_OBS.max():%Y-%m-%d %H:%M:%S}" in page
    assert "channels 171A, 193A" in page and f"… {len(selection) - 10:,} more rows" in page
    assert page.count("<tr>") == 11 and "&lt;b&gt;" in page and "<b>'" not in page
    assert str(frame.T_OBS[0].isoformat(timespec="microseconds")) in page
    aligned = catalog.query(ALIGNED)._repr_html_()
    assert "(aligned)" in aligned and "channels 171A, Bz" in aligned


def test_show_draws_the_first_frames_as_maps_colour_them(catalog):
    selection = catalog.query("SELECT year, channel, idx, T_OBS FROM hmi WHERE channel = 'Bz' ORDER BY T_OBS")
    strip = selection.show(n=3)
    assert len(strip) == 3
    from PIL import Image

    expected = maps(selection.catalog.query("SELECT year, channel, idx FROM hmi WHERE channel = 'Bz' "
                                            "ORDER BY T_OBS LIMIT 3"), downsample=4, method="mean")
    times = selection.to_pandas().T_OBS[:3]
    for (png, caption), solar_map, when in zip(strip.pictures, expected, times):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), map_rgba(solar_map))
        assert caption == f"Bz {when:%Y-%m-%d %H:%M:%S}"
    assert strip._repr_html_().count("data:image/png;base64,") == 3
    aligned = catalog.query(ALIGNED)
    found = aligned.locators().dropna(subset=["idx"])
    strip = aligned.show()
    assert len(strip) == len(found) > 4  # the frames of each grid time, channel by channel
    assert [c.split()[0] for _, c in strip.pictures] == list(found.channel)
    assert strip.pictures[0][1] == f"171A {aligned.to_pandas()['171A.T_OBS'][0]:%Y-%m-%d %H:%M:%S}"


def test_catalog_html_summarises_each_channel(catalog):
    page = catalog._repr_html_()
    counts = catalog.query("SELECT instrument, channel, count(*) AS n, min(T_OBS) AS first FROM frames "
                           "GROUP BY ALL").to_pandas()
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td><td>([\d, ]+)</td><td[^>]*>([\d,]+)</td><td>([^<]*)</td>", page)
    shown = {(i.lower(), c): (int(n.replace(",", "")), first) for i, c, _, n, first in rows}
    for row in counts.itertuples():
        assert shown[(row.instrument, row.channel)] == (row.n, f"{row.first:%Y-%m-%d %H:%M:%S}")
    assert [c for _, c, *_ in rows][:3] == ["94A", "131A", "171A"]
