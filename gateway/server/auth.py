"""HTTP Signature authentication of CloudAPI requests, answering as CloudAPI does.

The checks run in the order of CloudAPI's middleware chain (``lib/app.js``): the Authorization
header is parsed (``lib/authorization.js``, http-signature 1.x then 0.9), then restify's
``dateParser`` looks at ``Date``, then ``signatureAuth`` (``lib/auth.js``) checks algorithm,
keyId, account, key and signature, then ``assertAuthenticated`` refuses anonymous callers and
disabled accounts, then ``loadAccount``/``authorize`` resolve ``/my`` and refuse other accounts'
paths. Every refusal is a ``GatewayError`` carrying CloudAPI's code, status and message.

Deliberate differences: DSA keys and ``ed25519-sha256`` are refused as unsupported algorithms;
sub-user keyIds (``/acct/users/sub/keys/k``) are refused (no sub-users here); dates that do not
parse are refused (CloudAPI lets them through); another account's path, existing or not, is a
403 (never a 404 that would reveal which logins exist); the 0.9 header format may use any
supported algorithm.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import UTC, datetime

from aiohttp import web

from gateway import httpsig
from gateway.actions import Account
from gateway.errors import (
    GatewayError,
    InvalidCredentials,
    InvalidHeader,
    NotAuthorized,
    RequestExpired,
)
from gateway.server import signatures
from gateway.server.appkeys import ACCOUNT, ACCOUNTS, METRICS, SETTINGS
from gateway.server.auth_throttle import AUTH_THROTTLE, client_address
from gateway.server.key_cache import KEY_CACHE

#: Messages, verbatim from sdc-cloudapi ``lib/auth.js`` and restify.
DEF_401 = "You must make authenticated requests to use CloudAPI"
INVALID_CREDS = "Invalid authorization credentials supplied"
INVALID_KEY = "Invalid KeyId {} in authorization header"
INVALID_ALGO = "{} is not a supported signing algorithm"
ACCOUNT_DISABLED = "Account or user is disabled"
FORBIDDEN = "You do not have permission to access {}"
SUBUSERS = "Invalid KeyId {} in authorization header: sub-users are not supported by this gateway"

#: Headers node keeps only once when repeated; every other repeated header is joined by ", ".
_SINGLE = frozenset(
    {
        "age",
        "authorization",
        "content-length",
        "content-type",
        "etag",
        "expires",
        "from",
        "host",
        "if-modified-since",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "proxy-authorization",
        "referer",
        "retry-after",
        "user-agent",
    }
)


def _echo(value: str, limit: int = 256) -> str:
    """Client text safe to put in a JSON message: no lone surrogates (aiohttp keeps undecodable
    header bytes as surrogates, which cannot be encoded), and not unboundedly long."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


@functools.lru_cache(maxsize=4096)
def _public_key(line: str) -> httpsig.PublicKey | None:
    """Parse a stored OpenSSH key once; keyed by the line itself, so a changed key re-parses."""
    try:
        return httpsig.load_public_key(line)
    except (ValueError, TypeError):
        return None


