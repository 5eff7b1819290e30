"""HTTP Signature and pre-signed URL verification for the fake Manta (manta-protocol.md §7).

The order of checks, and so which error a bad request gets, follows muskie's ``lib/auth.js``
handler chain: restify's Authorization parser (``InvalidHeader``: malformed header, unsigned
date, clock skew), the pre-signed URL check (``InvalidQueryStringAuthentication``), the scheme
(``AuthorizationSchemeNotAllowed``), the algorithm (``InvalidAlgorithm``), the keyId shape
(``InvalidKeyId``), the caller's account (``AccountDoesNotExist``/``UserDoesNotExist``), the key
and signature (``KeyDoesNotExist``/``InvalidSignature``), the path's owner
(``AccountDoesNotExist``) and finally authorization (``AuthorizationFailed``).

Authorization is deliberately simple (no RBAC): a caller may touch its own tree, operators may
touch every tree, and anybody (signed or not) may GET/HEAD under ``/:login/public``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from fake_manta.accounts import LOGIN_RE, Account, AccountRegistry
from fake_manta.errors import (
    AccountDoesNotExist,
    AuthorizationFailed,
    AuthorizationSchemeNotAllowed,
    InvalidAlgorithm,
    InvalidHeader,
    InvalidKeyId,
    InvalidQueryStringAuthentication,
    InvalidSignature,
    KeyDoesNotExist,
    UserDoesNotExist,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Where the middleware leaves the caller's login (``None`` for an anonymous public read).
#: A RequestKey, not a str: aiohttp 3.14 warns (NotAppKeyWarning, an error in our tests) on
#: string request keys.
CALLER_KEY: web.RequestKey[str | None] = web.RequestKey("fake_manta.caller")

#: http-signature's default and muskie's setting (it passes no options).
CLOCK_SKEW = 300.0
#: muskie ``SIGN_ALG`` plus ED25519-SHA512 (MANTA-5467).
SIGN_ALGORITHMS = (
    "RSA-SHA1", "RSA-SHA256", "RSA-SHA384", "RSA-SHA512", "DSA-SHA1", "DSA-SHA256",
    "ECDSA-SHA256", "ECDSA-SHA384", "ECDSA-SHA512", "ED25519-SHA512",
)
#: What http-signature's parser itself accepts; anything else is a malformed header.
_PARSER_ALGORITHM = re.compile(r"^(rsa|dsa|ecdsa|ed25519|hmac)-(sha1|sha256|sha384|sha512)$")
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_LOGIN = re.compile(LOGIN_RE)
_PRESIGN_PARAMS = ("expires", "signature", "keyId", "algorithm")
_PUBLIC_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """Who a request acts as, once authenticated."""

    login: str | None
    user: str | None = None
    operator: bool = False
    key_id: str | None = None
    presigned: bool = False

    @property
    def display(self) -> str:
        """The name muskie puts in AuthorizationFailed messages (``acct`` or ``acct/user``)."""
        if self.login is None:
            return "anonymous"
        return f"{self.login}/{self.user}" if self.user else self.login


ANONYMOUS = Caller(login=None)

#: The full :class:`Caller` (sub-user, operator flag, how it authenticated).
CALLER_INFO_KEY: web.RequestKey[Caller] = web.RequestKey("fake_manta.caller_info")


@dataclass(frozen=True)
class _Signature:
    """A parsed signature, from the Authorization header or a pre-signed URL's query."""

    key_id: str
    algorithm: str  # upper case, as muskie compares it
    signature: str
    signing_string: str
    presigned: bool


# --- parsing ---------------------------------------------------------------------------------
def _bad_header(reason: str) -> InvalidHeader:
    return InvalidHeader(f"Invalid Signature Authorization header: {reason}")


