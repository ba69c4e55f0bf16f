"""Catalogs and selections as HTML for Jupyter (``_repr_html_``) and thumbnail strips (``show``)."""

from __future__ import annotations

import base64
import html
from typing import Any

#: Rows a selection's HTML shows.
SHOWN_ROWS = 10


def selection_html(selection, rows: int = SHOWN_ROWS) -> str:
    """The first ``rows`` rows, the row count, the time span and the channels of a selection."""
    from sdoml_sql.query.text import cell

    names = selection.columns
    head = selection.table.slice(0, rows)
    lines = ["<div class='sdoml-selection'>",
             f"<p><b>Selection</b> ({html.escape(selection.kind)}): {_summary(selection)}</p>",
             "<table><thead><tr>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr></thead><tbody>"]
    columns = [column.to_pylist() for column in head.columns]
    for values in zip(*columns):
        lines.append("<tr>" + "".join(f"<td>{html.escape(cell(v, null='NULL'))}</td>" for v in values) + "</tr>")
    lines.append("</tbody></table>")
    if len(selection) > rows:
        lines.append(f"<p>… {len(selection) - rows:,} more rows</p>")
    for hint in selection.hints:
        lines.append(f"<p>hint: {html.escape(hint)}</p>")
    return "\n".join(lines + ["</div>"])


def _summary(selection) -> str:
    parts = [f"{len(selection):,} row{'s' if len(selection) != 1 else ''}"]
    span = _time_span(selection)
    if span:
        parts.append(f"from {span[0]} to {span[1]}")
    channels = _channels(selection)
    if channels:
        parts.append(f"channels {', '.join(channels)}")
    return html.escape(", ".join(parts))


def _time_span(selection) -> tuple[str, str] | None:
    import pyarrow.compute as pc

    lower = {n.lower(): n for n in selection.columns}
    for name in ("t_obs", "time"):
        if name in lower and len(selection):
            column = selection.table.column(lower[name])
            if column.type.__class__.__name__ == "TimestampType" and column.null_count < len(column):
                low, high = pc.min(column).as_py(), pc.max(column).as_py()
                return f"{low:%Y-%m-%d %H:%M:%S}", f"{high:%Y-%m-%d %H:%M:%S}"
    return None


def _channels(selection) -> list[str]:
    if selection.kind == "aligned":
        return list(dict.fromkeys(selection.locators()["channel"]))
    lower = {n.lower(): n for n in selection.columns}
    if "channel" in lower:
        return [str(c) for c in dict.fromkeys(selection.table.column(lower["channel"]).to_pylist()) if c is not None]
    return []


class Thumbnails:
    """A strip of frame thumbnails with their channels and times (shown by Jupyter)."""

    def __init__(self, pictures: list[tuple[bytes, str]]):
        #: ``(PNG bytes, caption)`` per frame.
        self.pictures = pictures

    def __len__(self) -> int:
        return len(self.pictures)

    def __repr__(self) -> str:
        return f"<Thumbnails of {len(self)} frames: {', '.join(c for _, c in self.pictures[:3])}…>"

    def _repr_html_(self) -> str:
        figures = [f"<figure style='margin:2px;text-align:center;font-size:11px'>"
                   f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}' width='128' height='128' "
                   f"alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>"
                   for png, caption in self.pictures]
        return "<div style='display:flex;flex-wrap:wrap'>" + "".join(figures) + "</div>"


def thumbnails(selection, n: int = 12) -> Thumbnails:
    """The first ``n`` frames of a selection as 128×128 thumbnails, captioned with channel and time."""
    from sdoml_sql.fetch.images import THUMBNAIL_DOWNSAMPLE, THUMBNAIL_METHOD, map_rgba, png_bytes
    from sdoml_sql.fetch.maps import maps
    from sdoml_sql.fetch.stack import FlatSelection

    locators = selection.locators()
    locators = locators[locators["idx"].notna()].head(n).reset_index(drop=True)
    if not len(locators):
        return Thumbnails([])
    solar_maps = maps(FlatSelection(selection.catalog, locators), downsample=THUMBNAIL_DOWNSAMPLE,
                      method=THUMBNAIL_METHOD)
    return Thumbnails([(png_bytes(map_rgba(m)), f"{channel} {_observed(m)}")
                       for m, channel in zip(solar_maps, locators["channel"])])


def _observed(solar_map) -> str:
    """The frame's ``T_OBS`` (UTC, as the catalog has it), else the map's date."""
    import pandas as pd

    stamp = solar_map.meta.get("t_obs")
    when = pd.Timestamp(stamp) if stamp else pd.Timestamp(solar_map.date.isot)
    return f"{when:%Y-%m-%d %H:%M:%S}"


def catalog_html(catalog) -> str:
    """Per instrument and channel: years, frames and the time covered (from the manifest)."""
    spans: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in (catalog.manifest.get("partitions") or {}).values():
        instrument = str(entry.get("instrument"))
        channel = str(entry.get("channel") or entry.get("group") or "")
        span = spans.setdefault((instrument, channel), {"years": set(), "rows": 0, "first": None, "last": None})
        if entry.get("year") is not None:
            span["years"].add(int(entry["year"]))
        span["rows"] += int(entry.get("rows") or 0)
        first, last = (entry.get("time_range") or [None, None])[:2]
        if first and (span["first"] is None or first < span["first"]):
            span["first"] = first
        if last and (span["last"] is None or last > span["last"]):
            span["last"] = last
    import pandas as pd

    from sdoml_sql.quality.plot import channel_order

    rows = []
    for instrument, channel in channel_order(pd.DataFrame(list(spans), columns=["instrument", "channel"])):
        span = spans[(instrument, channel)]
        years = ", ".join(str(y) for y in sorted(span["years"]))
        rows.append(f"<tr><td>{html.escape(instrument.upper())}</td><td>{html.escape(channel)}</td>"
                    f"<td>{html.escape(years)}</td><td style='text-align:right'>{span['rows']:,}</td>"
                    f"<td>{html.escape(str(span['first'] or '')[:19])}</td>"
                    f"<td>{html.escape(str(span['last'] or '')[:19])}</td></tr>")
    return (f"<div class='sdoml-catalog'><p><b>Catalog</b> {html.escape(str(catalog.directory))}</p>"
            "<table><thead><tr><th>instrument</th><th>channel</th><th>years</th><th>rows</th><th>first</th>"
            "<th>last</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")

