"""Store reads that fail.

The read policy (timeout, retries, backoff), what counts as a transient failure, and the one
wording of store errors (:func:`store_errors`: a refusal, or what could not be done).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

from sdoml_sql import config
from sdoml_sql.exceptions import AccessDeniedError, SdomlError, StoreError

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 5
FIRST_PAUSE_S = 0.2
MAX_PAUSE_S = 5.0


@dataclass(frozen=True)
class ReadPolicy:
    """How hard a remote read tries: ``retries`` after the first attempt, pauses doubling
    from ``first_pause`` (with jitter, at most ``max_pause``), and a deadline of ``timeout``
    seconds for one object, every attempt and pause included."""

    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    first_pause: float = FIRST_PAUSE_S
    max_pause: float = MAX_PAUSE_S

    @classmethod
    def from_env(cls, timeout: float | None = None, retries: int | None = None) -> ReadPolicy:
        """The policy from the arguments, else the settings (:mod:`sdoml_sql.config`:
        ``--store-timeout``, ``SDOML_TIMEOUT`` / ``--retries``, ``SDOML_RETRIES``), else defaults."""
        timeout = config.store_timeout(timeout, StoreError)
        timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        retries = config.store_retries(retries, StoreError)
        retries = DEFAULT_RETRIES if retries is None else retries
        if not timeout > 0 or retries < 0:
            raise StoreError(f"timeout must be > 0 s and retries >= 0 (got {timeout}, {retries})")
        return cls(timeout=timeout, retries=retries)

    def pause(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1, 2 …): exponential with full jitter."""
        ceiling = min(self.max_pause, self.first_pause * 2 ** (attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2


def is_transient(error: BaseException) -> bool:
    """Whether a failed read is worth retrying: not a missing object, not a refusal."""
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return False
    if isinstance(error, (ValueError, TypeError, KeyError)) or _looks_denied(error):
        return False
    return True


def error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    detail = text[0][:200] if text else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


class Attempts:
    """The bookkeeping of one object's read under a :class:`ReadPolicy`: each attempt gets at
    most half the policy's timeout (so a stalled answer leaves time for a retry), and the
    whole read ends at the deadline."""

    def __init__(self, policy: ReadPolicy):
        self.policy = policy
        self.deadline = time.monotonic() + policy.timeout
        self.count = 0
        self.last: BaseException | None = None

    def budget(self) -> float:
        """Seconds the next attempt may take."""
        return max(0.001, min(self.deadline - time.monotonic(), self.policy.timeout / 2))

    def failed(self, error: BaseException) -> float | None:
        """Note a failed attempt; the pause before the next one, or ``None`` to give up."""
        self.count += 1
        self.last = error
        if self.count > self.policy.retries:
            return None
        pause = self.policy.pause(self.count)
        return pause if time.monotonic() + pause < self.deadline else None

    def give_up(self, url: str, key: str, what: str = "store") -> StoreError:
        """The one-line error naming the store (``what``: or the catalog) and the object."""
        if isinstance(self.last, (asyncio.TimeoutError, TimeoutError)):
            reason = f"timed out (SDOML_TIMEOUT={self.policy.timeout:g} s)"
        else:
            reason = error_line(self.last)
        return StoreError(f"{what} {url}: cannot read {key} after {self.count} attempt(s): {reason}")


#: Words in an object store's error that mean it refused access (retrying cannot help).
DENIED_WORDS = ("403", "forbidden", "denied", "requester pays", "user project")


def _looks_denied(error: Exception) -> bool:
    text = str(error).lower()
    return any(word in text for word in DENIED_WORDS)


def _access_denied(url: str, error: Exception, what: str = "store") -> AccessDeniedError:
    hint = ""
    if what == "store" and url.lower().startswith(("gs://", "gcs://")):
        hint = "; the GCS bucket is requester-pays: pass --billing-project PROJECT, or use the anonymous AWS mirror"
    return AccessDeniedError(f"access refused to {what} {url}: {str(error).splitlines()[0][:200]}{hint}")


@contextlib.contextmanager
def store_errors(url: str, doing: str, what: str = "store", failure: type[SdomlError] = StoreError):
    """Word what an object store raises in the block as one line naming ``what`` (``store``
    or ``catalog``) at ``url`` and what was being ``done``: a refusal is an
    :class:`AccessDeniedError`, another ``OSError`` a ``failure`` (``{what} {url}: cannot
    {doing}: …``).  ``FileNotFoundError`` (callers decide what a missing object means) and
    errors already worded pass through."""
    try:
        yield
    except (FileNotFoundError, SdomlError):
        raise
    except PermissionError as error:
        raise _access_denied(url, error, what) from None
    except OSError as error:
        if _looks_denied(error):
            raise _access_denied(url, error, what) from None
        raise failure(f"{what} {url}: cannot {doing}: {error_line(error)}") from None
