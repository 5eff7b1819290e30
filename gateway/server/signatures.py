"""The verifying half of HTTP Signature: parse a ``Signature`` header and check a signature.

It mirrors what CloudAPI runs (``lib/authorization.js``); ``gateway.server.auth`` adds the
accounts, keys and CloudAPI's error answers. The signing half is ``gateway.httpsig``.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.httpsig import HASHES, PublicKey

# node-http-signature 1.x parses the header first; only if that throws is the 0.9 parser
# tried, and if both fail the 1.x parser's message is the one reported.

#: Algorithms the gateway verifies. DSA is deliberately absent (``cryptography`` keeps it only
#: for legacy use and no Triton client sends it); it gets the "not a supported signing
#: algorithm" answer like any other unknown name.
SUPPORTED_ALGORITHMS = frozenset(
    {
        "rsa-sha1",
        "rsa-sha256",
        "rsa-sha384",
        "rsa-sha512",
        "ecdsa-sha256",
        "ecdsa-sha384",
        "ecdsa-sha512",
        "ed25519-sha512",
    }
)

#: Largest clock skew accepted between the client's date (or x-date) and ours, in seconds:
#: CloudAPI's (http-signature's ``clockSkew``). ``Settings.clock_skew`` overrides it.
CLOCK_SKEW = 300


class SignatureHeaderError(ValueError):
    """The Authorization header cannot be parsed; the message is http-signature's wording."""


@dataclass(frozen=True)
class ParsedSignature:
    """One parsed ``Signature`` Authorization header and the string it claims to sign."""

    key_id: str
    algorithm: str  # lower-case, as sent
    headers: tuple[str, ...]
    signature: str  # base64, as sent
    signing_string: str
    legacy: bool  # http-signature 0.9 format (signature after the params, values only)


@functools.lru_cache(maxsize=256)
def parse_http_date(value: str) -> datetime | None:
    """Parse an RFC 1123 (or ISO 8601) date into an aware datetime; ``None`` if unparsable.

    Cached: every request of the same second carries the same Date."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except (ValueError, OverflowError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


#: A well-formed 1.x parameter list, for the fast path (the state machine gives the errors).
_MODERN_PARAMS = re.compile(r'(?:[A-Za-z]+="[^"]*",)*[A-Za-z]+="[^"]*"')
_MODERN_PARAM = re.compile(r'([A-Za-z]+)="([^"]*)"')


def _parse_modern(authz: str) -> tuple[str, dict[str, str]]:
    """node-http-signature 1.x: ``Scheme name="value",name="value"`` and nothing else."""
    scheme, _, rest = authz.partition(" ")
    if scheme == "Signature" and _MODERN_PARAMS.fullmatch(rest):
        params = dict(_MODERN_PARAM.findall(rest))
        for required in ("keyId", "algorithm", "signature"):
            if not params.get(required):
                raise SignatureHeaderError(f"{required} was not specified")
        return scheme, params
    return _parse_modern_by_state(authz)


def _parse_modern_by_state(authz: str) -> tuple[str, dict[str, str]]:
    """http-signature 1.x's state machine, character by character: its exact error messages."""
    scheme, sep, rest = authz.partition(" ")
    params: dict[str, str] = {}
    state, name, value = "name", "", ""
    for c in rest if sep else "":
        if state == "name":
            if ("A" <= c <= "Z") or ("a" <= c <= "z"):
                name += c
            elif c == "=" and name:
                state = "quote"
            else:
                raise SignatureHeaderError("bad param format")
        elif state == "quote":
            if c != '"':
                raise SignatureHeaderError("bad param format")
            value, state = "", "value"
        elif state == "value":
            if c == '"':
                params[name] = value
                state = "comma"
            else:
                value += c
        elif c == ",":
            name, state = "", "name"
        else:
            raise SignatureHeaderError("bad param format")
    if scheme != "Signature":
        raise SignatureHeaderError('scheme was not "Signature"')
    for required in ("keyId", "algorithm", "signature"):
        if not params.get(required):
            raise SignatureHeaderError(f"{required} was not specified")
    return scheme, params


def _parse_legacy(authz: str) -> tuple[dict[str, str], str]:
    """node-http-signature 0.9: ``Signature name="value",... <base64 signature>``."""
    scheme, sep, rest = authz.partition(" ")
    params: dict[str, str] = {}
    signature = ""
    state, name, value = "name", "", ""
    for i, c in enumerate(rest if sep else ""):
        if state == "name":
            if c == '"':
                value, state = "", "value"
            elif c == " ":
                signature = rest[i + 1 :]
                break
            elif c not in "=,":
                name += c
        elif c == '"':
            params[name] = value
            name, state = "", "name"
        else:
            value += c
    if scheme != "Signature":
        raise SignatureHeaderError('scheme was not "Signature"')
    for required in ("keyId", "algorithm"):
        if not params.get(required):
            raise SignatureHeaderError(f"{required} was not specified")
    if not signature:
        raise SignatureHeaderError("signature was empty")
    return params, signature


