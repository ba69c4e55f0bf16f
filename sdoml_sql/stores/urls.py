"""Where stores live.

The presets and their mirrors, names resolved to URLs, storage options per protocol and
endpoint, and a reachability check that fails fast offline.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import urllib.parse
from typing import Any

from sdoml_sql import config
from sdoml_sql.config import GCS_EMULATOR_ENV, S3_ENDPOINT_ENVS
from sdoml_sql.exceptions import OfflineError, StoreError
from sdoml_sql.stores.retries import ReadPolicy

#: Base URLs of the two public copies of SDOML v2.
MIRRORS = {
    "aws": "s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/",
    "gcs": "gs://fdl-sdoml-v2/",
}

#: Base URLs of the two copies of SDOMLv2a, the FDL-X re-package (2010-2023) SDO-FM trains on.
MIRRORS_V2A = {
    "aws": "s3://nasa-radiant-data/helioai-datasets/us-fdlx-ard/sdomlv2a/",
    "gcs": "gs://us-fdlx-ard-sdomlv2a/",
}

#: Named public stores: ``resolve_url("aia-small")`` or ``resolve_url("gcs:hmi-v2a")``.
PRESETS = {
    "aia-small": "sdomlv2_small.zarr",
    "aia": "sdomlv2.zarr",
    "hmi-small": "sdomlv2_hmi_small.zarr",
    "hmi": "sdomlv2_hmi.zarr",
    "eve": "sdomlv2_eve.zarr",
    "aia-v2a": "AIA.zarr",
    "hmi-v2a": "HMI.zarr",
    "eve-v2a": "EVE_legacy.zarr",
}

#: The variant of each preset (see :data:`VARIANTS`); its mirrors are ``VARIANT_MIRRORS[variant]``.
PRESET_VARIANTS = {name: "v2a" if name.endswith("-v2a") else "v2" for name in PRESETS}
VARIANT_MIRRORS = {"v2": MIRRORS, "v2a": MIRRORS_V2A}

#: The SDOML variants a catalog records for each source: what each means, in one line.
VARIANTS = {
    "v2": "SDOML v2 (fdl-sdoml-v2: AIA/HMI 2010-2020, time-ordered HMI, EVE in a MEGS-A group)",
    "v2a": "SDOMLv2a (FDL-X: AIA/HMI 2010-2023, HMI out of time order, flat EVE_legacy)",
}

DEFAULT_MIRROR = "aws"
DNS_TIMEOUT_S = 1.5
DEFAULT_HOSTS = {"gs": "storage.googleapis.com", "gcs": "storage.googleapis.com", "s3": "s3.amazonaws.com",
                 "s3a": "s3.amazonaws.com"}
REMOTE_PROTOCOLS = frozenset({"http", "https", "s3", "s3a", "gs", "gcs"})


def resolve_url(name_or_url: str, mirror: str | None = None) -> str:
    """Return the URL for a preset name (``aia-small``, ``gcs:hmi`` …) or the URL itself.

    ``mirror`` (``aws`` — the anonymous mirror, the default — or ``gcs``) picks the copy for a
    bare preset name; a ``gcs:``/``aws:`` prefix on the name wins over it.
    """
    name = str(name_or_url)
    prefix, _, rest = name.partition(":")
    if rest and prefix in MIRRORS and rest in PRESETS:
        return VARIANT_MIRRORS[PRESET_VARIANTS[rest]][prefix] + PRESETS[rest]
    if name in PRESETS:
        mirror = mirror or config.env_text(config.MIRROR_ENV) or DEFAULT_MIRROR
        if mirror not in MIRRORS:
            raise StoreError(f"unknown mirror {mirror!r}: choose one of {', '.join(MIRRORS)}")
        return VARIANT_MIRRORS[PRESET_VARIANTS[name]][mirror] + PRESETS[name]
    return name


def url_protocol(url: str) -> str:
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].lower()


def default_storage_options(url: str, billing_project: str | None = None,
                            timeout: float | None = None) -> dict[str, Any]:
    """Storage options that make the public stores work the way their users expect.

    ``s3://`` is anonymous unless AWS credentials are in the environment; its endpoint comes
    from ``SDOML_ENDPOINT_URL``, ``SDOML_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``.  ``gs://`` bills
    ``billing_project`` (or ``SDOML_BILLING_PROJECT``) for the requester-pays bucket and is
    anonymous without credentials; its endpoint comes from ``SDOML_ENDPOINT_URL`` or
    ``STORAGE_EMULATOR_HOST`` (the variable gcsfs and the Google clients honour).  Socket
    timeouts follow ``timeout`` (else ``SDOML_TIMEOUT``).
    """
    protocol = url_protocol(url)
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            options["anon"] = True
        endpoint = config.setting("endpoint_url") or config.first_env(*S3_ENDPOINT_ENVS)
        if endpoint:
            options["endpoint_url"] = endpoint
        attempt_timeout = ReadPolicy.from_env(timeout).timeout / 2
        options["config_kwargs"] = {"connect_timeout": min(10.0, attempt_timeout), "read_timeout": attempt_timeout,
                                    "retries": {"max_attempts": 2, "mode": "standard"}}
    elif protocol in ("gs", "gcs"):
        project = billing_project or config.env_text(config.BILLING_ENV)
        if project:
            options["requester_pays"] = project
            options["project"] = project
        elif not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            options["token"] = "anon"
        endpoint = config.setting("endpoint_url") or config.env_text(GCS_EMULATOR_ENV)
        if endpoint:
            options["endpoint_url"] = endpoint if "://" in endpoint else "http://" + endpoint
            options.setdefault("token", "anon")
    return options


def explicit_endpoint(url: str, options: dict[str, Any]) -> str | None:
    """The endpoint URL an ``s3://`` store (an S3-compatible service) or a ``gs://`` store (a
    GCS emulator) is read from when one is set; None for the cloud's own hosts and others."""
    protocol = url_protocol(url)
    if protocol in ("s3", "s3a"):
        endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    elif protocol in ("gs", "gcs"):
        endpoint = options.get("endpoint_url") or config.env_text(GCS_EMULATOR_ENV)
    else:
        return None
    return (endpoint if "://" in endpoint else "http://" + endpoint) if endpoint else None


def _remote_host(url: str, options: dict[str, Any]) -> str | None:
    protocol = url_protocol(url)
    if protocol in ("http", "https"):
        return urllib.parse.urlsplit(url).hostname
    endpoint = explicit_endpoint(url, options)
    if endpoint:
        return urllib.parse.urlsplit(endpoint).hostname
    return DEFAULT_HOSTS.get(protocol)


def check_reachable(url: str, storage_options: dict[str, Any] | None = None, what: str = "store") -> None:
    """Raise :class:`OfflineError` within ~2 s if a remote store's host does not resolve
    (``what`` names it in the message: ``store``, or ``catalog`` for a catalog's prefix).

    gcsfs and s3fs retry for 30–90 s before failing offline; a DNS look-up fails in
    milliseconds, so this runs before any remote access.
    """
    host = _remote_host(url, storage_options or {})
    if not host:
        return
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, host, None)
    try:
        future.result(timeout=DNS_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise OfflineError(f"offline: no DNS answer for {host} within {DNS_TIMEOUT_S} s ({what} {url})") from None
    except OSError as error:
        raise OfflineError(f"offline: cannot resolve {host} for {what} {url} ({error.strerror or error})") from None
    finally:
        pool.shutdown(wait=False)
