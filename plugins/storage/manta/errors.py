"""Manta's error answers as the ``StorageError``s of ``gateway.storage``."""

from __future__ import annotations

import json
import posixpath

import aiohttp

from gateway.storage import (
    AccessDenied,
    ChecksumMismatch,
    CopyUnsupported,
    DirectoryDoesNotExist,
    ObjectNotFound,
    ParentNotDirectory,
    StorageError,
    StorageRequestFailed,
    StorageUnavailable,
)

#: Error bodies are small JSON; never read more than this of one.
MAX_ERROR_BODY = 64 * 1024

ACCESS_CODES = frozenset(
    {
        "AccountBlocked",
        "AccountDoesNotExist",
        "AuthorizationFailed",
        "AuthorizationRequired",
        "AuthorizationSchemeNotAllowed",
        "InvalidAlgorithm",
        "InvalidAuthenticationToken",
        "InvalidHttpAuthenticationToken",
        "InvalidKeyId",
        "InvalidSignature",
        "KeyDoesNotExist",
        "MissingPermission",
        "RequestExpired",
        "InvalidHeader",
    }
)
#: Statuses that mean "Manta (or the balancer in front of it) is down for now".
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


async def error_from(response: aiohttp.ClientResponse, method: str, path: str) -> StorageError:
    """Map a Manta error answer ({"code","message"}, or just a status for HEAD)."""
    code = ""
    message = ""
    if method != "HEAD":
        try:
            raw = await response.content.read(MAX_ERROR_BODY)
            doc = json.loads(raw) if raw else {}
            if isinstance(doc, dict):
                code = str(doc.get("code") or "")
                message = str(doc.get("message") or "")
        except (ValueError, aiohttp.ClientError, TimeoutError):
            pass
    return map_error(response.status, code, message, path)


def map_error(status: int, code: str, message: str, path: str) -> StorageError:
    """The ``StorageError`` for Manta's ``status`` and error ``code`` (``""`` when none)."""
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    text = message or f"Manta answered {status} {code}".strip()
    if status in UNAVAILABLE_STATUSES or code == "ServiceUnavailable":
        return StorageUnavailable(f"Manta is unavailable: {text}", path=path)
    if code == "DirectoryDoesNotExist":
        return DirectoryDoesNotExist(f"{parent} does not exist", path=parent)
    if code == "ParentNotDirectory":
        return ParentNotDirectory(f"{parent} is not a directory", path=parent)
    if code == "ContentMD5Mismatch":
        return ChecksumMismatch(text, path=path)
    if code == "SnaplinksDisabledError":  # a 403, but the store's refusal, not the operator's
        return CopyUnsupported(f"Manta cannot copy: {text}", path=path)
    if code == "SourceObjectNotFound":  # a SnapLink's source; the caller knows which path
        return ObjectNotFound(text, path=path)
    if code == "ResourceNotFound" or (not code and status == 404):
        return ObjectNotFound(f"{path} was not found", path=path)
    if code in ACCESS_CODES or (not code and status in (401, 403)):
        return AccessDenied(f"Manta refused access: {text}", path=path)
    return StorageRequestFailed(text, path=path, code=code or str(status))
