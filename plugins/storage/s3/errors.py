"""botocore's and aiohttp's errors as the ``StorageError``s of ``gateway.storage``."""

from __future__ import annotations

import asyncio

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from gateway.storage import (
    AccessDenied,
    ChecksumMismatch,
    ObjectNotFound,
    StorageError,
    StorageRequestFailed,
    StorageUnavailable,
)

ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
        "InvalidSecurity",
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "503",
        "500",
    }
)


def map_error(exc: BaseException, path: str | None, bucket: str) -> StorageError:
    """Turn a botocore/aiohttp error into the gateway's StorageError of the same meaning."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = str(error.get("Message") or code or exc)
        if code == "NoSuchBucket":
            return StorageRequestFailed(
                f"the S3 bucket {bucket!r} does not exist", path=path, code=code
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{path} was not found", path=path)
        if code in ACCESS_CODES or status == 403:
            return AccessDenied(f"S3 refused access: {message}", path=path)
        if code == "BadDigest":
            return ChecksumMismatch(f"S3: {message}", path=path)
        if code in UNAVAILABLE_CODES or status in (429, 500, 502, 503, 504):
            return StorageUnavailable(f"S3 is unavailable: {code or status}", path=path)
        return StorageRequestFailed(
            f"S3 refused the request: {code}: {message}", path=path, code=code
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"no usable S3 credentials: {exc}", path=path)
    if isinstance(
        exc,
        ConnectionError | HTTPClientError | aiohttp.ClientError | asyncio.TimeoutError | OSError,
    ):
        return StorageUnavailable(f"S3 is unreachable: {exc}", path=path)
    if isinstance(exc, BotoCoreError):
        return StorageRequestFailed(f"S3 client error: {exc}", path=path)
    return StorageRequestFailed(f"S3 request failed: {exc!r}", path=path)
