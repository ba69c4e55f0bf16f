"""Which SDOML variant a source is: SDOML v2 or SDOMLv2a (see :data:`VARIANTS`).

The two publish the same arrays under different store names, with different years and
different frame orders (v2a's HMI indices are not v2's), so a catalog records the variant of
each source, with the evidence, in ``manifest.json`` (``sources.<instrument>.variant``,
``variant_evidence``).  The evidence is read from what the build saw, strongest first:

* EVE: lines at the store's root are v2a's flat ``EVE_legacy``; lines in a group are v2's;
* AIA/HMI: a year past 2020 is v2a (v2 stops at 2020);
* HMI: a year whose frames are out of time order is v2a (v2's HMI is time-ordered), all
  years in order is v2;
* else the store's name, when it is a published one (``sdomlv2_small.zarr``, ``AIA.zarr`` …);
* else ``unknown`` (an AIA copy of 2010-2020 under another name: v2 and v2a are the same there).
"""

from __future__ import annotations

from typing import Any

from sdoml_sql.stores.source import PRESET_VARIANTS, PRESETS, VARIANTS

#: The last year of SDOML v2; SDOMLv2a goes on (to 2023).
LAST_V2_YEAR = 2020
UNKNOWN = "unknown"
_BY_STORE_NAME = {store: PRESET_VARIANTS[name] for name, store in PRESETS.items()}


def source_variant(instrument: str, url: str, partitions: list[dict[str, Any]]) -> tuple[str, str]:
    """``(variant, evidence)`` of a source from its manifest partition entries."""
    if instrument == "eve":
        flat = [p for p in partitions if not p.get("array_path")]
        if flat:
            return "v2a", "EVE lines at the store's root (flat EVE_legacy)"
        if partitions:
            return "v2", f"EVE lines in group {partitions[0].get('group')}"
    years = sorted({p["year"] for p in partitions if p.get("year") is not None})
    late = [y for y in years if y > LAST_V2_YEAR]
    if late:
        return "v2a", f"years past {LAST_V2_YEAR}: {', '.join(map(str, late))}"
    if instrument == "hmi":
        scrambled = sorted(p["array_path"] for p in partitions if p.get("time_ordered") is False)
        if scrambled:
            return "v2a", f"HMI frames out of time order in {scrambled[0]}"
        if partitions and all(p.get("time_ordered") for p in partitions):
            return "v2", "HMI frames in time order"
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if name in _BY_STORE_NAME:
        return _BY_STORE_NAME[name], f"store name {name}"
    return UNKNOWN, "nothing tells v2 from v2a here"


def variant_changes(old_sources: dict[str, dict], new_sources: dict[str, dict],
                    counts: dict[str, tuple[int, int, int]]) -> list[str]:
    """One line per instrument whose source changed variant (v2 → v2a or back), with what the
    build did about it: ``counts[instrument]`` is (rewritten, removed, unchanged) partitions."""
    lines = []
    for name, entry in new_sources.items():
        before, after = (old_sources.get(name) or {}).get("variant"), entry.get("variant")
        if before in VARIANTS and after in VARIANTS and before != after:
            written, removed, kept = counts.get(name, (0, 0, 0))
            lines.append(
                f"{name}: source is now {after} ({entry['url']}; {entry.get('variant_evidence')}), "
                f"was {before} ({old_sources[name]['url']}): {written} partitions rewritten, {removed} removed, "
                f"{kept} unchanged; idx now counts frames of the {after} arrays")
    return lines
