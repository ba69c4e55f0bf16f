"""SDOML search attributes, registered with Fido as ``a.sdoml``.

* ``a.sdoml.Catalog(path_or_url)`` — answer from this catalog (a directory or an ``s3://``,
  ``gs://``, ``https://`` URL) instead of the default one
  (``$SDOML_CATALOG``, then the user default).  A query with any ``a.sdoml`` attribute is
  answered by the SDOML client alone.
* ``a.sdoml.Channel('Bz')`` — one array: an AIA channel (``'171A'``) or an HMI component
  (``'Bx'``, ``'By'``, ``'Bz'``); tab-completes as ``a.sdoml.Channel.aia_171a``,
  ``a.sdoml.Channel.hmi_bz``.  An unknown name is refused with a did-you-mean.
* ``a.sdoml.Tolerance(3 * u.min)`` — with ``a.Sample`` (a search with a Tolerance and no
  Sample is refused): how far the nearest frame may be from a grid time (default: half the
  sample cadence).
* ``a.sdoml.Keyword('EXPTIME') < 2`` — a filter on any FITS keyword of the catalog
  (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``); the value is bound, never pasted into SQL.
"""

import os as _os
import re as _re

import astropy.units as _u
from sunpy.net.attr import AttrComparison as _AttrComparison
from sunpy.net.attr import ComparisonParamAttrWrapper as _ComparisonParamAttrWrapper
from sunpy.net.attr import SimpleAttr as _SimpleAttr

from sdoml_sql.exceptions import InputError as _InputError
from sdoml_sql.exceptions import unknown_names as _unknown_names
from sdoml_sql.stores.sample import AIA_CHANNELS as _AIA_CHANNELS
from sdoml_sql.stores.sample import HMI_COMPONENTS as _HMI_COMPONENTS

__all__ = ["Catalog", "Channel", "Keyword", "KeywordFilter", "Tolerance"]

#: The SDOML v2 arrays a Channel may name, by instrument.
CHANNELS = {**dict.fromkeys(_AIA_CHANNELS, "aia"), **dict.fromkeys(_HMI_COMPONENTS, "hmi")}


def __dir__():  # what a.sdoml offers (tab completion): the attrs, not this module's imports
    return sorted(__all__)


class Catalog(_SimpleAttr):
    """The catalog to search, a directory or a URL (default: ``$SDOML_CATALOG``, then the user default)."""

    def __init__(self, value: "str | _os.PathLike"):
        super().__init__(_os.fspath(value))


class Channel(_SimpleAttr):
    """One SDOML array: an AIA channel (``'171A'``, ``'1600A'``) or an HMI component (``'Bz'``).

    Case does not matter, and an instrument may lead (``'AIA_171A'``, the value of
    ``a.sdoml.Channel.aia_171a``); a name SDOML does not have raises
    :class:`~sdoml_sql.exceptions.InputError` with a did-you-mean (``'171'`` → ``171A``)."""

    def __init__(self, value: str):
        super().__init__(channel_name(value))


def channel_name(value) -> str:
    """The SDOML array a Channel value names (``'aia 171a'`` → ``'171A'``), or InputError."""
    text = str(value).strip()
    words = _re.split(r"[\s_]+", text)
    if len(words) == 2 and words[0].lower() in set(CHANNELS.values()):
        text = words[1]
    found = next((name for name in CHANNELS if name.lower() == text.lower()), None)
    if found is None:
        raise _InputError(_unknown_names("channel", [text], list(CHANNELS), "SDOML has"))
    return found


class Tolerance(_SimpleAttr):
    """How far from a grid time of ``a.Sample`` the nearest frame may be (a time Quantity);
    only with ``a.Sample``."""

    @_u.quantity_input(value=_u.s)
    def __init__(self, value):
        super().__init__(value.to(_u.s))


class KeywordFilter(_AttrComparison):
    """``keyword operator value``: made by comparing a :class:`Keyword` with a value."""

    OPERATORS = ("<", "<=", ">", ">=", "=", "!=")


class Keyword(_ComparisonParamAttrWrapper):
    """A FITS keyword of the catalog, compared with a value: ``Keyword('EXPTIME') < 2``."""

    def __lt__(self, other):
        return KeywordFilter(self.name, "<", other)

    def __le__(self, other):
        return KeywordFilter(self.name, "<=", other)

    def __gt__(self, other):
        return KeywordFilter(self.name, ">", other)

    def __ge__(self, other):
        return KeywordFilter(self.name, ">=", other)

    def __eq__(self, other):
        return KeywordFilter(self.name, "=", other)

    def __ne__(self, other):
        return KeywordFilter(self.name, "!=", other)

    __hash__ = object.__hash__
