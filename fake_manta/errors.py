"""Manta's wire errors as a typed exception hierarchy.

Handlers, the auth middleware and the fault injector raise these; the error middleware is the only
place that turns them into responses (``{"code","message"}`` with ``Content-Type: application/json``
exactly, as muskie's ``formatJSON`` does). Codes and statuses follow muskie ``lib/errors.js``
plus the few restify ones (manta-protocol.md §6).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "CODES",
    "MantaError",
    "error_body",
    "error_for_code",
]


class MantaError(Exception):
    """Base class: ``code`` and ``status`` are class attributes; ``message`` is per instance.

    ``headers`` lets an error carry extra response headers (416's ``Content-Range``, 503's
    ``Retry-After``, 405's ``Allow``).
    """

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.message = message if message is not None else self.default_message
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)

    def body(self) -> bytes:
        """The JSON body muskie sends."""
        return error_body(self.code, self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


def error_body(code: str, message: str) -> bytes:
    """``{"code":..,"message":..}`` serialised compactly, as restify does."""
    return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()


def body_md5(body: bytes) -> str:
    """Base64 MD5 of a body, for the ``Content-MD5`` header muskie puts on JSON responses."""
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # Manta's wire format


def _define(name: str, status: int, default_message: str = "") -> type[MantaError]:
    cls = type(name, (MantaError,), {"code": name, "status": status,
                                     "default_message": default_message or name})
    cls.__module__ = __name__
    cls.__doc__ = f"Manta ``{name}`` ({status})."
    return cls


# --- auth (§6, §7) ---------------------------------------------------------------------------
class AccountDoesNotExist(MantaError):
    code, status = "AccountDoesNotExist", 403


class AccountBlocked(MantaError):
    code, status = "AccountBlocked", 403


class AuthorizationSchemeNotAllowed(MantaError):
    code, status = "AuthorizationSchemeNotAllowed", 403


class AuthorizationFailed(MantaError):
    code, status = "AuthorizationFailed", 403


class AuthorizationRequired(MantaError):
    code, status = "AuthorizationRequired", 401


class InvalidAlgorithm(MantaError):
    code, status = "InvalidAlgorithm", 401


class InvalidAuthenticationToken(MantaError):
    code, status = "InvalidAuthenticationToken", 403


class InvalidHttpAuthenticationToken(MantaError):
    code, status = "InvalidHttpAuthenticationToken", 403


class InvalidKeyId(MantaError):
    code, status = "InvalidKeyId", 403


class InvalidSignature(MantaError):
    code, status = "InvalidSignature", 403
    default_message = "The signature we calculated does not match the one you sent"


class KeyDoesNotExist(MantaError):
    code, status = "KeyDoesNotExist", 403


class MissingPermission(MantaError):
    code, status = "MissingPermission", 403


class NoMatchingRoleTag(MantaError):
    code, status = "NoMatchingRoleTag", 403


class InvalidQueryStringAuthentication(MantaError):
    code, status = "InvalidQueryStringAuthentication", 403


class QueryParameterForbidden(MantaError):
    code, status = "QueryParameterForbidden", 403


class SecureTransportRequired(MantaError):
    code, status = "SecureTransportRequired", 403


class UserDoesNotExist(MantaError):
    code, status = "UserDoesNotExist", 403


class InvalidRole(MantaError):
    code, status = "InvalidRole", 409


class InvalidRoleTag(MantaError):
    code, status = "InvalidRoleTag", 409


class InvalidHeader(MantaError):
    """restify: malformed Authorization header or clock skew."""

    code, status = "InvalidHeader", 400


class RequestExpired(MantaError):
    code, status = "RequestExpired", 400


# --- storage -----------------------------------------------------------------------------------
class BadRequest(MantaError):
    code, status = "BadRequest", 400


class ContentMD5Mismatch(MantaError):
    code, status = "ContentMD5Mismatch", 400


class ConcurrentRequest(MantaError):
    code, status = "ConcurrentRequest", 409


class ContentLengthRequired(MantaError):
    code, status = "ContentLengthRequired", 411


class DirectoryDoesNotExist(MantaError):
    code, status = "DirectoryDoesNotExist", 404


class DirectoryLimitExceeded(MantaError):
    code, status = "DirectoryLimitExceeded", 409


class DirectoryNotEmpty(MantaError):
    code, status = "DirectoryNotEmpty", 400


class OperationNotAllowedOnDirectory(MantaError):
    code, status = "OperationNotAllowedOnDirectory", 400


class OperationNotAllowedOnRootDirectory(MantaError):
    code, status = "OperationNotAllowedOnRootDirectory", 400


class EntityAlreadyExists(MantaError):
    code, status = "EntityAlreadyExists", 409


class InternalError(MantaError):
    code, status = "InternalError", 500


class InvalidDurabilityLevel(MantaError):
    code, status = "InvalidDurabilityLevel", 400


class InvalidContent(MantaError):
    """restify's jsonBodyParser: a body that is not JSON (malformed or nested too deeply)."""

    code, status = "InvalidContent", 400


class UnsupportedMediaType(MantaError):
    """restify's 415: the admin surface takes ``application/json`` bodies only."""

    code, status = "UnsupportedMediaType", 415


class InvalidArgumentError(MantaError):
    code, status = "InvalidArgumentError", 400


class InvalidLink(MantaError):
    code, status = "InvalidLink", 400


class InvalidUpdate(MantaError):
    code, status = "InvalidUpdate", 400


class InvalidParameter(MantaError):
    code, status = "InvalidParameter", 400


class InvalidResource(MantaError):
    code, status = "InvalidResource", 400


class SourceObjectNotFound(MantaError):
    code, status = "SourceObjectNotFound", 404


class LinkNotObject(MantaError):
    code, status = "LinkNotObject", 400


class LocationRequired(MantaError):
    code, status = "LocationRequired", 400


class InvalidMaxContentLength(MantaError):
    code, status = "InvalidMaxContentLength", 400


class MaxContentLengthExceeded(MantaError):
    code, status = "MaxContentLengthExceeded", 413


class MultipartUploadInvalidArgument(MantaError):
    code, status = "MultipartUploadInvalidArgument", 409


class InvalidMultipartUploadState(MantaError):
    code, status = "InvalidMultipartUploadState", 409


class NotAcceptable(MantaError):
    code, status = "NotAcceptable", 406


class NotEnoughSpace(MantaError):
    code, status = "NotEnoughSpace", 507


class NotImplementedManta(MantaError):
    """``NotImplemented`` (501); renamed in Python to avoid shadowing the builtin."""

    code, status = "NotImplemented", 501


class ParentNotDirectory(MantaError):
    code, status = "ParentNotDirectory", 400


class RangeNotSatisfiable(MantaError):
    """416; raise with ``headers={"Content-Range": "bytes */N"}``."""

    code, status = "RangeNotSatisfiable", 416


class ResourceNotFound(MantaError):
    code, status = "ResourceNotFound", 404


class ServiceUnavailable(MantaError):
    code, status = "ServiceUnavailable", 503


class SnaplinksDisabledError(MantaError):
    code, status = "SnaplinksDisabledError", 403
    default_message = "Manta v2 does not support SnapLinks."


class ThrottledError(MantaError):
    code, status = "ThrottledError", 503


class UploadAbandoned(MantaError):
    code, status = "UploadAbandoned", 499


class UploadTimeout(MantaError):
    code, status = "UploadTimeout", 408


class PreconditionFailed(MantaError):
    code, status = "PreconditionFailed", 412


class MethodNotAllowed(MantaError):
    code, status = "MethodNotAllowed", 405


#: wire code -> class, for code-driven callers (fault injection, admin surface).
CODES: dict[str, type[MantaError]] = {
    cls.code: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, MantaError) and cls is not MantaError
}
CODES["InternalError"] = InternalError


def error_for_code(code: str, status: int | None = None, message: str | None = None) -> MantaError:
    """Build an error from a wire code; unknown codes get an ad-hoc class (default 500)."""
    cls = CODES.get(code)
    if cls is None or (status is not None and status != cls.status):
        cls = _define(code, status if status is not None else 500)
    return cls(message if message is not None else code)
