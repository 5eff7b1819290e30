"""Property tests of the Authorization header parser: any input either parses or raises
``SignatureHeaderError`` (which the gateway turns into 400 InvalidHeader), nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import httpsig
from gateway.server import signatures

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DATE = format_datetime(NOW, usegmt=True)

pieces = st.sampled_from(
    [
        "Signature",
        " ",
        ",",
        "=",
        '"',
        "keyId",
        "algorithm",
        "headers",
        "signature",
        "/alice/keys/k",
        "rsa-sha256",
        "date",
        "(request-target)",
        "x-date",
        "request-line",
        "AAAA",
        "\udcff",
        "é",
    ]
)
headers_strategy = st.dictionaries(
    st.sampled_from(["date", "x-date", "host", "content-md5", "(request-target)"]),
    st.one_of(st.just(DATE), st.text(max_size=40)),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    authz=st.one_of(st.lists(pieces, max_size=30).map("".join), st.text(max_size=200)),
    headers=headers_strategy,
)
def test_parse_never_raises_anything_else(authz: str, headers: dict[str, str]) -> None:
    try:
        parsed = signatures.parse_authorization(
            authz, method="GET", target="/alice/images/x?y=1", headers=headers, now=NOW
        )
    except signatures.SignatureHeaderError as e:
        assert str(e)
        return
    assert parsed.key_id and parsed.algorithm and parsed.signature
    assert parsed.headers
    assert ("x-date" if "x-date" in headers else "date") in parsed.headers


@settings(max_examples=200, deadline=None)
@given(signature=st.text(max_size=100), algorithm=st.text(max_size=20))
def test_verify_never_raises(signature: str, algorithm: str) -> None:
    key = httpsig.load_public_key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrcAx0BXBf5fMcLWYYbyCAv4eXDZ+Y7vh8rGIs8T1Kb"
    )
    assert signatures.verify_bytes(key, algorithm, b"date: x", signature) is False


def test_modern_and_legacy_round_trip() -> None:
    """The signer's headers parse back to the same signing string it signed."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    for legacy in (False, True):
        signer = httpsig.RequestSigner(key, "/alice/keys/k", legacy=legacy)
        sent = signer.sign("GET", "/alice/images/x", {"Date": DATE})
        parsed = signatures.parse_authorization(
            sent["Authorization"],
            method="GET",
            target="/alice/images/x",
            headers={"date": DATE},
            now=NOW,
        )
        assert parsed.legacy is legacy
        assert parsed.signing_string == (DATE if legacy else f"date: {DATE}")
        public = httpsig.load_public_key(httpsig.ssh_public_key_line(key))
        assert signatures.verify_bytes(
            public, parsed.algorithm, parsed.signing_string.encode(), parsed.signature
        )


@settings(max_examples=500, deadline=None)
@given(authz=st.lists(pieces, max_size=30).map("".join))
def test_fast_path_agrees_with_the_state_machine(authz: str) -> None:
    """The regex fast path for well-formed headers answers exactly as the state machine."""
    from gateway.server.signatures import _parse_modern, _parse_modern_by_state

    def outcome(parse: object) -> object:
        try:
            return parse(authz)  # type: ignore[operator]
        except signatures.SignatureHeaderError as e:
            return ("error", str(e))

    assert outcome(_parse_modern) == outcome(_parse_modern_by_state)
