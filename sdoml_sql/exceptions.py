"""Every error sdoml-sql raises on purpose, in one place.

Each message is one line that names what was wrong: the store, array, key, frame or SQL
token.  The CLI prints ``str(error)`` and exits non-zero; it never shows a traceback for
these.
"""

#: How many rows, frames or values an error names before it says "and N more".
MAX_NAMED_ROWS = 5


class SdomlError(Exception):
    """Base class of every error raised on purpose by sdoml-sql."""


class StoreError(SdomlError):
    """A store cannot be opened, or lacks a group or array the caller needs."""


class OfflineError(StoreError):
    """The host of a remote store does not resolve or answer: the machine is offline."""


class AccessDeniedError(StoreError):
    """The object store refused access (e.g. GCS requester-pays without a billing project)."""


class HarvestError(SdomlError):
    """Per-frame headers of a source array cannot be read into the catalog."""


class CatalogError(SdomlError):
    """A catalog directory is missing, corrupt, or locked by another build."""


class QueryError(SdomlError):
    """SQL is refused (not one read-only statement) or fails in DuckDB."""


class FetchError(SdomlError):
    """Frames of a selection cannot be read, or a selection row has no frame."""


class DatasetError(SdomlError):
    """An ML dataset, loader, split or export cannot be made from the given selection or options."""


class InputError(SdomlError, ValueError):
    """An argument is not a valid value (a year that is not a number, an unknown sample channel)."""


class SearchErrorWarning(UserWarning):
    """A Fido search of the SDOML client failed: the one-line error as a warning, since SunPy 8's
    ``Fido.search`` keeps a client's exception in ``results.errors`` instead of raising it."""


class EmptyResultWarning(UserWarning):
    """A query returned no rows and filters a catalog column on a value the catalog does not
    hold (``WHERE channel = '171'``): the warning names the value and the ones there are."""


class CommitConflict(CatalogError):
    """A conditional write to an object store found the object changed since it was read
    (HTTP 412): another build took the lock or committed a manifest first."""


# --- checking names and lists the user gave ------------------------------------------------------

def items(value, what: str) -> list | None:
    """``value`` as a list: None stays None, a single string or int is one item
    (``channels="171A"``, ``years=2020``), a comma-separated string is split
    (``"171A,193A"``), any other iterable is listed.  Raises :class:`InputError` naming
    ``what`` for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise InputError(f"{what}={value!r}: give one value or a list of them") from None


def years_list(value, what: str = "years") -> list[int] | None:
    """:func:`items` of years as ints; a value that is not a year raises :class:`InputError`
    with one line naming it (``years: 'abc' is not a year``)."""
    listed = items(value, what)
    if listed is None:
        return None
    years = []
    for year in listed:
        try:
            years.append(int(str(year).strip()))
        except ValueError:
            raise InputError(f"{what}: {year!r} is not a year (give years such as 2010,2011)") from None
    return years


def closest_names(wanted, known, n: int = 1) -> list[str]:
    """The names of ``known`` a user most likely meant by ``wanted``, case-insensitively.  A name
    with digits (a wavelength such as ``171``) only matches names with the same digits, so
    ``4500A`` suggests nothing rather than ``1700A``."""
    import difflib

    def digits(text: str) -> str:
        return "".join(ch for ch in text if ch.isdigit())

    upper = {str(k).upper(): str(k) for k in known}
    text = str(wanted).upper()
    candidates = [k for k in upper if digits(k) == digits(text)] if digits(text) else list(upper)
    return [upper[c] for c in difflib.get_close_matches(text, candidates, n=n, cutoff=0.5)]


def unknown_names(what: str, wanted, known, holder: str) -> str | None:
    """The one-line message for names of ``wanted`` not in ``known``, ``holder`` saying whose
    they are (``unknown channel 171: the catalog has 94A, 131A, …; did you mean 171A?`` for
    ``holder="the catalog has"``), or None."""
    known = list(dict.fromkeys(known))
    unknown = [w for w in dict.fromkeys(wanted) if w not in known]
    if not unknown:
        return None
    close = [c for u in unknown for c in closest_names(u, known)]
    guess = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    return (f"unknown {what} {', '.join(map(str, unknown))}: {holder} "
            f"{', '.join(map(str, known)) or 'none'}{guess}")
