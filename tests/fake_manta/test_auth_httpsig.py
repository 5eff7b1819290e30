"""HTTP Signature auth of the fake Manta, over HTTP against a running FakeMantaServer.

Keys of every supported type are generated here and requests are signed with the gateway's own
``RequestSigner`` (the same code the Manta storage plugin uses), the way node-manta, node-triton
and the Python SDK sign them (manta-protocol.md §7, client-wire-captures.md).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fake_manta import FakeMantaServer
from gateway.httpsig import (
    PrivateKey,
    RequestSigner,
    md5_fingerprint,
    sign_bytes,
    ssh_public_key_line,
)

KEYS: dict[str, PrivateKey] = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}
BOB_KEY = ec.generate_private_key(ec.SECP256R1())
OPERATOR_KEY = ed25519.Ed25519PrivateKey.generate()
STRANGER_KEY = ec.generate_private_key(ec.SECP256R1())  # registered nowhere


@pytest.fixture
async def server() -> AsyncIterator[FakeMantaServer]:
    async with FakeMantaServer(host="127.0.0.1", port=0) as srv:
        srv.add_account("alice", public_keys=[ssh_public_key_line(k) for k in KEYS.values()])
        srv.add_account("bob", public_keys=[ssh_public_key_line(BOB_KEY)])
        srv.add_account("ops", public_keys=[ssh_public_key_line(OPERATOR_KEY)], operator=True)
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def alice(kind: str = "p256", **kwargs: Any) -> RequestSigner:
    return RequestSigner.for_login(KEYS[kind], "alice", **kwargs)


async def call(
    http: aiohttp.ClientSession,
    server: FakeMantaServer,
    method: str,
    path: str,
    *,
    signer: RequestSigner | None = None,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, Any] | None, bytes]:
    """Send one request; returns status, the parsed JSON error (if any) and the raw body."""
    hdrs = dict(headers or {})
    if signer is not None:
        hdrs = signer.sign(method, path, hdrs)
    async with http.request(method, server.url + path, headers=hdrs, data=data) as resp:
        body = await resp.read()
        error = None
        if resp.status >= 400 and body:
            assert resp.headers["Content-Type"] == "application/json"
            error = json.loads(body)
        return resp.status, error, body


async def put_object(http: aiohttp.ClientSession, server: FakeMantaServer, path: str,
                     data: bytes, signer: RequestSigner) -> None:
    status, error, _ = await call(http, server, "PUT", path, signer=signer, data=data,
                                  headers={"Content-Type": "application/octet-stream"})
    assert status == 204, error


# --- good signatures ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [
        ("rsa", "rsa-sha1"), ("rsa", "rsa-sha256"), ("rsa", "rsa-sha384"), ("rsa", "rsa-sha512"),
        ("p256", "ecdsa-sha256"), ("p384", "ecdsa-sha384"), ("p521", "ecdsa-sha512"),
        ("ed25519", "ed25519-sha512"),
    ],
)
async def test_every_key_type_and_hash_signs_in(
    server: FakeMantaServer, http: aiohttp.ClientSession, kind: str, algorithm: str
) -> None:
    signer = alice(kind, algorithm=algorithm)
    await put_object(http, server, f"/alice/stor/{algorithm}", algorithm.encode(), signer)
    status, _, body = await call(http, server, "GET", f"/alice/stor/{algorithm}", signer=signer)
    assert (status, body) == (200, algorithm.encode())


@pytest.mark.parametrize(
    "sign_headers", [("date",), ("(request-target)", "date"), ("date", "(request-target)")]
)
async def test_signed_header_lists_that_include_date(
    server: FakeMantaServer, http: aiohttp.ClientSession, sign_headers: tuple[str, ...]
) -> None:
    signer = alice("rsa", sign_headers=sign_headers)
    status, error, _ = await call(http, server, "GET", "/alice/stor?limit=5", signer=signer)
    assert status == 200, error


async def test_python_sdk_style_without_headers_param(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    """python-manta omits ``headers=``: the server must default to signing ``date``."""
    key = KEYS["rsa"]
    date = formatdate(usegmt=True)
    signature = sign_bytes(key, "rsa-sha1", f"date: {date}".encode())
    authz = (f'Signature keyId="/alice/keys/{md5_fingerprint(key)}",algorithm="rsa-sha1",'
             f'signature="{signature}"')
    status, error, _ = await call(http, server, "GET", "/alice/stor",
                                  headers={"Date": date, "Authorization": authz})
    assert status == 200, error


async def test_x_date_replaces_date(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    signer = alice("ed25519", sign_headers=("x-date",))
    headers = {"x-date": formatdate(usegmt=True), "Date": formatdate(usegmt=True)}
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=signer,
                                  headers=headers)
    assert status == 200, error


async def test_request_target_binds_the_path(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    """A signature over ``(request-target)`` must not be replayable on another path."""
    signer = alice("p256", sign_headers=("(request-target)", "date"))
    headers = signer.sign("GET", "/alice/stor/a")
    status, error, _ = await call(http, server, "GET", "/alice/stor/b", headers=headers)
    assert (status, error and error["code"]) == (403, "InvalidSignature")


# --- failures, one per code ---------------------------------------------------------------
async def test_wrong_key_for_keyid_is_invalid_signature(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    impostor = RequestSigner(STRANGER_KEY, f"/alice/keys/{md5_fingerprint(KEYS['p256'])}")
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=impostor)
    assert status == 403
    assert error == {"code": "InvalidSignature",
                     "message": "The signature we calculated does not match the one you sent"}


async def test_tampered_signature_is_invalid_signature(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    headers = alice("ed25519").sign("GET", "/alice/stor")
    raw = bytearray(base64.b64decode(headers["Authorization"].split('signature="')[1][:-1]))
    raw[0] ^= 0xFF
    headers["Authorization"] = (headers["Authorization"].split('signature="')[0]
                                + f'signature="{base64.b64encode(bytes(raw)).decode()}"')
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert (status, error and error["code"]) == (403, "InvalidSignature")


async def test_unknown_key_is_key_does_not_exist(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    stranger = RequestSigner.for_login(STRANGER_KEY, "alice")
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=stranger)
    assert status == 403
    assert error == {"code": "KeyDoesNotExist",
                     "message": f"/alice/keys/{md5_fingerprint(STRANGER_KEY)} does not exist"}


@pytest.mark.parametrize(
    "key_id",
    ["alice", "/alice/nokeys/aa", "/alice/keys/", "/alice/a/b/keys/aa", "//keys/aa",
     "/alice//keys/aa", "/alice/keys/%zz"],
)
async def test_malformed_keyid_is_invalid_keyid(
    server: FakeMantaServer, http: aiohttp.ClientSession, key_id: str
) -> None:
    signer = RequestSigner(KEYS["p256"], key_id)
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=signer)
    assert (status, error and error["code"]) == (403, "InvalidKeyId")


async def test_unknown_subuser_is_user_does_not_exist(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    signer = RequestSigner(KEYS["p256"], f"/alice/nobody/keys/{md5_fingerprint(KEYS['p256'])}")
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=signer)
    assert (status, error and error["code"]) == (403, "UserDoesNotExist")


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "HMAC-SHA1"])
async def test_hmac_is_invalid_algorithm(
    server: FakeMantaServer, http: aiohttp.ClientSession, algorithm: str
) -> None:
    key = KEYS["rsa"]
    date = formatdate(usegmt=True)
    authz = (f'Signature keyId="/alice/keys/{md5_fingerprint(key)}",algorithm="{algorithm}",'
             f'headers="date",signature="{base64.b64encode(b"x" * 32).decode()}"')
    status, error, _ = await call(http, server, "GET", "/alice/stor",
                                  headers={"Date": date, "Authorization": authz})
    assert (status, error and error["code"]) == (401, "InvalidAlgorithm")


async def test_algorithm_of_another_key_type_is_rejected(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    """An ECDSA key cannot verify an ``rsa-sha256`` claim (never a 500)."""
    signer = alice("rsa")
    headers = signer.sign("GET", "/alice/stor")
    headers["Authorization"] = headers["Authorization"].replace(
        md5_fingerprint(KEYS["rsa"]), md5_fingerprint(KEYS["p256"])
    )
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert (status, error and error["code"]) == (401, "InvalidAlgorithm")


async def test_unknown_login_in_keyid_is_account_does_not_exist(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    signer = RequestSigner.for_login(KEYS["p256"], "nobody")
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=signer)
    assert status == 403
    assert error == {"code": "AccountDoesNotExist", "message": "nobody does not exist"}


async def test_unknown_login_in_path_is_account_does_not_exist(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    status, error, _ = await call(http, server, "GET", "/nobody/stor", signer=alice())
    assert (status, error and error["code"]) == (403, "AccountDoesNotExist")


@pytest.mark.parametrize(
    "authz",
    [
        "Signature keyId=alice",
        'Signature keyId="/alice/keys/aa",algorithm="rsa-sha256"',
        'Signature keyId="/alice/keys/aa" algorithm="rsa-sha256",signature="eA=="',
        'Signature keyId="/alice/keys/aa",algorithm="rsa-md5",signature="eA=="',
        "Signature",
    ],
)
async def test_malformed_authorization_is_invalid_header(
    server: FakeMantaServer, http: aiohttp.ClientSession, authz: str
) -> None:
    headers = {"Date": formatdate(usegmt=True), "Authorization": authz}
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert (status, error and error["code"]) == (400, "InvalidHeader")


@pytest.mark.parametrize("offset", [-301.0, 400.0])
async def test_clock_skew_over_300s_is_invalid_header(
    server: FakeMantaServer, http: aiohttp.ClientSession, offset: float
) -> None:
    import time

    headers = alice().sign("GET", "/alice/stor", {"Date": formatdate(time.time() + offset,
                                                                      usegmt=True)})
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert (status, error and error["code"]) == (400, "InvalidHeader")
    assert error is not None and "clock skew" in error["message"]


async def test_clock_skew_within_300s_is_fine(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    import time

    headers = alice().sign("GET", "/alice/stor", {"Date": formatdate(time.time() - 240,
                                                                      usegmt=True)})
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert status == 200, error


async def test_date_must_be_signed(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    signer = alice(sign_headers=("(request-target)",))
    headers = signer.sign("GET", "/alice/stor")  # carries a Date, but does not sign it
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert (status, error and error["code"]) == (400, "InvalidHeader")
    assert error is not None and "date was not a signed header" in error["message"]


async def test_other_schemes_are_not_allowed(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    status, error, _ = await call(http, server, "GET", "/alice/stor", headers=headers)
    assert (status, error and error["code"]) == (403, "AuthorizationSchemeNotAllowed")


async def test_head_errors_have_no_body(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    stranger = RequestSigner.for_login(STRANGER_KEY, "alice")
    async with http.head(server.url + "/alice/stor",
                         headers=stranger.sign("HEAD", "/alice/stor")) as resp:
        assert resp.status == 403
        assert await resp.read() == b""


# --- authorization ---------------------------------------------------------------------------
async def test_no_credentials_on_a_private_path_is_authorization_failed(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    status, error, _ = await call(http, server, "GET", "/alice/stor")
    assert (status, error and error["code"]) == (403, "AuthorizationFailed")


async def test_another_logins_tree_is_authorization_failed(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    bob = RequestSigner.for_login(BOB_KEY, "bob")
    status, error, _ = await call(http, server, "PUT", "/alice/stor/x", signer=bob, data=b"x")
    assert status == 403
    assert error == {"code": "AuthorizationFailed",
                     "message": "bob is not allowed to access /alice/stor/x"}
    status, error, _ = await call(http, server, "GET", "/alice/stor", signer=bob)
    assert (status, error and error["code"]) == (403, "AuthorizationFailed")


async def test_operator_reads_and_writes_every_tree(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    ops = RequestSigner.for_login(OPERATOR_KEY, "ops")
    await put_object(http, server, "/alice/stor/by-ops", b"from ops", ops)
    status, _, body = await call(http, server, "GET", "/alice/stor/by-ops", signer=alice())
    assert (status, body) == (200, b"from ops")
    status, _, body = await call(http, server, "GET", "/alice/stor/by-ops", signer=ops)
    assert (status, body) == (200, b"from ops")


async def test_public_is_readable_anonymously_but_not_writable(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    await put_object(http, server, "/alice/public/hello.txt", b"hello", alice())
    status, _, body = await call(http, server, "GET", "/alice/public/hello.txt")
    assert (status, body) == (200, b"hello")
    async with http.head(server.url + "/alice/public/hello.txt") as resp:
        assert resp.status == 200
    bob = RequestSigner.for_login(BOB_KEY, "bob")
    status, _, body = await call(http, server, "GET", "/alice/public/hello.txt", signer=bob)
    assert (status, body) == (200, b"hello")
    status, error, _ = await call(http, server, "PUT", "/alice/public/x", data=b"x")
    assert (status, error and error["code"]) == (403, "AuthorizationFailed")
    status, error, _ = await call(http, server, "GET", "/alice/stor/hello.txt")
    assert (status, error and error["code"]) == (403, "AuthorizationFailed")


async def test_no_auth_mode_acts_as_the_paths_login() -> None:
    async with FakeMantaServer(host="127.0.0.1", port=0, no_auth=True) as srv, \
            aiohttp.ClientSession() as http:
        srv.add_account("carol")
        status, error, _ = await call(http, srv, "PUT", "/carol/stor/x", data=b"no auth",
                                      headers={"Content-Type": "text/plain"})
        assert status == 204, error
        status, _, body = await call(http, srv, "GET", "/carol/stor/x")
        assert (status, body) == (200, b"no auth")
