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


class EmptyResultWarning(UserWarning):
    """A query returned no rows and filters a catalog column on a value the catalog does not
    hold (``WHERE channel = '171'``): the warning names the value and the ones there are."""
