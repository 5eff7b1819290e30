"""ECDSA signatures in either encoding: DER (what sshpk sends) and raw ``r||s``.

A raw pair starts with ``0x30`` (DER's SEQUENCE tag) about once in 256; such a signature must
verify too, which is why the encoding is told apart by trying DER, not by the first byte.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.server.signatures import verify_bytes

CURVES = [(ec.SECP256R1(), "sha256", hashes.SHA256()), (ec.SECP384R1(), "sha384", hashes.SHA384())]


def raw_pair(key: ec.EllipticCurvePrivateKey, data: bytes, digest: hashes.HashAlgorithm) -> bytes:
    size = (key.curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize(("curve", "hash_name", "digest"), CURVES)
def test_raw_signature_starting_with_the_der_tag_verifies(
    curve: ec.EllipticCurve, hash_name: str, digest: hashes.HashAlgorithm
) -> None:
    key = ec.generate_private_key(curve)
    data = b"date: Tue, 01 Dec 2026 22:00:00 GMT"
    for _ in range(20_000):  # about 1 in 256 signatures start with 0x30
        raw = raw_pair(key, data, digest)
        if raw[0] == 0x30:
            break
    else:  # pragma: no cover - astronomically unlikely
        pytest.fail("no raw signature starting with 0x30 in 20,000 tries")
    signature = base64.b64encode(raw).decode()
    assert verify_bytes(key.public_key(), f"ecdsa-{hash_name}", data, signature)
    assert not verify_bytes(key.public_key(), f"ecdsa-{hash_name}", data + b"x", signature)


@pytest.mark.parametrize(("curve", "hash_name", "digest"), CURVES)
def test_der_and_raw_signatures_verify_and_tampering_fails(
    curve: ec.EllipticCurve, hash_name: str, digest: hashes.HashAlgorithm
) -> None:
    key = ec.generate_private_key(curve)
    data = b"date: x"
    der = key.sign(data, ec.ECDSA(digest))
    raw = raw_pair(key, data, digest)
    for blob in (der, raw):
        good = base64.b64encode(blob).decode()
        bad = base64.b64encode(blob[:-1] + bytes([blob[-1] ^ 1])).decode()
        assert verify_bytes(key.public_key(), f"ecdsa-{hash_name}", data, good)
        assert not verify_bytes(key.public_key(), f"ecdsa-{hash_name}", data, bad)
    short = base64.b64encode(raw[:-1]).decode()  # neither DER nor a pair of the curve's size
    assert not verify_bytes(key.public_key(), f"ecdsa-{hash_name}", data, short)
