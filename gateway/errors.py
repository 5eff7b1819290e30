"""The error contract: every failure a client can see is a ``GatewayError``.

Handlers and plugins raise these; the error middleware is the only place that turns them
into responses (``{"code", "message"[, "errors"]}``). Statuses follow restify 4 as CloudAPI
uses it, and IMGAPI's codes where CloudAPI passes IMGAPI errors through unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error that reaches a client. Subclasses fix ``status`` and ``code``."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body, in restify's key order."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


# --- restify 4 / CloudAPI ---------------------------------------------------------------


class BadRequest(GatewayError):
    status, code = 400, "BadRequest"


class InvalidContent(GatewayError):
    """A body that cannot be parsed (e.g. malformed JSON), as restify words it."""

    status, code = 400, "InvalidContent"


class InvalidHeader(GatewayError):
    status, code = 400, "InvalidHeader"


class InvalidVersion(GatewayError):
    status, code = 400, "InvalidVersion"


class RequestExpired(GatewayError):
    status, code = 400, "RequestExpired"


class InvalidCredentials(GatewayError):
    status, code = 401, "InvalidCredentials"


class NotAuthorized(GatewayError):
    status, code = 403, "NotAuthorized"


class ResourceNotFound(GatewayError):
    status, code = 404, "ResourceNotFound"


class BadMethod(GatewayError):
    status, code = 405, "BadMethod"


class WrongAccept(GatewayError):
    status, code = 406, "WrongAccept"


class InvalidArgument(GatewayError):
    status, code = 409, "InvalidArgument"


class MissingParameter(GatewayError):
    status, code = 409, "MissingParameter"


class RequestTooLarge(GatewayError):
    status, code = 413, "RequestTooLarge"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "UnsupportedMediaType"


class InternalError(GatewayError):
    status, code = 500, "InternalError"


class ServiceUnavailable(GatewayError):
    status, code = 503, "ServiceUnavailable"


# --- IMGAPI codes that CloudAPI passes through ----------------------------------------------


class InvalidParameter(GatewayError):
    """422 with ``errors: [{"field", "code"[, "message"]}]``, as IMGAPI sends it."""

    status, code = 422, "InvalidParameter"


class ValidationFailed(GatewayError):
    status, code = 422, "ValidationFailed"


class ImageHasDependentImages(GatewayError):
    """IMGAPI's refusal to delete an image that incremental images use as their origin."""

    status, code = 422, "ImageHasDependentImages"


class NotImageOwner(GatewayError):
    status, code = 422, "NotImageOwner"


class NotMantaPathOwner(GatewayError):
    status, code = 422, "NotMantaPathOwner"


class NotImplementedByGateway(GatewayError):
    """IMGAPI's ``400 NotImplemented`` (e.g. exporting an image with several files)."""

    status, code = 400, "NotImplemented"


class NotAvailableHere(GatewayError):
    """``501 NotImplemented``: a CloudAPI endpoint that needs what this gateway does not have
    (machines, other datacenters); the message names the reason."""

    status, code = 501, "NotImplemented"


class StorageUnsupported(GatewayError):
    status, code = 503, "StorageUnsupported"


class StorageIsDown(GatewayError):
    status, code = 503, "StorageIsDown"


class StorageFailed(GatewayError):
    """A storage error that is neither the caller's fault nor an outage; says what failed."""

    status, code = 502, "StorageError"


class ImageFileCorrupt(GatewayError):
    """The catalog's copy of an image file does not match its manifest's sha1 or size."""

    status, code = 500, "ImageFileCorrupt"


class ImageHasNoFile(GatewayError):
    """An image without a file (a ``creating``/``failed`` placeholder) has nothing to export.

    IMGAPI crashes on these (an uncaught ``assert.object``); the gateway answers a 422 instead.
    """

    status, code = 422, "ImageHasNoFile"