def parse_authorization_params(text: str) -> dict[str, str]:
    """Parse ``k="v",k2=123`` the way http-signature 1.4's state machine does (strictly)."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        start = i
        while i < n and text[i].isascii() and text[i].isalpha():
            i += 1
        name = text[start:i]
        if not name or i >= n or text[i] != "=":
            raise _bad_header("bad param format")
        i += 1
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise _bad_header("bad param format")
            params[name] = text[i + 1 : end]
            i = end + 1
        else:
            start = i
            while i < n and text[i].isdigit():
                i += 1
            if start == i:
                raise _bad_header("bad param format")
            params[name] = str(int(text[start:i]))
        if i < n:
            if text[i] != ",":
                raise _bad_header("bad param format")
            i += 1
    return params


def _header_value(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    return ", ".join(values) if values else None


def _parse_date(value: str) -> float | None:
    """Seconds since the epoch for an HTTP date (RFC 1123/2822, or ISO 8601 as JS accepts)."""
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


#: The public name (restify's ``dateParser`` in middlewares.py parses dates the same way).
parse_js_date = _parse_date


def _js_number(value: float) -> str:
    """``String(n)`` for the skew in the error message (``412.5``, ``400``)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _parse_signature_header(request: web.Request, authz: str, *, now: float) -> _Signature:
    """http-signature ``parseRequest`` semantics; every failure is restify's InvalidHeader."""
    params = parse_authorization_params(authz.partition(" ")[2].strip())
    has_x_date = request.headers.get("x-date") is not None
    names = params.get("headers", "").split(" ") if params.get("headers") else []
    if not names:
        names = ["x-date" if has_x_date else "date"]
    for required in ("keyId", "algorithm", "signature"):
        if not params.get(required):
            raise _bad_header(f"{required} was not specified")
    algorithm = params["algorithm"].lower()
    if not _PARSER_ALGORITHM.match(algorithm):
        raise _bad_header(f"{params['algorithm']} is not supported")
    lines = []
    for raw_name in names:
        name = raw_name.lower()
        if name == "request-line":
            version = f"{request.version.major}.{request.version.minor}"
            lines.append(f"{request.method} {request.raw_path} HTTP/{version}")
        elif name == "(request-target)":
            lines.append(f"(request-target): {request.method.lower()} {request.raw_path}")
        elif name == "(keyid)":
            lines.append(f"(keyid): {params['keyId']}")
        elif name == "(algorithm)":
            lines.append(f"(algorithm): {params['algorithm']}")
        else:
            value = _header_value(request, name)
            if value is None:
                raise _bad_header(f"{name} was not in the request")
            lines.append(f"{name}: {value}")
    date_value = request.headers.get("x-date") or request.headers.get("date")
    if date_value is not None:
        when = _parse_date(date_value)
        if when is None:
            raise _bad_header(f"date {date_value!r} is not a valid HTTP date")
        skew = abs(now - when)
        if skew > CLOCK_SKEW:
            raise _bad_header(
                f"clock skew of {_js_number(skew)}s was greater than {_js_number(CLOCK_SKEW)}s"
            )
    signed = [n.lower() for n in names]
    required_date = "x-date" if has_x_date else "date"
    if required_date not in signed:
        raise _bad_header(f"{required_date} was not a signed header")
    return _Signature(
        key_id=params["keyId"],
        algorithm=algorithm.upper(),
        signature=params["signature"],
        signing_string="\n".join(lines),
        presigned=False,
    )


def rfc3986(text: str) -> str:
    """node's ``encodeURIComponent`` plus ``!'()*`` escaped, as smartdc-auth and muskie use."""
    return quote(text, safe="-_.~")


def _locale_sort_key(key: str) -> tuple[str, str]:
    """Approximates ``String.prototype.localeCompare`` for ASCII query keys."""
    return (key.casefold(), key.swapcase())


