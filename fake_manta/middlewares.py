"""Cross-cutting HTTP behaviour: common headers, the error envelope, authorization, 100-continue.

Order in the app (outermost first): ``common_headers`` -> ``error_middleware`` -> faults -> auth.
Common headers are added in an ``on_response_prepare`` signal so that streamed responses and
errors alike carry them. ``common_headers`` and ``error_middleware`` also note on the request what
the audit record needs (start, id, peer, the error answered; ``fake_manta/audit.py``).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from fake_manta.auth import CALLER_KEY, parse_js_date
from fake_manta.config import CONFIG
from fake_manta.errors import (
    AccountDoesNotExist,
    AuthorizationFailed,
    InternalError,
    MantaError,
    MethodNotAllowed,
    RequestExpired,
    ResourceNotFound,
    UploadAbandoned,
    body_md5,
    error_for_code,
)
from fake_manta.logs import redact_url

log = logging.getLogger("fake_manta")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: ``time.monotonic()`` when the request reached the app.
START_KEY = web.RequestKey("fake_manta.start", float)
#: The request id the fake answers with (``x-request-id``) and logs (``req_id``).
REQUEST_ID_KEY = web.RequestKey("fake_manta.request_id", str)
#: The client's (address, port), noted while the connection is open.
PEER_KEY: web.RequestKey[tuple[str, int] | None] = web.RequestKey("fake_manta.peer")
#: The Manta error the request was answered with, if any.
ERROR_KEY = web.RequestKey("fake_manta.error", MantaError)
_CONTINUE_SENT = web.RequestKey("fake_manta.continue_sent", bool)
#: Paths the admin surface owns; auth and faults never apply to them.
ADMIN_PREFIX = "/_fake/"
#: muskie's load-balancer check (lib/other.js ``GetPing``), mounted ahead of its handler chain:
#: no auth, faults, request id or audit record; ``Server`` is its only common header.
PING_PATH = "/ping"


def is_ping(request: web.Request) -> bool:
    """``GET /ping`` (muskie routes HEAD /ping to the account ``ping`` instead)."""
    return request.method == "GET" and request.path == PING_PATH


# -- common headers ------------------------------------------------------------------------------
@web.middleware
async def common_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp the start time, request id and peer; the prepare signal writes the headers."""
    if is_ping(request):
        return await handler(request)  # no request id: the audit logger skips it
    request[START_KEY] = time.monotonic()
    # muskie (restify 6, no ``reqIdHeaders``) answers with an id of its own; a client's
    # ``x-request-id`` is only logged, in the audit record's ``req.headers``.
    request_id = request[REQUEST_ID_KEY] = str(uuid.uuid4())
    peer = request.transport.get_extra_info("peername") if request.transport else None
    request[PEER_KEY] = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
    if log.isEnabledFor(logging.DEBUG) and request.config_dict[CONFIG].log_requests:
        log.debug("request received", extra={
            "req_id": request_id,
            "req": {"method": request.method, "url": redact_url(request.raw_path)},
        })
    return await handler(request)


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: Server, x-request-id, x-response-time, x-server-name (+Date)."""
    start = request.get(START_KEY, time.monotonic())
    response.headers["Server"] = "Manta/2"
    if is_ping(request):
        return
    response.headers["x-request-id"] = request.get(REQUEST_ID_KEY) or str(uuid.uuid4())
    response.headers["x-response-time"] = str(int((time.monotonic() - start) * 1000))
    response.headers["x-server-name"] = request.config_dict[CONFIG].server_name
    if re.match(r"^curl.+", request.headers.get("User-Agent", "")):
        # muskie answers curl with ``Connection: close`` and closes. The header must be set
        # here: aiohttp derived its own Connection header before this signal ran.
        response.force_close()
        response.headers["Connection"] = "close"


# -- errors ----------------------------------------------------------------------------------------
def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response as restify sends it: exact Content-Type, Content-MD5 of the body."""
    hdrs = {"Content-Type": "application/json", "Content-MD5": body_md5(body)}
    hdrs.update(headers or {})
    return web.Response(status=status, body=body, headers=hdrs)


