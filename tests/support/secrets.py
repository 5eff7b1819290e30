"""Every secret the tests make, and every log record of the session: the last test of the
suite (``tests/zz_secrets``) proves that no secret reached a log.

- Keys are recorded as they are made (``helpers.new_key``, ``storage_targets.write_operator_key``)
  and whenever one signs: ``install`` wraps ``gateway.httpsig.sign_bytes`` for the session, so
  every HTTP Signature made in this process (by a test, the bundled client, or the gateway's
  Manta target) and its key are recorded, whoever made it.
- S3 request signatures are recorded by a ``before-send.s3`` handler on the S3 plugin's
  botocore session (every S3 client of the session, the gateway's included).
- ``SINK`` is a handler on the root logger at DEBUG for the whole session: every record,
  formatted as the gateway formats it (bunyan JSON, request id included), the access log too.

A key is recorded as the text a log could hold: its PEM and OpenSSH serializations (every
line, and the whole base64 body) and its private numbers (decimal and hex).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

#: Shortest text kept as a secret; also the length of the window looked up in the logs.
PROBE = 24
#: Runs of characters that base64, hex and decimal secrets are made of.
_RUN = re.compile(r"[A-Za-z0-9+/=]{" + str(PROBE) + ",}")
_S3_SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


@dataclass(frozen=True)
class Leak:
    """A secret found in a log record (the record is shown with the secret blanked out)."""

    what: str
    record: str


class SecretRegistry:
    """Secrets by the first ``PROBE`` characters (what the scan looks up), with what they are."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_probe: dict[str, dict[str, str]] = {}
        #: Keys already recorded (held, so that their ids stay theirs).
        self._keys: dict[int, object] = {}
        self.counts: dict[str, int] = {}

    def add(self, secret: str, what: str) -> None:
        secret = secret.strip()
        if len(secret) < PROBE:
            return
        with self._lock:
            self._by_probe.setdefault(secret[:PROBE], {})[secret] = what

    def add_key(self, key: Any) -> None:
        """Record a private key's material, once per key object."""
        with self._lock:
            if id(key) in self._keys:
                return
            self._keys[id(key)] = key
        kind = type(key).__name__.lstrip("_")
        for text, how in _key_texts(key):
            self.add(text, f"{kind} private key ({how})")
        self._count("keys")

    def add_signature(self, signature: str, what: str = "HTTP Signature") -> None:
        self.add(signature, what)
        self._count("signatures")

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def leaks(self, records: Iterable[str]) -> Iterator[Leak]:
        """Every record holding a recorded secret: each run of base64-ish characters is looked
        up one window at a time, and a hit is checked whole."""
        by_probe = self._by_probe
        for record in records:
            found: dict[str, str] = {}
            for match in _RUN.finditer(record):
                run = match.group()
                for start in range(len(run) - PROBE + 1):
                    candidates = by_probe.get(run[start : start + PROBE])
                    if candidates:
                        found.update((s, w) for s, w in candidates.items() if s in record)
            if found:
                shown = record
                for secret in found:
                    shown = shown.replace(secret, "<SECRET>")
                for what in found.values():
                    yield Leak(what, shown[:2000])


def _pem_texts(data: bytes, how: str) -> Iterator[tuple[str, str]]:
    lines = [line for line in data.decode().splitlines() if line and not line.startswith("-")]
    yield "".join(lines), f"{how}, whole"
    for number, line in enumerate(lines, 1):
        yield line, f"{how}, line {number}"


def _key_texts(key: Any) -> Iterator[tuple[str, str]]:
    nothing = serialization.NoEncryption()
    pem = serialization.Encoding.PEM
    yield from _pem_texts(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nothing), "PKCS#8 PEM"
    )
    yield from _pem_texts(
        key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, nothing), "OpenSSH"
    )
    numbers: dict[str, int] = {}
    if isinstance(key, rsa.RSAPrivateKey):
        yield from _pem_texts(
            key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, nothing),
            "PKCS#1 PEM",
        )
        n = key.private_numbers()
        numbers = {"d": n.d, "p": n.p, "q": n.q, "dmp1": n.dmp1, "dmq1": n.dmq1, "iqmp": n.iqmp}
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        yield from _pem_texts(
            key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, nothing),
            "SEC1 PEM",
        )
        numbers = {"private value": key.private_numbers().private_value}
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, nothing
        )
        yield raw.hex(), "raw, hex"
        yield base64.b64encode(raw).decode(), "raw, base64"
    for name, value in numbers.items():
        yield str(value), f"{name}, decimal"
        yield f"{value:x}", f"{name}, hex"
        yield f"{value:X}", f"{name}, HEX"


REGISTRY = SecretRegistry()


class LogSink(logging.Handler):
    """Keeps every record, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


SINK = LogSink()


def _recording_sign_bytes(original: Callable[..., str]) -> Callable[..., str]:
    def sign_bytes(key: Any, algorithm: str, data: bytes) -> str:
        REGISTRY.add_key(key)
        signature = original(key, algorithm, data)
        REGISTRY.add_signature(signature)
        return signature

    sign_bytes.__wrapped__ = original  # type: ignore[attr-defined]
    return sign_bytes


def _record_s3_signature(request: Any, **_: Any) -> None:
    """``before-send.s3``: record the SigV4 signature (and send the request unchanged)."""
    authorization = request.headers.get("Authorization")
    if isinstance(authorization, bytes):
        authorization = authorization.decode()
    if authorization:
        match = _S3_SIGNATURE.search(authorization)
        if match:
            REGISTRY.add_signature(match.group(1), "S3 SigV4 signature")


def install() -> None:
    """For the session: the sink on the root logger at DEBUG, and the recording hooks."""
    from gateway import httpsig
    from gateway.server.logs import BunyanFormatter, RequestIdFilter, quiet_libraries

    SINK.setFormatter(BunyanFormatter())
    SINK.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(SINK)
    root.setLevel(logging.DEBUG)
    quiet_libraries()  # what serve does: botocore's DEBUG records print signed requests

    if not hasattr(httpsig.sign_bytes, "__wrapped__"):
        httpsig.sign_bytes = _recording_sign_bytes(httpsig.sign_bytes)  # type: ignore[assignment]
    try:
        from plugins.storage.s3.client import session_for
    except ImportError:  # no aiobotocore: no S3 either
        return
    session_for(None).register("before-send.s3", _record_s3_signature)
