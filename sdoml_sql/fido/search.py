"""Fido attrs → SQL over the catalog: one statement per AND-branch of a query.

:data:`walker` turns a Fido query into a list of :class:`SearchTerms` (one per OR-branch);
:func:`search_sql` compiles one of them into an SQL statement with bound parameters, run
by :meth:`sdoml_sql.query.catalog.Catalog.query`:

* ``a.Time`` — ``T_OBS`` between start and end (inclusive);
* ``a.Instrument``, ``a.Wavelength``, ``a.Physobs``, ``a.sdoml.Channel`` — pick the channels
  (``channel IN …``); a wavelength matches a channel when it lies in ``[min, max]`` of the
  attr, as SunPy's clients match a single wavelength or a range;
* ``a.Sample`` — the ``nearest_frames`` macro: the nearest frame per grid time (start,
  start + cadence, … before end), within ``a.sdoml.Tolerance`` (default: half the cadence);
* ``a.sdoml.Keyword('EXPTIME') < 2`` — ``"EXPTIME" < $k0`` on the instrument's view, the
  value bound.  With ``a.Sample`` the filter applies to the sampled frames (as a join of
  ``nearest(...)`` with the view does in SQL).
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import sunpy.net.attrs as a
from astropy.time import Time
from sunpy.net.attr import AttrAnd, AttrOr, AttrWalker, DataAttr

from sdoml_sql.exceptions import QueryError
from sdoml_sql.fido import attrs as sa

#: Wavelength of HMI's Fe I 6173 Å line (the ``WAVELNTH`` of every HMI frame).
HMI_WAVELENGTH = 6173.0

#: ``a.Physobs`` values and the instruments whose channels they select.
PHYSOBS = {"intensity": "aia", "vector_magnetic_field": "hmi"}

#: Relative slack when a wavelength bound is compared with a channel's wavelength (unit
#: conversions: 17.1 nm is 171.00000000000003 Å).
WAVELENGTH_SLACK = 1e-9


@dataclass
class SearchTerms:
    """What one AND-branch of a Fido query asks for."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    instrument: str | None = None
    wavelength: tuple[float, float] | None = None
    physobs: str | None = None
    channel: str | None = None
    cadence: dt.timedelta | None = None
    tolerance: dt.timedelta | None = None
    catalog: str | None = None
    filters: list[tuple[str, str, Any]] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        return self.cadence is not None


walker = AttrWalker()


@walker.add_creator(AttrOr)
def _create_or(wlk, tree):
    return [terms for branch in tree.attrs for terms in wlk.create(branch)]


@walker.add_creator(AttrAnd, DataAttr)
def _create_and(wlk, tree):
    terms = SearchTerms()
    wlk.apply(tree, terms)
    return [terms]


@walker.add_applier(AttrAnd)
def _apply_and(wlk, tree, terms):
    for attr in tree.attrs:
        wlk.apply(attr, terms)


@walker.add_applier(a.Time)
def _apply_time(wlk, attr, terms):
    terms.start, terms.end = _utc(attr.start), _utc(attr.end)


@walker.add_applier(a.Instrument)
def _apply_instrument(wlk, attr, terms):
    terms.instrument = str(attr.value).lower()


@walker.add_applier(a.Wavelength)
def _apply_wavelength(wlk, attr, terms):
    terms.wavelength = (attr.min.to_value(u.AA, u.spectral()), attr.max.to_value(u.AA, u.spectral()))


@walker.add_applier(a.Physobs)
def _apply_physobs(wlk, attr, terms):
    terms.physobs = str(attr.value).lower()


@walker.add_applier(a.Sample)
def _apply_sample(wlk, attr, terms):
    terms.cadence = dt.timedelta(seconds=float(attr.value))


@walker.add_applier(sa.Tolerance)
def _apply_tolerance(wlk, attr, terms):
    terms.tolerance = dt.timedelta(seconds=float(attr.value.to_value(u.s)))


@walker.add_applier(sa.Channel)
def _apply_channel(wlk, attr, terms):
    terms.channel = attr.value


@walker.add_applier(sa.Catalog)
def _apply_catalog(wlk, attr, terms):
    terms.catalog = attr.value


@walker.add_applier(sa.KeywordFilter)
def _apply_keyword(wlk, attr, terms):
    if attr.operator not in sa.KeywordFilter.OPERATORS:
        raise QueryError(f"keyword filter {attr.name} {attr.operator}: choose one of "
                         f"{', '.join(sa.KeywordFilter.OPERATORS)}")
    terms.filters.append((attr.name, attr.operator, _bindable(attr.name, attr.value)))


@walker.add_applier(a.Provider, a.Source)
def _apply_nothing(wlk, attr, terms):
    pass  # checked by the client's _can_handle_query: SDOML / SDO


def _utc(time: Time) -> dt.datetime:
    return time.utc.to_datetime()


def _bindable(name: str, value: Any) -> Any:
    if isinstance(value, Time):
        return _utc(value)
    if isinstance(value, u.Quantity):
        raise QueryError(f"keyword filter {name}: compare with a plain number, not a Quantity ({value})")
    if not isinstance(value, (int, float, str, bool, dt.datetime, dt.date)):
        raise QueryError(f"keyword filter {name}: cannot compare with {type(value).__name__} {value!r}")
    return value


# --- channels -------------------------------------------------------------------------------

def channel_wavelength(instrument: str, channel: str) -> float:
    """The wavelength of an array in Å: an AIA channel's name (``'171A'`` → 171), HMI 6173."""
    return float(channel.rstrip("A")) if instrument == "aia" else HMI_WAVELENGTH