def _parse_presigned(request: web.Request, *, now: float) -> _Signature:
    """muskie ``preSignedUrl``: every failure is InvalidQueryStringAuthentication."""
    query = request.query
    methods = sorted(m for m in re.split(r"\s*,\s*", query.get("method") or request.method) if m)
    if request.method not in methods:
        raise InvalidQueryStringAuthentication(f"{request.method} was not a signed method")
    missing = [k for k in ("algorithm", "expires", "keyId", "signature") if not query.get(k)]
    if missing:
        raise InvalidQueryStringAuthentication(f'parameters "{", ".join(missing)}" are required')
    match = re.match(r"\s*[+-]?\d+", query["expires"])
    if match is None:
        raise InvalidQueryStringAuthentication("expires is invalid")
    if now > int(match.group()):
        raise InvalidQueryStringAuthentication("request expired")
    algorithm = query["algorithm"].upper()
    raw_path = request.raw_path.split("?", 1)[0]
    pairs = [
        f"{rfc3986(k)}={rfc3986(query[k])}"
        for k in sorted(set(query.keys()), key=_locale_sort_key)
        if k.lower() != "signature"
    ]
    signing_string = "\n".join(
        [",".join(methods), request.headers.get("host", ""), raw_path, "&".join(pairs)]
    )
    if algorithm not in SIGN_ALGORITHMS:
        raise InvalidQueryStringAuthentication(f"{algorithm} is not a supported signing algorithm")
    return _Signature(
        key_id=query["keyId"],
        algorithm=algorithm,
        signature=query["signature"],
        signing_string=signing_string,
        presigned=True,
    )


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_component(text: str) -> str:
    """``decodeURIComponent``: malformed escapes or UTF-8 raise ValueError, as JS throws."""
    if _BAD_ESCAPE.search(text):
        raise ValueError(f"malformed escape in {text!r}")
    return unquote(text, errors="strict")


def parse_key_id(key_id: str) -> tuple[str, str | None, str]:
    """``/acct/keys/fp`` or ``/acct/user/keys/fp`` -> (account, user, fingerprint)."""
    invalid = InvalidKeyId("the KeyId token you provided is invalid")
    parts = key_id.split("/")
    user: str | None = None
    if len(parts) == 4 and parts[0] == "" and parts[2] == "keys":
        raw_account, raw_fp = parts[1], parts[3]
    elif len(parts) == 5 and parts[0] == "" and parts[3] == "keys":
        raw_account, raw_fp = parts[1], parts[4]
        try:
            user = decode_component(parts[2])
        except ValueError as exc:
            raise invalid from exc
        if not user:
            raise invalid
    else:
        raise invalid
    try:
        account, fingerprint = decode_component(raw_account), decode_component(raw_fp)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise invalid from exc
    if not account or not fingerprint:
        raise invalid
    return account, user, fingerprint


# --- verification ----------------------------------------------------------------------------
def verify_signature(public_key: object, algorithm: str, signature_b64: str, data: bytes) -> bool:
    """Check one signature: RSA PKCS#1 v1.5, DSA/ECDSA DER, Ed25519 raw (sshpk's encodings)."""
    kind, _, hash_name = algorithm.lower().partition("-")
    try:
        raw = base64.b64decode(signature_b64, validate=False)
    except (binascii.Error, ValueError):
        return False
    hash_factory = _HASHES.get(hash_name)
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey) and kind == "ed25519":
            public_key.verify(raw, data)
        elif isinstance(public_key, rsa.RSAPublicKey) and kind == "rsa" and hash_factory:
            public_key.verify(raw, data, padding.PKCS1v15(), hash_factory())
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and kind == "ecdsa" and hash_factory:
            public_key.verify(raw, data, ec.ECDSA(hash_factory()))
        elif isinstance(public_key, dsa.DSAPublicKey) and kind == "dsa" and hash_factory:
            public_key.verify(raw, data, hash_factory())
        else:
            return False
    except (_BadSignature, ValueError):
        return False
    return True


