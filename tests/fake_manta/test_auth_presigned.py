"""Pre-signed URLs exactly as ``msign`` (smartdc-auth ``signUrl``) makes them, fetched plainly.

The signer below follows smartdc-auth: the query carries ``algorithm`` (upper case),
``expires`` (Unix seconds), ``keyId`` and, for several methods, ``method``; the signing string
is ``METHODS\\nhost\\npath\\n`` plus the query sorted by key and rfc3986-encoded, and the URL
ends with ``&signature=<rfc3986(base64)>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from yarl import URL

from fake_manta import FakeMantaServer
from gateway.httpsig import (
    PrivateKey,
    RequestSigner,
    default_algorithm,
    md5_fingerprint,
    sign_bytes,
    ssh_public_key_line,
)

KEYS: dict[str, PrivateKey] = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ecdsa": ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}
BOB_KEY = ec.generate_private_key(ec.SECP256R1())
BODY = b"signed url body\n"


def rfc3986(text: str) -> str:
    return quote(text, safe="-_.~")


def presign(
    key: PrivateKey,
    login: str,
    base_url: str,
    path: str,
    *,
    methods: Sequence[str] = ("GET", "HEAD"),
    expires: int | None = None,
    algorithm: str | None = None,
) -> str:
    """An ``msign`` URL (smartdc-auth ``signUrl``) for ``path`` (already percent-encoded)."""
    method_list = sorted(methods)
    query: dict[str, str] = {"expires": str(expires or int(time.time()) + 300)}
    if len(method_list) > 1:
        query["method"] = ",".join(method_list)
    query["keyId"] = f"/{login}/keys/{md5_fingerprint(key)}"
    query["algorithm"] = (algorithm or default_algorithm(key)).upper()
    encoded = "&".join(f"{rfc3986(k)}={rfc3986(query[k])}"
                       for k in sorted(query, key=lambda k: (k.casefold(), k.swapcase())))
    host = urlsplit(base_url).netloc
    line = f"{','.join(method_list)}\n{host}\n{path}\n{encoded}"
    signature = sign_bytes(key, query["algorithm"].lower(), line.encode())
    return f"{base_url}{path}?{encoded}&signature={rfc3986(signature)}"


@pytest.fixture
async def server() -> AsyncIterator[FakeMantaServer]:
    async with FakeMantaServer(host="127.0.0.1", port=0) as srv:
        srv.add_account("alice", public_keys=[ssh_public_key_line(k) for k in KEYS.values()])
        srv.add_account("bob", public_keys=[ssh_public_key_line(BOB_KEY)])
        signer = RequestSigner.for_login(KEYS["ed25519"], "alice")
        async with aiohttp.ClientSession() as http:
            for path in ("/alice/stor/file.txt", "/alice/stor/with space (1).txt"):
                encoded = quote(path)
                headers = signer.sign("PUT", encoded, {"Content-Type": "text/plain"})
                async with http.put(URL(srv.url + encoded, encoded=True), data=BODY,
                                    headers=headers) as resp:
                    assert resp.status == 204, await resp.text()
        yield srv


async def fetch(url: str, method: str = "GET") -> tuple[int, str | None, bytes]:
    """A plain client with no credentials, as a browser or curl would fetch the URL.

    Returns the status, the error code and the body (the error message for errors).
    """
    async with aiohttp.ClientSession() as http, \
            http.request(method, URL(url, encoded=True)) as resp:
        body = await resp.read()
        if resp.status >= 400 and body:
            error = json.loads(body)
            return resp.status, error["code"], error["message"].encode()
        return resp.status, None, body


@pytest.mark.parametrize("kind", sorted(KEYS))
async def test_signed_url_fetches_the_object(server: FakeMantaServer, kind: str) -> None:
    url = presign(KEYS[kind], "alice", server.url, "/alice/stor/file.txt")
    assert await fetch(url) == (200, None, BODY)
    status, _, body = await fetch(url, "HEAD")
    assert (status, body) == (200, b"")


async def test_signed_url_with_encoded_path(server: FakeMantaServer) -> None:
    url = presign(KEYS["rsa"], "alice", server.url, quote("/alice/stor/with space (1).txt"))
    assert await fetch(url) == (200, None, BODY)


async def test_single_method_url_has_no_method_param(server: FakeMantaServer) -> None:
    url = presign(KEYS["rsa"], "alice", server.url, "/alice/stor/file.txt", methods=["GET"])
    assert "method=" not in url
    assert await fetch(url) == (200, None, BODY)
    status, code, _ = await fetch(url, "HEAD")
    assert (status, code) == (403, None)  # HEAD errors carry no body


async def test_expired_url(server: FakeMantaServer) -> None:
    url = presign(KEYS["rsa"], "alice", server.url, "/alice/stor/file.txt",
                  expires=int(time.time()) - 5)
    status, code, body = await fetch(url)
    assert (status, code) == (403, "InvalidQueryStringAuthentication")
    assert b"request expired" in body


async def test_unsigned_method(server: FakeMantaServer) -> None:
    url = presign(KEYS["rsa"], "alice", server.url, "/alice/stor/file.txt")
    status, code, body = await fetch(url, "DELETE")
    assert (status, code) == (403, "InvalidQueryStringAuthentication")
    assert b"DELETE was not a signed method" in body


@pytest.mark.parametrize("drop", ["expires", "keyId", "algorithm", "signature"])
async def test_missing_parameter(server: FakeMantaServer, drop: str) -> None:
    url = presign(KEYS["rsa"], "alice", server.url, "/alice/stor/file.txt")
    base, _, query = url.partition("?")
    kept = "&".join(p for p in query.split("&") if not p.startswith(drop + "="))
    status, code, body = await fetch(f"{base}?{kept}")
    assert (status, code) == (403, "InvalidQueryStringAuthentication")
    assert f'parameters "{drop}" are required'.encode() in body


async def test_other_path_with_the_same_signature(server: FakeMantaServer) -> None:
    url = presign(KEYS["ecdsa"], "alice", server.url, "/alice/stor/file.txt")
    status, code, _ = await fetch(url.replace("/file.txt", "/with%20space%20(1).txt"))
    assert (status, code) == (403, "InvalidSignature")


async def test_longer_expiry_than_signed(server: FakeMantaServer) -> None:
    url = presign(KEYS["ed25519"], "alice", server.url, "/alice/stor/file.txt")
    expires = url.split("expires=")[1].split("&")[0]
    status, code, _ = await fetch(url.replace(f"expires={expires}",
                                              f"expires={int(expires) + 3600}"))
    assert (status, code) == (403, "InvalidSignature")


async def test_unsupported_algorithm(server: FakeMantaServer) -> None:
    url = presign(KEYS["rsa"], "alice", server.url, "/alice/stor/file.txt")
    status, code, _ = await fetch(url.replace("algorithm=RSA-SHA256", "algorithm=HMAC-SHA256"))
    assert (status, code) == (403, "InvalidQueryStringAuthentication")


async def test_other_logins_key_cannot_sign_for_alices_tree(server: FakeMantaServer) -> None:
    url = presign(BOB_KEY, "bob", server.url, "/alice/stor/file.txt")
    status, code, _ = await fetch(url)
    assert (status, code) == (403, "AuthorizationFailed")