def _node_headers(request: web.BaseRequest) -> dict[str, str]:
    """Request headers as node's ``req.headers`` has them: lower-case, repeats joined."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        lower = name.lower()
        if lower not in out:
            out[lower] = value
        elif lower not in _SINGLE:
            out[lower] = f"{out[lower]}, {value}"
    return out


def _check_date(headers: dict[str, str], now: datetime, clock_skew: int) -> None:
    """restify's ``dateParser``: a Date more than ``clock_skew`` (300) s in the past is 400
    RequestExpired."""
    value = headers.get("date")
    if value is None:
        return
    sent = signatures.parse_http_date(value)
    if sent is None:
        raise InvalidHeader("Date header is invalid")
    if (now - sent).total_seconds() > clock_skew:
        raise RequestExpired(f"Date header {_echo(value)} is too old")


def _path_login(request: web.Request) -> str | None:
    """The ``:login`` of the request path (route variable ``login``, else the first segment)."""
    for name in ("login", "account"):
        if name in request.match_info:
            return str(request.match_info[name])
    first = request.path.lstrip("/").split("/", 1)[0]
    return first or None


#: CloudAPI's (lower-cased restify) route names for the gateway's routes, by aiohttp name.
_ROUTE_NAMES = {
    ("images", "GET"): "listimages",
    ("images", "HEAD"): "listimages",
    ("image", "GET"): "getimage",
    ("image", "HEAD"): "getimage",
    ("image", "DELETE"): "deleteimage",
    ("update_image", "POST"): "updateimage",
}


def _route_name(request: web.Request) -> str | None:
    """The CloudAPI action name of the matched route (RBAC's ``req.routename``), if known."""
    name = request.match_info.route.name  # always the resource's name
    if not name:
        return None
    return _ROUTE_NAMES.get((name, request.method), name.replace("_", "").lower())


def _forbidden(request: web.Request) -> NotAuthorized:
    """CloudAPI's ``authorize`` refusal: the path, then the route's action name if known."""
    where = request.rel_url.raw_path
    name = _route_name(request)
    if name:
        where = f"{where} ({name})"
    return NotAuthorized(FORBIDDEN.format(_echo(where)))


async def authenticate(request: web.Request) -> Account:
    """Verify the request's signature and return the caller, or raise a ``GatewayError``.

    Also resolves ``/my`` and refuses a ``:login`` in the path that is not the caller's.
    The account is stored as ``request[ACCOUNT]``. A keyId that verified recently is served
    from ``KEY_CACHE`` without a database round trip; others are looked up in the store.
    Each refusal is counted by its code (``cloudapi_gateway_auth_failures_total``). An
    address that keeps failing waits its turn first (``gateway.server.auth_throttle``).
    """
    throttle = request.config_dict.get(AUTH_THROTTLE)
    # With no failing address on record (the usual case) nothing can wait and nothing needs
    # forgetting: the client's address is only worked out when the throttle has a use for it.
    checked = throttle is not None and not throttle.idle
    address = client_address(request) if checked else None
    if throttle is not None and checked:
        await throttle.wait_turn(address)
    try:
        account = await _authenticate(request)
    except GatewayError as err:
        metrics = request.config_dict.get(METRICS)
        if metrics is not None:
            metrics.auth_failure(err.code)
        if throttle is not None and err.status == 401:
            throttle.failed(address if checked else client_address(request))
        raise
    if throttle is not None and not throttle.idle:
        throttle.succeeded(address if checked else client_address(request))
    return account


async def _credentials(
    request: web.Request, login: str, key_name: str
) -> tuple[Account, httpsig.PublicKey]:
    """The account and parsed key a keyId names, from the account store; 401 if none."""
    account, record = await request.config_dict[ACCOUNTS].credentials(login, key_name)
    if account is None or record is None:
        raise InvalidCredentials(INVALID_CREDS)
    public = _public_key(record.public_key)
    if public is None:
        raise InvalidCredentials(INVALID_CREDS)
    return account, public


async def _authenticate(request: web.Request) -> Account:
    now = datetime.now(UTC)
    config = request.config_dict  # a new ChainMapProxy each time it is asked for
    clock_skew = config[SETTINGS].clock_skew
    headers = _node_headers(request)

    # lib/authorization.js: the header must split into scheme and credentials.
    parsed: signatures.ParsedSignature | None = None
    authz = headers.get("authorization")
    if authz:
        scheme, sep, credentials = authz.partition(" ")
        if not sep:
            raise InvalidHeader("BasicAuth content is invalid.")
        if scheme.lower() == "signature":
            try:
                parsed = signatures.parse_authorization(
                    authz,
                    method=request.method,
                    target=request.raw_path,
                    headers=headers,
                    http_version=f"{request.version.major}.{request.version.minor}",
                    now=now,
                    clock_skew=clock_skew,
                )
            except signatures.SignatureHeaderError as e:
                raise InvalidHeader(f"Authorization header invalid: {_echo(str(e))}") from None
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.split(" ", 1)[0] + "==")
            except (binascii.Error, ValueError):
                decoded = b""
            if not decoded:
                raise InvalidHeader("Authorization header invalid")

    # restify.dateParser() runs next, whatever the scheme.
    _check_date(headers, now, clock_skew)

    # lib/auth.js signatureAuth; without a signature, assertAuthenticated's 401.
    if parsed is None:
        raise InvalidCredentials(DEF_401)
    if parsed.algorithm not in signatures.SUPPORTED_ALGORITHMS:
        raise InvalidCredentials(INVALID_ALGO.format(_echo(parsed.algorithm.upper())))
    parts = parsed.key_id.split("/")
    if len(parts) != 4 or parts[2] != "keys":
        if len(parts) == 6 and parts[4] == "keys":
            raise InvalidCredentials(SUBUSERS.format(_echo(parsed.key_id)))
        raise InvalidCredentials(INVALID_KEY.format(_echo(parsed.key_id)))
    login, key_name = parts[1], parts[3]

    # A keyId that verified recently needs no store lookup (gateway.server.key_cache).
    cache = config.get(KEY_CACHE)
    fill_stamp: int | None = None
    cached = cache.get(parsed.key_id) if cache is not None else None
    if cached is not None:
        account, public = cached.account, cached.public_key
    else:
        fill_stamp = cache.fill_stamp() if cache is not None else None
        account, public = await _credentials(request, login, key_name)

    # A signature this key verified before (same string, same bytes) needs no second check.
    seen = cached is not None and cached.verified(
        parsed.algorithm, parsed.signing_string, parsed.signature
    )
    if not seen:
        if not signatures.verify_bytes(
            public,
            parsed.algorithm,
            parsed.signing_string.encode("utf-8", "surrogateescape"),
            parsed.signature,
        ):
            raise InvalidCredentials(INVALID_CREDS)
        if cached is not None:
            cached.remember(parsed.algorithm, parsed.signing_string, parsed.signature)
    if cache is not None and fill_stamp is not None:
        cache.put(parsed.key_id, account, public, fill_stamp)

    # assertAuthenticated, then loadAccount/authorize.
    if account.disabled:
        raise NotAuthorized(ACCOUNT_DISABLED)
    path_login = _path_login(request)
    if path_login is not None and path_login not in ("my", account.login):
        raise _forbidden(request)

    request[ACCOUNT] = account
    return account
