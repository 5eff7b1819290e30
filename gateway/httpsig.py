"""The signing half of HTTP Signature (Joyent's ``Signature`` scheme): SSH keys and the signer.

Used by storage plugins that sign requests to Manta, by the bundled export client and by the
tests. The verifying half (header parsing, signature checks) is the server's:
``gateway.server.signatures``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

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