def channel_physobs(instrument: str) -> str:
    """``intensity`` for AIA, ``vector_magnetic_field`` for HMI's Bx, By, Bz."""
    return next(name for name, owner in PHYSOBS.items() if owner == instrument)


def wanted_channels(terms: SearchTerms, channels: dict[str, str]) -> dict[str, list[str]]:
    """``{instrument: [channel, …]}`` of the catalog's ``{channel: instrument}`` that the terms
    ask for (instruments and channels in catalog order)."""
    chosen: dict[str, list[str]] = {}
    for channel, instrument in channels.items():
        if _matches(terms, instrument, channel):
            chosen.setdefault(instrument, []).append(channel)
    return chosen


def _matches(terms: SearchTerms, instrument: str, channel: str) -> bool:
    if terms.instrument and terms.instrument != instrument:
        return False
    if terms.channel and terms.channel.lower() != channel.lower():
        return False
    if terms.physobs and PHYSOBS.get(terms.physobs) != instrument:
        return False
    if terms.wavelength:
        low, high = terms.wavelength
        wavelength = channel_wavelength(instrument, channel)
        slack = WAVELENGTH_SLACK * wavelength
        return low - slack <= wavelength <= high + slack
    return True


# --- SQL ----------------------------------------------------------------------------------

def search_sql(terms: SearchTerms, channels: dict[str, list[str]],
               columns: dict[str, dict[str, str]]) -> tuple[str | None, dict[str, Any]]:
    """The SQL statement and its parameters for one branch over ``channels``
    (``{instrument: [channel, …]}``); ``columns`` are the views' ``{instrument: {column: type}}``
    (every instrument's: a keyword no view has is an error, one some views lack matches none
    of their frames).  ``(None, {})`` when no instrument can match."""
    if terms.start is None:
        raise QueryError("an SDOML search needs a time range: add a.Time(start, end)")
    if terms.tolerance is not None and not terms.sampled:
        raise QueryError("a.sdoml.Tolerance is the reach of a.Sample's grid times: add a.Sample(cadence), "
                         "or leave the Tolerance out")
    params: dict[str, Any] = {"start": terms.start, "end": terms.end}
    filters = _filter_columns(terms.filters, columns)
    parts = []
    for instrument, names in channels.items():
        if any(filters[n][instrument] is None for n in range(len(terms.filters))):
            continue  # a keyword this instrument's frames do not have: no frame matches
        params[f"channels_{instrument}"] = names
        conditions = [f'{filters[n][instrument]} {op} $k{n}' for n, (_, op, _) in enumerate(terms.filters)]
        exptime = '"EXPTIME"' if "EXPTIME" in columns[instrument] else None
        part = _sampled_part if terms.sampled else _frames_part
        parts.append(part(instrument, conditions, exptime))
    if not parts:
        return None, {}
    params.update({f"k{n}": value for n, (_, _, value) in enumerate(terms.filters)})
    if terms.sampled:
        params["cadence"] = terms.cadence
        params["tolerance"] = terms.tolerance if terms.tolerance is not None else terms.cadence / 2
        order = ("QUALIFY row_number() OVER (PARTITION BY instrument, year, channel, idx ORDER BY sample_time) = 1\n"
                 "ORDER BY sample_time, instrument, channel")
    else:
        order = "ORDER BY T_OBS, instrument, channel, year, idx"
    union = "\nUNION ALL BY NAME\n".join(parts)
    return f"SELECT * FROM (\n{union}\n)\n{order}", params


def _frames_part(instrument: str, conditions: list[str], exptime: str | None) -> str:
    where = " AND ".join([f"list_contains($channels_{instrument}, channel)",
                          "T_OBS BETWEEN $start AND $end", *conditions])
    extra = f", {exptime} AS exptime" if exptime else ""
    return f"SELECT '{instrument}' AS instrument, year, channel, idx, T_OBS{extra}\nFROM {instrument}\nWHERE {where}"


def _sampled_part(instrument: str, conditions: list[str], exptime: str | None) -> str:
    extra = f", v.{exptime} AS exptime" if exptime else ""
    where = "\nWHERE " + " AND ".join(f"v.{c}" for c in conditions) if conditions else ""
    return (f"SELECT n.instrument, n.year, n.channel, n.idx, n.T_OBS, n.time AS sample_time, n.offset_s{extra}\n"
            f"FROM nearest_frames($channels_{instrument}, $start, $end, $cadence, $tolerance) n\n"
            f"JOIN {instrument} v USING (year, channel, idx){where}")


def _filter_columns(filters, columns: dict[str, dict[str, str]]) -> list[dict[str, str | None]]:
    """Per filter, ``{instrument: quoted column or None}``: keywords match columns
    case-insensitively; a keyword no view has is an error naming the nearest ones."""
    resolved = []
    for name, _, _ in filters:
        per_instrument = {i: _column(name, names) for i, names in columns.items()}
        if columns and all(v is None for v in per_instrument.values()):
            known = sorted({c for names in columns.values() for c in names})
            close = difflib.get_close_matches(name.upper(), known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise QueryError(f"no keyword {name!r} in the catalog's {', '.join(columns)} headers{hint}")
        resolved.append(per_instrument)
    return resolved


def _column(name: str, names: dict[str, str]) -> str | None:
    found = next((c for c in names if c.lower() == name.lower()), None)
    return None if found is None else '"' + found.replace('"', '""') + '"'
