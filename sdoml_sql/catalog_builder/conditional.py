"""Conditional writes on object stores: create-only, and compare-and-swap on a version.

A version is what the store says identifies an object's content: the ETag on S3, the
generation on GCS.

- **S3**: ``PutObject`` with ``If-None-Match: *`` (create only if absent) and
  ``If-Match: <ETag>`` (replace only that version).  s3fs passes both through to botocore's
  ``put_object`` (``call_s3``), which also returns the new ETag.
- **GCS**: ``ifGenerationMatch=0`` and ``ifGenerationMatch=<generation>``.  gcsfs's
  ``pipe_file`` knows only the first (``mode="create"``) and returns no generation, so both go
  as one JSON API multipart upload through gcsfs's own session (credentials, billing project,
  retries), whose answer is the new object with its generation.

A failed precondition (HTTP 412) raises :class:`~sdoml_sql.exceptions.CommitConflict`.  Any
other store (a local directory has ``flock``; ``https://`` is read-only) has no versions:
:func:`supported` is false and the callers keep their unconditional writes.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid

from sdoml_sql.exceptions import CommitConflict

CONDITIONAL_PROTOCOLS = ("s3", "s3a", "gs", "gcs")


def supported(fs) -> bool:
    """Whether ``fs`` (an fsspec filesystem) is a store with conditional writes."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in CONDITIONAL_PROTOCOLS for p in protocols)


def _is_gcs(fs) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("gs", "gcs") for p in protocols)


def version(fs, path: str) -> str | None:
    """The object's current version (ETag or generation), or None if it does not exist."""
    fs.invalidate_cache(path)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    found = info.get("generation") if _is_gcs(fs) else (info.get("ETag") or info.get("etag"))
    return str(found) if found is not None else None


def read(fs, path: str) -> tuple[bytes | None, str | None]:
    """``(bytes, version)`` of one object read whole, or ``(None, None)`` if it does not exist.

    The version is read before and after the content and must not change in between (each
    write makes a new version), so the bytes are those of that version."""
    for _ in range(5):
        before = version(fs, path)
        if before is None:
            return None, None
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            continue
        if version(fs, path) == before:
            return data, before
    raise CommitConflict(f"{path} changed while it was read, five times in a row")


def put(fs, path: str, data: bytes, *, expected: str | None) -> str:
    """Write ``data`` to ``path`` only if the object is still at version ``expected``
    (``None``: only if it does not exist).  Returns the new version; raises
    :class:`CommitConflict` if the precondition failed."""
    if _is_gcs(fs):
        return _put_gcs(fs, path, data, expected)
    bucket, key, _ = fs.split_path(path)
    condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
    try:
        answer = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
    except OSError as error:  # s3fs: FileExistsError for If-None-Match, OSError(EINVAL) for If-Match
        if isinstance(error, FileExistsError) or _precondition_failed(error):
            raise CommitConflict(f"{path} is not at the version this build started from") from None
        raise
    finally:
        fs.invalidate_cache(path)
    return str(answer["ETag"])


def _precondition_failed(error: OSError) -> bool:
    """Whether s3fs's error is botocore's ``PreconditionFailed`` (HTTP 412)."""
    cause = getattr(error.__cause__, "response", None) or {}
    return (cause.get("Error", {}).get("Code") == "PreconditionFailed"
            or cause.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412)


def _put_gcs(fs, path: str, data: bytes, expected: str | None) -> str:
    bucket, key, _ = fs.split_path(path)
    url = f"{fs._location}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o"
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps({'name': key})}\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--".encode()
    try:  # a multipart upload: the name in its metadata part (fake-gcs-server checks preconditions only there)
        answer = fs.call("POST", url, uploadType="multipart", ifGenerationMatch=expected or "0", data=body,
                         headers={"Content-Type": f'multipart/related; boundary="{boundary}"'}, json_out=True)
    except FileExistsError:  # gcsfs's name for HTTP 412
        raise CommitConflict(f"{path} is not at the version this build started from") from None
    finally:
        fs.invalidate_cache(path)
    return str(answer["generation"])


def delete(fs, path: str, expected: str) -> bool:
    """Delete ``path`` if it is still at version ``expected``; False if it was not.  The version
    is checked, then the object deleted; GCS checks again on the server (``ifGenerationMatch``;
    fake-gcs-server 1.54 does not), S3 does not (a conditional ``DeleteObject`` is not offered by
    every S3 service)."""
    if version(fs, path) != expected:
        return False
    try:
        if _is_gcs(fs):
            bucket, key, _ = fs.split_path(path)
            fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=expected)
        else:
            fs.rm_file(path)
    except (FileExistsError, FileNotFoundError):
        return False
    finally:
        fs.invalidate_cache(path)
    return True
