"""CloudAPI's conventions around every handler: errors, API versions and response headers.

Order (outermost first): ``error_middleware`` (request id, start time, the only place that
builds error responses), then ``version_middleware`` (negotiates the API version). Headers are
added in ``on_response_prepare`` so that streamed responses and error responses get them too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import __version__, telemetry
from gateway.errors import GatewayError, InvalidVersion
from gateway.server.accept import NOT_ACCEPTABLE_MESSAGE, NotAcceptable, acceptable
from gateway.server.appkeys import API_VERSION, REQUEST_ID, START_TIME
from gateway.server.request_ids import choose_request_id
from gateway.server.responses import error_response, json_response
from gateway.server.versioning import LATEST_VERSION, max_satisfying, requested_range

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVER_HEADER = f"cloudapi-gateway/{__version__}"
ALLOW_HEADERS = (
    "Accept, Accept-Version, Content-Length, Content-MD5, Content-Type, Date, "
    "Api-Version, Response-Time"
)
EXPOSE_HEADERS = "Api-Version, Request-Id, Response-Time"
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

#: restify codes for aiohttp's own HTTP exceptions (router misses, size limits, ...).
_HTTP_CODES = {
    400: "BadRequest",
    401: "InvalidCredentials",
    403: "NotAuthorized",
    404: "ResourceNotFound",
    405: "MethodNotAllowedError",  # restify 4's router: an HttpError, named by status text
    406: "NotAcceptableError",
    409: "InvalidArgument",
    413: "RequestTooLarge",
    415: "UnsupportedMediaType",
}


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status) or re.sub(r"[^A-Za-z]", "", exc.reason.title()) or "Error"
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPNotFound):
        message = f"{request.path} does not exist"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        message = f"{request.method} is not allowed"
        headers["Allow"] = ", ".join(_ordered(exc.allowed_methods))
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        message = "Request body is too large"
    else:
        message = exc.reason
    return json_response({"code": code, "message": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into CloudAPI's JSON error; unknown ones into a bare 500."""
    request[START_TIME] = time.monotonic()
    request[REQUEST_ID] = choose_request_id(request.headers)
    # Every record logged while handling it carries the id (gateway.server.logs), and storage
    # plugins send it on (x-request-id).
    token = telemetry.request_id.set(request[REQUEST_ID])
    try:
        return await handler(request)
    except GatewayError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(
            "internal error on %s %s (request id %s)",
            request.method,
            request.path,
            request[REQUEST_ID],
        )
        return json_response({"code": "InternalError", "message": "Internal Error"}, status=500)
    finally:
        telemetry.request_id.reset(token)


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve at the highest supported version the client's range admits, else 400; then refuse
    an ``Accept`` that admits no JSON nor restify's other types (406), as restify's router
    and ``acceptParser`` do, before any handler (and so before authentication)."""
    wanted = requested_range(request.headers) or "*"
    served = max_satisfying(wanted)
    if served is not None:
        request[API_VERSION] = served
    elif request.match_info.http_exception is None:
        # Only routes that exist answer InvalidVersion; unknown paths stay 404/405.
        raise InvalidVersion(f"{wanted} is not supported by {request.method} {request.path}")
    if request.match_info.http_exception is None:
        accept = request.headers.getall("Accept", None)
        if not acceptable(None if accept is None else ", ".join(accept)):
            raise NotAcceptable(NOT_ACCEPTABLE_MESSAGE)
    return await handler(request)


def _ordered(methods: Any) -> list[str]:
    found = {m.upper() for m in methods if m != "*"}
    return [m for m in _METHOD_ORDER if m in found] + sorted(found - set(_METHOD_ORDER))


def make_response_headers(app: web.Application) -> Callable[..., Awaitable[None]]:
    """The ``on_response_prepare`` hook adding CloudAPI's headers to every response of ``app``."""
    methods_cache: dict[str, str] = {}

    def allowed_methods(request: web.Request) -> str | None:
        match_info = request.match_info
        exc = match_info.http_exception
        if isinstance(exc, web.HTTPMethodNotAllowed):
            return ", ".join(_ordered(exc.allowed_methods))
        if exc is not None:
            return None
        resource = match_info.route.resource
        if resource is None:
            return None
        key = resource.canonical
        if key not in methods_cache:
            methods: set[str] = set()
            for other in app.router.resources():
                if other.canonical == key:
                    methods.update(route.method for route in other)
            methods_cache[key] = ", ".join(_ordered(methods))
        return methods_cache[key]

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["Server"] = SERVER_HEADER
        request_id = request.get(REQUEST_ID) or str(uuid.uuid4())
        headers["Request-Id"] = headers["X-Request-Id"] = request_id
        # CloudAPI's own version, whatever was negotiated (restify 4: the route list's last).
        headers["Api-Version"] = headers["X-Api-Version"] = LATEST_VERSION
        started = request.get(START_TIME)
        elapsed = 0 if started is None else int((time.monotonic() - started) * 1000)
        headers["Response-Time"] = headers["X-Response-Time"] = str(elapsed)
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        methods = allowed_methods(request)
        if methods:
            headers["Access-Control-Allow-Methods"] = methods
        if (
            isinstance(response, web.Response)
            and isinstance(response.body, bytes)
            and response.body
            and "Content-MD5" not in headers
        ):
            digest = hashlib.md5(response.body).digest()
            headers["Content-MD5"] = base64.b64encode(digest).decode()

    return on_response_prepare