def error_response(request: web.Request, err: MantaError) -> web.Response:
    """``{"code","message"}``; HEAD gets the headers only. Noted for the audit record."""
    request[ERROR_KEY] = err
    body = err.body()
    if request.method == "HEAD":
        headers = {"Content-Type": "application/json", **err.headers}
        resp = web.Response(status=err.status, headers=headers)
    else:
        resp = json_response(err.status, body, err.headers)
    if request.body_exists and not request.content.is_eof():
        # The body was refused (maybe before 100-continue): do not keep reading it.
        resp.force_close()
    return resp


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> MantaError:
    if isinstance(exc, web.HTTPNotFound):
        return ResourceNotFound(f"{request.path} does not exist")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"{request.method} is not allowed",
                                headers={"Allow": ", ".join(sorted(exc.allowed_methods))})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_for_code("MaxContentLengthExceeded", 413, exc.text or exc.reason)
    code = "".join(w for w in exc.reason.split()) or "BadRequest"
    return error_for_code(code, exc.status, exc.text or exc.reason)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The only place errors become responses. Unknown exceptions are a logged 500."""
    try:
        return await handler(request)
    except MantaError as err:
        return error_response(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request, _from_http_exception(exc, request))
    except (ConnectionError, aiohttp.ClientPayloadError, HttpProcessingError):
        log.info("client went away: %s %s", request.method, request.path)
        return error_response(request, UploadAbandoned("request body was not completely sent"))
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(request, InternalError("internal error"))


# -- request age ---------------------------------------------------------------------------
def request_age_check(max_age: float) -> Middleware:
    """restify's ``dateParser`` as muskie mounts it (``maxRequestAge``): a ``Date`` more than
    ``max_age`` seconds in the past is 400 ``RequestExpired``. Like restify, an unparsable or
    future date passes here (``new Date(x)`` is NaN, and NaN compares false)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        value = request.headers.get("Date")
        sent = parse_js_date(value) if value else None
        if value and sent is not None and time.time() - sent > max_age:
            raise RequestExpired(f"Date header {value} is too old")
        return await handler(request)

    return middleware


# -- auth wiring ----------------------------------------------------------------------------
def skip_admin(middleware: Middleware) -> Middleware:
    """Wrap a middleware so that it does not run for the admin surface."""

    @web.middleware
    async def wrapped(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX) or is_ping(request):
            return await handler(request)
        return await middleware(request, handler)

    return wrapped


def caller_of(request: web.Request) -> str | None:
    """The login the auth middleware verified, or None (anonymous or --no-auth)."""
    caller = request.get(CALLER_KEY)
    return caller if isinstance(caller, str) else None


def is_operator(request: web.Request) -> bool:
    """Operators (and everyone under --no-auth) may use operator-only options."""
    config = request.config_dict[CONFIG]
    caller = caller_of(request)
    account = config.registry.get(caller) if caller is not None else None
    return config.no_auth or (account is not None and account.operator)


def authorize(request: web.Request, login: str, path: str, *, read: bool) -> None:
    """Caller must own the tree, or be an operator; anonymous may only read under /public."""
    config = request.config_dict[CONFIG]
    if config.no_auth:
        return
    if config.registry.get(login) is None:
        raise AccountDoesNotExist(f"{login} does not exist")
    caller = caller_of(request)
    segs = [s for s in path.split("/") if s]
    public_read = read and len(segs) >= 2 and segs[1] == "public"
    if caller is None:
        if public_read:
            return
        raise AuthorizationFailed(f"anonymous is not allowed to access {path}")
    if caller == login or public_read:
        return
    account = config.registry.get(caller)
    if account is not None and account.operator:
        return
    raise AuthorizationFailed(f"{caller} is not allowed to access {path}")


# -- 100-continue ----------------------------------------------------------------------------------
async def defer_continue(request: web.Request) -> None:
    """Route ``expect_handler``: send nothing yet; handlers call ``send_continue`` once their
    checks pass, so errors (DirectoryDoesNotExist for ``mput -p``) go out before the body."""
    return None


async def send_continue(request: web.Request) -> None:
    """Write ``100 Continue`` if the client asked for it and it has not been sent yet."""
    if request.get(_CONTINUE_SENT):
        return
    request[_CONTINUE_SENT] = True
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0

