"""What a build does: one partition per source array, their fingerprints, and which changed since the last build."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from sdoml_sql.catalog_builder.harvest import eve_array_path, eve_groups
from sdoml_sql.catalog_builder.layout import eve_group_name, eve_key, identity, partition_key
from sdoml_sql.exceptions import StoreError, unknown_names
from sdoml_sql.stores.sample import AIA_CHANNELS, HMI_COMPONENTS
from sdoml_sql.stores.source import Source

#: The arrays of a year group that tell an AIA store from an HMI store.
STORE_CHANNELS = {"aia": AIA_CHANNELS, "hmi": HMI_COMPONENTS}


@dataclass
class Partition:
    """One unit of the catalog: a source array (or EVE group) and where its rows go."""

    key: str  # "aia/year=2010/channel=171A"
    instrument: str
    array_path: str  # "2010/171A" or "MEGS-A"
    year: int | None = None
    channel: str | None = None
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def plan_sources(plan: dict[str, dict], sources: dict[str, Source]) -> dict[str, list[Partition]]:
    """The partitions of every planned source, after checking that each store holds what its
    instrument's stores hold (an HMI store given as ``aia`` is refused) and that every channel
    of the filter is an array of one of them (``171`` is refused, with a did-you-mean)."""
    listed = {name: _list_arrays(name, sources[name], plan[name]["filters"]) for name in plan if name != "eve"}
    wanted = set()
    for name in plan:
        wanted.update(plan[name]["filters"].get("channels") or ())
    if wanted and listed:
        held = [a for name in listed for arrays in listed[name].values() for a in arrays]
        where = (f"the {' and '.join(listed)} stores have" if len(listed) > 1
                 else f"the {next(iter(listed))} store has")
        message = unknown_names("channel", sorted(wanted), sorted(set(held), key=_channel_order), where)
        if message:
            raise StoreError(message)
    return {name: _plan_eve(sources[name]) if name == "eve" else
            _plan_partitions(name, sources[name], listed[name], plan[name]["filters"]) for name in plan}


def _channel_order(name: str):
    digits = "".join(c for c in name if c.isdigit())
    return (not digits, int(digits or 0), name)


def _list_arrays(instrument: str, source: Source, filters: dict) -> dict[str, list[str]]:
    """``{year: arrays}`` of the store's year groups chosen by the filter; the store's kind,
    told from its array names, must be ``instrument``."""
    years = filters.get("years")
    groups, _ = source.children()
    year_names = sorted(g for g in groups if g.isdigit() and (not years or int(g) in years))
    if not year_names:
        if any(g.isdigit() for g in groups) or not groups:
            raise StoreError(f"store {source.url} has no year groups" + (f" among {years}" if years else ""))
        raise StoreError(f"{instrument}: store {source.url} is not an {instrument.upper()} store: it has groups "
                         f"{', '.join(sorted(groups)[:5])} and no year groups (an EVE store? use --eve)")
    listed = {year: source.children(year)[1] for year in year_names}
    kind = store_kind(a for arrays in listed.values() for a in arrays)
    if kind is not None and kind != instrument:
        raise StoreError(f"{instrument}: store {source.url} is an {kind.upper()} store (its arrays are "
                         f"{', '.join(sorted({a for v in listed.values() for a in v}, key=_channel_order)[:9])}); "
                         f"give it as --{kind}")
    return listed


def store_kind(array_names) -> str | None:
    """``"aia"`` or ``"hmi"`` when every array name is one of that instrument's channels,
    else None (a store of another layout: the build reads it as given)."""
    names = set(array_names)
    for kind, channels in STORE_CHANNELS.items():
        if names and names <= set(channels):
            return kind
    return None


def _plan_partitions(instrument: str, source: Source, listed: dict[str, list[str]], filters: dict) -> list[Partition]:
    wanted_channels = set(filters.get("channels") or ())
    partitions = []
    for year, arrays in listed.items():
        chosen = [a for a in arrays if a in wanted_channels] if wanted_channels & set(arrays) else arrays
        for channel in chosen:
            path = f"{year}/{channel}"
            partitions.append(Partition(
                key=partition_key(instrument, year, channel), instrument=instrument,
                array_path=path, year=int(year), channel=channel, fingerprint=fingerprint(source, [path]),
            ))
    return partitions


def _plan_eve(source: Source) -> list[Partition]:
    """One partition per place holding EVE lines, found by content (:func:`eve_groups`): the
    ``MEGS-A`` group of SDOML v2, or the root of SDOMLv2a's flat EVE_legacy (``group=root``)."""
    groups, _ = source.children()
    if groups and all(g.isdigit() for g in groups):
        kind = store_kind(source.children(groups[0])[1])
        raise StoreError(f"eve: store {source.url} is not an EVE store: it has year groups "
                         f"{', '.join(sorted(groups)[:5])}; give it as " + (f"--{kind}" if kind else "--aia or --hmi"))
    partitions = []
    for group in eve_groups(source):
        _, arrays = source.children(group)
        paths = [eve_array_path(group, a) for a in arrays]
        partitions.append(Partition(key=eve_key(eve_group_name(group)), instrument="eve", array_path=group,
                                    fingerprint=fingerprint(source, paths)))
    return partitions


def fingerprint(source: Source, array_paths: list[str]) -> str:
    """A digest of the arrays' ``.zarray`` and of their ``.zattrs`` identity.

    The attributes are identified by size plus what the backend offers (ETag, md5,
    generation, mtime) so that an unchanged year costs a metadata request, not a 221 MB
    download; backends that offer none are hashed by content.
    """
    digest = hashlib.sha256()
    for path in array_paths:
        digest.update(orjson.dumps(source.zarray(path), option=orjson.OPT_SORT_KEYS))
        digest.update(_attrs_identity(source, f"{path}/.zattrs"))
    return digest.hexdigest()[:32]


def _attrs_identity(source: Source, key: str) -> bytes:
    try:
        info = source.info(key)
    except FileNotFoundError:
        attrs = (source.consolidated or {}).get(key)
        return orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS) if attrs is not None else b"-"
    stamp = identity(info)
    if len(stamp) == 1:  # the size alone: the backend offers no content identity
        stamp["sha256"] = hashlib.sha256(source.read_bytes(key)).hexdigest()
    return orjson.dumps(stamp, option=orjson.OPT_SORT_KEYS)


def split_changed(planned: dict[str, list[Partition]], old: dict[str, dict], full: bool):
    todo, keep = [], []
    for partitions in planned.values():
        for partition in partitions:
            previous = old.get(partition.key)
            if not full and previous and previous.get("fingerprint") == partition.fingerprint:
                keep.append(partition.key)
            else:
                todo.append(partition)
    return todo, keep
