"""Stage 7, clients: the SunPy Fido client, ``Fido.search`` over an sdoml-sql catalog, ``Fido.fetch`` to FITS.

Importing this package registers :class:`~sdoml_sql.fido.client.SDOMLClient` with
``sunpy.net.Fido`` and its attrs as ``sunpy.net.attrs.sdoml`` (:mod:`sdoml_sql.fido.attrs`)::

    import sdoml_sql.fido  # registers the client
    from sunpy.net import Fido, attrs as a
    results = Fido.search(a.Time("2010-08-27", "2010-08-28"), a.Instrument.aia,
                          a.Wavelength(171 * u.AA), a.Sample(12 * u.min))
    files = Fido.fetch(results, path="frames/{file}")

In: Fido attrs (``a.Time``, ``a.Instrument``, ``a.Wavelength``, ``a.Physobs``, ``a.Sample``
and ``a.sdoml.*``).  Out: a ``QueryResponseTable`` of frames (searched with the catalog's
SQL) and, from ``Fido.fetch``, FITS files (read by the fetch stage).

May import: :mod:`sdoml_sql.query` (the front door), :mod:`sdoml_sql.fetch` and the earlier
stages — the only part of the package that imports ``sunpy.net``.
"""

from sdoml_sql.fido import attrs
from sdoml_sql.fido.client import SDOMLClient

__all__ = ["SDOMLClient", "attrs"]
