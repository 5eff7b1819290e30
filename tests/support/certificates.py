"""Test certificates made at test time: a private CA and server certificates it signs.

Each server certificate names ``localhost``, ``127.0.0.1`` and ``::1``; ``write_pair`` writes a
certificate and its key as PEM files, as an operator would install them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class TestCA:
    """A self-signed CA; ``ca_file`` is its certificate as PEM (the clients' trust bundle)."""

    __test__ = False  # not a pytest test class

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_file: Path

    @classmethod
    def create(cls, directory: Path, name: str = "cloudapi-gateway test CA") -> TestCA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate, ca_file)

    def issue(self, common_name: str = "localhost") -> tuple[bytes, bytes, int]:
        """A server certificate for loopback: (certificate PEM, key PEM, serial number)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem, serial

    def write_pair(self, directory: Path, stem: str = "server") -> tuple[Path, Path, int]:
        """Issue a certificate and write ``<stem>.crt``/``<stem>.key``: (cert, key, serial)."""
        cert_pem, key_pem, serial = self.issue()
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        return cert, key, serial


def peer_serial(der: bytes | None) -> int:
    """The serial number of a peer certificate in DER (``SSLObject.getpeercert(True)``)."""
    assert der is not None, "no peer certificate"
    return x509.load_der_x509_certificate(der).serial_number
