"""Train / validation / test labels from whole calendar months, with a guard gap at month edges.

A month goes wholly to one split: to those named in ``val_months`` / ``test_months``
(``"2010-09"``; SDO-FM's style), else by a seeded hash of the month —
``u = int(md5("<seed>:<YYYY-MM>")[:8], 16) / 2**32``; ``test`` if ``u < test``, ``val`` if
``u < test + val``, else ``train``.  The hash gives the same month the same label whatever the
rest of the selection (and the same as the SQL macro ``split_label``, which computes it the
same way).  A sample less than ``gap`` from the start or end of its month, where the
neighbouring month has another label, gets no label (None): no sample of one split sits
within ``gap`` of a sample of another.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from sdoml_sql.exceptions import DatasetError

SPLITS = ("train", "val", "test")


def month_label(month: str, seed: int, val: float, test: float, val_months=(), test_months=()) -> str:
    """The split of the month ``"YYYY-MM"``."""
    if val_months or test_months:
        return "test" if month in test_months else "val" if month in val_months else "train"
    u = int(hashlib.md5(f"{seed}:{month}".encode()).hexdigest()[:8], 16) / 2 ** 32
    return "test" if u < test else "val" if u < test + val else "train"


def split_labels(times, val: float = 0.1, test: float = 0.1, seed: int = 0, gap="1 day",
                 val_months=(), test_months=()) -> np.ndarray:
    """Per time, ``"train"``, ``"val"``, ``"test"`` or None (inside a guard gap)."""
    _check_split(val, test, val_months, test_months)
    gap = _gap(gap)
    times = pd.DatetimeIndex(pd.to_datetime(times))
    if times.hasnans:
        raise DatasetError("split needs a time for every sample; this dataset has samples without one")
    start = times.to_period("M").to_timestamp()
    end = (times.to_period("M") + 1).to_timestamp()
    cache: dict[str, str] = {}

    def label(t: pd.Timestamp) -> str:
        key = t.strftime("%Y-%m")
        if key not in cache:
            cache[key] = month_label(key, seed, val, test, tuple(val_months), tuple(test_months))
        return cache[key]

    labels = np.empty(len(times), dtype=object)
    for n, (t, s, e) in enumerate(zip(times, start, end)):
        own = label(s)
        near_start = t - s < gap and label(s - pd.Timedelta(days=1)) != own
        near_end = e - t < gap and label(e) != own
        labels[n] = None if near_start or near_end else own
    return labels


def _gap(gap) -> pd.Timedelta:
    try:
        value = pd.Timedelta(gap)
    except (ValueError, TypeError):
        raise DatasetError(f"gap={gap!r}: give a duration such as '1 day' or '6 hours'") from None
    if value < pd.Timedelta(0):
        raise DatasetError(f"gap={gap!r}: give a duration of zero or more")
    return value


def _check_split(val: float, test: float, val_months, test_months) -> None:
    if not (0 <= val and 0 <= test and val + test <= 1):
        raise DatasetError(f"val={val!r}, test={test!r}: give fractions >= 0 whose sum is at most 1")
    for month in (*val_months, *test_months):
        if not isinstance(month, str) or len(month) != 7 or month[4] != "-":
            raise DatasetError(f"month {month!r}: write months as 'YYYY-MM'")
    both = sorted(set(val_months) & set(test_months))
    if both:
        raise DatasetError(f"months {', '.join(both)} are in both val_months and test_months")
