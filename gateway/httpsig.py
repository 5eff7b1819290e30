"""HTTP Signature signing (the Joyent ``Signature`` scheme) and SSH key helpers.

Used by storage plugins that sign requests to Manta, by the bundled export client and by the
tests. The verification helpers at the end (header parsing, signature checks) serve
``gateway.auth``, which adds accounts, keys and CloudAPI's error answers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: The hash node's sshpk pairs with each curve, and so the one ``ecdsa-*`` clients send.
CURVE_HASH = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}


def load_private_key(source: str | Path | bytes, password: bytes | None = None) -> PrivateKey:
    """Load an OpenSSH or PEM private key (RSA, ECDSA or Ed25519) from a path or its bytes."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    key: object
    if b"BEGIN OPENSSH PRIVATE KEY" in data:
        key = serialization.load_ssh_private_key(data, password)
    else:
        key = serialization.load_pem_private_key(data, password)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"unsupported private key type: {type(key).__name__}")
    return key


def load_public_key(line: str | bytes) -> PublicKey:
    """Parse one OpenSSH public key line (``ssh-rsa AAAA... comment``); ValueError if unusable."""
    data = line.encode() if isinstance(line, str) else line
    if data.lstrip().startswith(b"ssh-dss"):
        raise ValueError("DSA keys are not supported; use an RSA, ECDSA or Ed25519 key")
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except UnsupportedAlgorithm as e:
        raise ValueError(str(e)) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"unsupported public key type: {type(key).__name__}")
    return key


def ssh_public_key_line(key: PrivateKey | PublicKey, comment: str = "") -> str:
    """The OpenSSH one-line form of a key's public half."""
    public: PublicKey = (
        key.public_key()
        if isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        )
        else key
    )
    line = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return f"{line} {comment}".strip()


def md5_fingerprint(key: PrivateKey | PublicKey) -> str:
    """The colon-hex MD5 fingerprint of the SSH public key blob, as keyIds carry it."""
    blob = base64.b64decode(ssh_public_key_line(key).split()[1])
    digest = hashlib.md5(blob).hexdigest()  # MD5: the wire format of keyIds
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def default_algorithm(key: PrivateKey | PublicKey) -> str:
    """The algorithm node clients send for this key: rsa-sha256, ecdsa-shaNNN, ed25519-sha512."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa-sha256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ecdsa-" + CURVE_HASH.get(key.curve.name, "sha256")
    return "ed25519-sha512"


def sign_bytes(key: PrivateKey, algorithm: str, data: bytes) -> str:
    """Sign ``data`` as ``algorithm`` says and return the base64 signature."""
    kind, _, hash_name = algorithm.lower().partition("-")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if kind != "ed25519":
            raise ValueError(f"{algorithm} does not fit an Ed25519 key")
        raw = key.sign(data)
    elif isinstance(key, rsa.RSAPrivateKey):
        if kind != "rsa" or hash_name not in HASHES:
            raise ValueError(f"{algorithm} does not fit an RSA key")
        raw = key.sign(data, padding.PKCS1v15(), HASHES[hash_name]())
    else:
        if kind != "ecdsa" or hash_name not in HASHES:
            raise ValueError(f"{algorithm} does not fit an ECDSA key")
        raw = key.sign(data, ec.ECDSA(HASHES[hash_name]()))
    return base64.b64encode(raw).decode()


def signing_string(
    method: str,
    path_and_query: str,
    headers: Mapping[str, str],
    names: Iterable[str],
    *,
    http_version: str = "1.1",
) -> str:
    """The lines that are signed: ``name: value`` per header; ``(request-target)`` and the
    old drafts' ``request-line`` (``GET /path HTTP/1.1``) included."""
    lower = {k.lower(): v for k, v in headers.items()}
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {path_and_query}")
        elif name == "request-line":
            lines.append(f"{method.upper()} {path_and_query} HTTP/{http_version}")
        else:
            lines.append(f"{name}: {lower[name]}")
    return "\n".join(lines)


class RequestSigner:
    """Signs requests with one key under one keyId (``/login/keys/<md5 fingerprint>``)."""

    def __init__(
        self,
        key: PrivateKey,
        key_id: str,
        *,
        algorithm: str | None = None,
        sign_headers: tuple[str, ...] = ("date",),
        legacy: bool = False,
    ) -> None:
        self.key = key
        self.key_id = key_id
        self.algorithm = algorithm or default_algorithm(key)
        self.sign_headers = sign_headers
        self.legacy = legacy

    @classmethod
    def for_login(cls, key: PrivateKey, login: str, **kwargs: object) -> RequestSigner:
        return cls(key, f"/{login}/keys/{md5_fingerprint(key)}", **kwargs)  # type: ignore[arg-type]

    def authorization(self, method: str, path_and_query: str, headers: Mapping[str, str]) -> str:
        """The ``Authorization`` header value for a request carrying ``headers``."""
        if self.legacy:
            # http-signature 0.9: the signed string is the bare Date value.
            lower = {k.lower(): v for k, v in headers.items()}
            signature = sign_bytes(self.key, self.algorithm, lower["date"].encode())
            return f'Signature keyId="{self.key_id}",algorithm="{self.algorithm}" {signature}'
        text = signing_string(method, path_and_query, headers, self.sign_headers)
        signature = sign_bytes(self.key, self.algorithm, text.encode())
        return (
            f'Signature keyId="{self.key_id}",algorithm="{self.algorithm}",'
            f'headers="{" ".join(self.sign_headers)}",signature="{signature}"'
        )

    def sign(
        self, method: str, path_and_query: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Return ``headers`` plus a fresh Date (unless given) and the Authorization header."""
        out = dict(headers or {})
        if not any(k.lower() == "date" for k in out):
            out["Date"] = formatdate(usegmt=True)
        out["Authorization"] = self.authorization(method, path_and_query, out)
        return out


# --- Verification ---------------------------------------------------------------------------
#
# The server side of the scheme, mirroring what CloudAPI runs (``lib/authorization.js``):
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

#: Largest clock skew accepted between the client's date (or x-date) and ours, in seconds.
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
        _, params = _parse_modern(authz)
        return _build(params, params["signature"], legacy=False, **context)
    except SignatureHeaderError as modern_error:
        try:
            params, signature = _parse_legacy(authz)
            return _build(params, signature, legacy=True, **context)
        except SignatureHeaderError:
            raise modern_error from None


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
            size = (key.curve.key_size + 7) // 8
            if len(raw) == 2 * size and raw[0] != 0x30:
                raw = encode_dss_signature(
                    int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
                )
            key.verify(raw, data, ec.ECDSA(HASHES[hash_name]()))
    except (InvalidSignature, ValueError):
        return False
    return True