def key_type(public_key: object) -> str:
    """sshpk's name for a key's type, for error messages."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, dsa.DSAPublicKey):
        return "dsa"
    return "unknown"


def _user_keys(account: Account, user: str) -> Mapping[str, object] | None:
    """A sub-user's keys (fingerprint -> key), when the registry models sub-users.

    Expects ``Account.users: dict[user, dict[fingerprint, key]]``; without it every sub-user
    keyId answers UserDoesNotExist.
    """
    users = getattr(account, "users", None)
    if not isinstance(users, Mapping):
        return None
    keys = users.get(user)
    return keys if isinstance(keys, Mapping) else None


def path_owner(path: str) -> str | None:
    """The login a storage path belongs to, or None for non-account paths (``/``, ``/_fake``)."""
    first = path.lstrip("/").split("/", 1)[0]
    return first if first and _LOGIN.match(first) else None


def is_public_read(method: str, path: str, owner: str) -> bool:
    """GET/HEAD/OPTIONS under ``/:login/public`` need no credentials (muskie ``isPublicGet``)."""
    if method not in _PUBLIC_METHODS:
        return False
    rest = path.lstrip("/")[len(owner) :]
    return rest == "/public" or rest.startswith("/public/")


def can_access(caller: Caller, owner: str, method: str, path: str) -> bool:
    """Owner, operator, or a public read; handlers may reuse this for Location/objectPath."""
    if caller.operator or caller.login == owner:
        return True
    return is_public_read(method, path, owner)


class Authenticator:
    """Turns a request into a :class:`Caller` or raises the MantaError muskie would send.

    Usable outside the middleware too: an ``expect_handler`` can call :meth:`authenticate` so
    that auth failures go out before ``100 Continue``, as muskie's do.
    """

    def __init__(self, registry: AccountRegistry, *, no_auth: bool = False) -> None:
        self.registry = registry
        self.no_auth = no_auth

    def authenticate(self, request: web.Request) -> Caller:
        """Verify credentials and authorization; stores the result on the request."""
        known = request.get(CALLER_INFO_KEY)
        if known is not None:
            return known
        caller = self._authenticate(request)
        request[CALLER_INFO_KEY] = caller
        request[CALLER_KEY] = caller.login
        return caller

    def _authenticate(self, request: web.Request) -> Caller:
        path = request.path
        owner = path_owner(path)
        if owner is None:
            return ANONYMOUS
        if self.no_auth:
            account = self.registry.get(owner)
            return Caller(login=owner, operator=bool(account and account.operator))
        now = time.time()
        authz = request.headers.get("authorization")
        parsed: _Signature | None = None
        if authz:
            scheme = authz.split(" ", 1)[0]
            if scheme.lower() != "signature":
                raise AuthorizationSchemeNotAllowed(
                    f"authorization scheme {scheme.lower()} is not allowed"
                )
            parsed = _parse_signature_header(request, authz, now=now)
        elif any(request.query.get(k) is not None for k in _PRESIGN_PARAMS):
            parsed = _parse_presigned(request, now=now)

        caller = ANONYMOUS if parsed is None else self._verify(parsed)
        owner_account = self.registry.get(owner)
        if owner_account is None:
            raise AccountDoesNotExist(f"{owner} does not exist")
        if not can_access(caller, owner, request.method, path):
            raise AuthorizationFailed(f"{caller.display} is not allowed to access {path}")
        return caller

    def _verify(self, parsed: _Signature) -> Caller:
        if parsed.algorithm not in SIGN_ALGORITHMS:
            raise InvalidAlgorithm(
                f"{parsed.algorithm} is not a supported signing algorithm. "
                f"Supported algorithms are {', '.join(SIGN_ALGORITHMS)}"
            )
        login, user, fingerprint = parse_key_id(parsed.key_id)
        account = self.registry.get(login)
        if account is None:
            raise AccountDoesNotExist(f"{login} does not exist")
        if user is not None:
            keys = _user_keys(account, user)
            if keys is None:
                raise UserDoesNotExist(f"{login}/{user} does not exist")
            key_path = f"/{login}/{user}/keys/{fingerprint}"
        else:
            keys = account.keys
            key_path = f"/{login}/keys/{fingerprint}"
        public_key = keys.get(fingerprint)
        if public_key is None:
            raise KeyDoesNotExist(f"{key_path} does not exist")
        kind = parsed.algorithm.split("-", 1)[0].lower()
        if kind != key_type(public_key):
            raise InvalidAlgorithm(
                f"{parsed.algorithm} cannot be used with the {key_type(public_key)} key {key_path}"
            )
        if not verify_signature(
            public_key, parsed.algorithm, parsed.signature, parsed.signing_string.encode()
        ):
            raise InvalidSignature("The signature we calculated does not match the one you sent")
        return Caller(
            login=login,
            user=user,
            operator=account.operator,
            key_id=parsed.key_id,
            presigned=parsed.presigned,
        )


def auth_middleware(registry: AccountRegistry, *, no_auth: bool = False) -> Middleware:
    """Verify each request and store the caller's login in ``request[CALLER_KEY]``.

    Raises MantaErrors; the error middleware (outside this one) renders them.
    """
    authenticator = Authenticator(registry, no_auth=no_auth)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        authenticator.authenticate(request)
        return await handler(request)

    middleware.authenticator = authenticator  # type: ignore[attr-defined]
    return middleware
