"""SDOML search attributes, registered with Fido as ``a.sdoml``.

* ``a.sdoml.Catalog(path_or_url)`` — answer from this catalog (a directory or an ``s3://``,
  ``gs://``, ``https://`` URL) instead of the default one
  (``$SDOML_CATALOG``, then the user default).  A query with any ``a.sdoml`` attribute is
  answered by the SDOML client alone.
* ``a.sdoml.Channel('Bz')`` — one array: an AIA channel (``'171A'``) or an HMI component
  (``'Bx'``, ``'By'``, ``'Bz'``).
* ``a.sdoml.Tolerance(3 * u.min)`` — with ``a.Sample``: how far the nearest frame may be from
  a grid time (default: half the sample cadence).
* ``a.sdoml.Keyword('EXPTIME') < 2`` — a filter on any FITS keyword of the catalog
  (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``); the value is bound, never pasted into SQL.
"""

from __future__ import annotations

import os

import astropy.units as u
from sunpy.net.attr import AttrComparison, ComparisonParamAttrWrapper, SimpleAttr

__all__ = ["Catalog", "Channel", "Keyword", "KeywordFilter", "Tolerance"]


class Catalog(SimpleAttr):
    """The catalog to search, a directory or a URL (default: ``$SDOML_CATALOG``, then the user default)."""

    def __init__(self, value: str | os.PathLike):
        super().__init__(os.fspath(value))


class Channel(SimpleAttr):
    """One SDOML array: an AIA channel (``'171A'``, ``'1600A'``) or an HMI component (``'Bz'``)."""

    def __init__(self, value: str):
        super().__init__(str(value))


class Tolerance(SimpleAttr):
    """How far from a grid time of ``a.Sample`` the nearest frame may be (a time Quantity)."""

    @u.quantity_input(value=u.s)
    def __init__(self, value):
        super().__init__(value.to(u.s))


class KeywordFilter(AttrComparison):
    """``keyword operator value``: made by comparing a :class:`Keyword` with a value."""

    OPERATORS = ("<", "<=", ">", ">=", "=", "!=")


class Keyword(ComparisonParamAttrWrapper):
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