def _build(
    params: Mapping[str, str],
    signature: str,
    *,
    legacy: bool,
    method: str,
    target: str,
    headers: Mapping[str, str],
    http_version: str,
    now: datetime,
    clock_skew: int,
) -> ParsedSignature:
    """Build the signing string and apply http-signature's checks, in its order."""
    default_date = "x-date" if "x-date" in headers else "date"
    names = tuple(n.lower() for n in params.get("headers", "").split(" ") if n) or (default_date,)
    lines = []
    for name in names:
        if name == "request-line":
            line = f"{method.upper()} {target} HTTP/{http_version}"
        elif name == "(request-target)" and not legacy:
            line = f"(request-target): {method.lower()} {target}"
        elif name not in headers:
            raise SignatureHeaderError(f"{name} was not in the request")
        else:
            line = headers[name] if legacy else f"{name}: {headers[name]}"
        lines.append(line)

    if "x-date" in headers or "date" in headers:
        date_name = "x-date" if "x-date" in headers else "date"
        sent = parse_http_date(headers[date_name])
        if sent is None:
            raise SignatureHeaderError(f"{date_name} header is not a valid HTTP date")
        skew = abs((now - sent).total_seconds())
        if skew > clock_skew:
            raise SignatureHeaderError(f"clock skew of {skew:g}s was greater than {clock_skew}s")
    if default_date not in names:
        raise SignatureHeaderError(f"{default_date} was not a signed header")

    return ParsedSignature(
        key_id=params["keyId"],
        algorithm=params["algorithm"].lower(),
        headers=names,
        signature=signature,
        signing_string="\n".join(lines),
        legacy=legacy,
    )


def parse_authorization(
    authz: str,
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    http_version: str = "1.1",
    now: datetime | None = None,
    clock_skew: int = CLOCK_SKEW,
) -> ParsedSignature:
    """Parse a ``Signature`` Authorization header and build its signing string.

    ``headers`` maps lower-case names to values; ``target`` is the raw path and query as
    sent. Raises ``SignatureHeaderError`` with http-signature's message when the header is
    malformed, names a header the request lacks, leaves date/x-date unsigned, or carries a
    date more than ``clock_skew`` seconds away from ``now``. As in CloudAPI, the 0.9 parse
    is tried only when the 1.x parse fails, and the 1.x message is the one reported. The
    algorithm is not judged here (CloudAPI answers unsupported ones with InvalidCredentials).
    """
    context: dict[str, Any] = {
        "method": method,
        "target": target,
        "headers": headers,
        "http_version": http_version,
        "now": now or datetime.now(UTC),
        "clock_skew": clock_skew,
    }
    try:
        params = _modern_params(authz)
        return _build(params, params["signature"], legacy=False, **context)
    except SignatureHeaderError as modern_error:
        try:
            params, signature = _legacy_params(authz)
            return _build(params, signature, legacy=True, **context)
        except SignatureHeaderError:
            raise modern_error from None


# A client sends the same Authorization header for every request of one second (the same
# Date, the same signature), so each parse is kept for the next request. A header that does
# not parse raises, which is never cached. The dicts are shared: ``_build`` only reads them.


@functools.lru_cache(maxsize=1024)
def _modern_params(authz: str) -> dict[str, str]:
    return _parse_modern(authz)[1]


@functools.lru_cache(maxsize=1024)
def _legacy_params(authz: str) -> tuple[dict[str, str], str]:
    return _parse_legacy(authz)


def verify_bytes(key: PublicKey, algorithm: str, data: bytes, signature: str) -> bool:
    """Check a base64 ``signature`` of ``data`` made as ``algorithm`` says with ``key``.

    False (never an exception) for a bad signature, bad base64, or an algorithm that does
    not fit the key. ECDSA signatures are DER, as node's sshpk sends them; a raw ``r||s``
    pair of the curve's size is accepted too.
    """
    kind, _, hash_name = algorithm.lower().partition("-")
    if algorithm.lower() not in SUPPORTED_ALGORITHMS:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, TypeError):
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if kind != "ed25519":
                return False
            key.verify(raw, data)
        elif isinstance(key, rsa.RSAPublicKey):
            if kind != "rsa":
                return False
            key.verify(raw, data, padding.PKCS1v15(), HASHES[hash_name]())
        else:
            if kind != "ecdsa":
                return False
            return _verify_ecdsa(key, HASHES[hash_name](), data, raw)
    except (InvalidSignature, ValueError):
        return False
    return True


def _verify_ecdsa(
    key: ec.EllipticCurvePublicKey, digest: hashes.HashAlgorithm, data: bytes, raw: bytes
) -> bool:
    """DER first (what sshpk sends); then, at the curve's size, the same bytes as raw ``r||s``.

    A raw pair's first byte is ``0x30`` about once in 256, so that byte alone cannot tell the
    two encodings apart: only a DER check that fails can.
    """
    try:
        key.verify(raw, data, ec.ECDSA(digest))
        return True
    except (InvalidSignature, ValueError):
        size = (key.curve.key_size + 7) // 8
        if len(raw) != 2 * size:
            return False
    pair = encode_dss_signature(
        int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
    )
    key.verify(pair, data, ec.ECDSA(digest))
    return True
