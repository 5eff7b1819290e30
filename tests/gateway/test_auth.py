"""HTTP Signature auth over real HTTP: every header format, algorithm and CloudAPI refusal.

A tiny aiohttp app calls ``authenticate()`` from its handler, so these tests do not depend on
the rest of the gateway; requests go out on loopback with the exact bytes that were signed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway import httpsig
from gateway.errors import GatewayError
from gateway.server.accounts import AccountStore
from gateway.server.appkeys import ACCOUNT, ACCOUNTS, SETTINGS
from gateway.server.auth import authenticate
from gateway.server.change_watch import RECHECK_AFTER
from gateway.server.database import Databases
from gateway.settings import Settings

IMAGE = "2b683a82-a066-11e3-97ab-2faa44701c5a"
KEYS: dict[str, httpsig.PrivateKey] = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}
BOB_KEY = ec.generate_private_key(ec.SECP256R1())
CAROL_KEY = ed25519.Ed25519PrivateKey.generate()


def fp(key: httpsig.PrivateKey) -> str:
    return httpsig.md5_fingerprint(key)


def http_date(offset: float = 0) -> str:
    return formatdate(time.time() + offset, usegmt=True)


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What the gateway's error middleware does, reduced to the part these tests need."""
    try:
        return await handler(request)
    except GatewayError as e:
        return web.json_response(e.body(), status=e.status)


async def get_image(request: web.Request) -> web.Response:
    account = await authenticate(request)
    assert request[ACCOUNT] is account
    return web.json_response({"login": account.login, "uuid": account.uuid})


@pytest.fixture
def store_settings(tmp_path: Path, database: dict[str, Any]) -> Settings:
    """The account store's database: each engine in turn."""
    return Settings(data_dir=tmp_path, database=database)


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[AccountStore]:
    databases = await Databases.open(store_settings, ("accounts",))
    s = AccountStore(databases["accounts"])
    await s.add_account("alice", uuid="11111111-2222-3333-4444-555555555555")
    await s.add_key("alice", httpsig.ssh_public_key_line(KEYS["rsa"]), name="id_rsa")
    for kind in ("p256", "p384", "p521", "ed25519"):
        await s.add_key("alice", httpsig.ssh_public_key_line(KEYS[kind], comment=f"alice@{kind}"))
    await s.add_account("bob")
    await s.add_key("bob", httpsig.ssh_public_key_line(BOB_KEY))
    await s.add_account("carol")
    await s.add_key("carol", httpsig.ssh_public_key_line(CAROL_KEY))
    await s.set_disabled("carol", True)
    yield s
    await databases.close()


Send = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture
async def send(aiohttp_server: Any, store: AccountStore) -> AsyncIterator[Send]:
    """``send(method, target, headers)``: one request with exactly this target and these headers."""
    app = web.Application(middlewares=[errors_as_json])
    app[SETTINGS] = Settings()  # authenticate reads clock_skew
    app[ACCOUNTS] = store
    app.router.add_route("*", "/{login}/images/{id}", get_image, name="GetImage")
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:

        async def _send(
            method: str, target: str, headers: dict[str, str]
        ) -> tuple[int, dict[str, Any]]:
            url = yarl.URL(f"http://{server.host}:{server.port}{target}", encoded=True)
            async with session.request(
                method, url, headers=headers, skip_auto_headers=["User-Agent"]
            ) as resp:
                return resp.status, await resp.json()

        yield _send


async def signed(
    send: Send,
    key: httpsig.PrivateKey,
    *,
    key_id: str | None = None,
    target: str = f"/alice/images/{IMAGE}",
    method: str = "GET",
    **signer_options: Any,
) -> tuple[int, dict[str, Any]]:
    signer = httpsig.RequestSigner(key, key_id or f"/alice/keys/{fp(key)}", **signer_options)
    return await send(method, target, signer.sign(method, target))


# --- what must work ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KEYS))
@pytest.mark.parametrize(
    "options",
    [
        {"sign_headers": ("date",)},
        {"sign_headers": ("(request-target)", "date")},
        {"legacy": True},
    ],
    ids=["modern-date", "modern-request-target", "legacy-0.9"],
)
async def test_every_key_type_in_every_format(
    send: Send, kind: str, options: dict[str, Any]
) -> None:
    status, body = await signed(send, KEYS[kind], **options)
    assert (status, body) == (
        200,
        {"login": "alice", "uuid": "11111111-2222-3333-4444-555555555555"},
    )


@pytest.mark.parametrize("algorithm", ["rsa-sha1", "rsa-sha256", "rsa-sha384", "rsa-sha512"])
async def test_every_rsa_hash(send: Send, algorithm: str) -> None:
    status, _ = await signed(send, KEYS["rsa"], algorithm=algorithm)
    assert status == 200


@pytest.mark.parametrize("algorithm", ["ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512"])
async def test_ecdsa_hash_is_the_one_named(send: Send, algorithm: str) -> None:
    status, _ = await signed(send, KEYS["p256"], algorithm=algorithm)
    assert status == 200


async def test_uppercase_algorithm_as_old_clients_send(send: Send) -> None:
    status, _ = await signed(send, KEYS["rsa"], algorithm="RSA-SHA256")
    assert status == 200


async def test_key_by_name_and_by_uppercase_fingerprint(send: Send) -> None:
    assert (await signed(send, KEYS["rsa"], key_id="/alice/keys/id_rsa"))[0] == 200
    upper = f"/alice/keys/{fp(KEYS['ed25519']).upper()}"
    assert (await signed(send, KEYS["ed25519"], key_id=upper))[0] == 200


async def test_request_target_covers_the_raw_query(send: Send) -> None:
    target = f"/alice/images/{IMAGE}?action=export&manta_path=%2Falice%2Fstor%2Fx"
    status, _ = await signed(
        send, KEYS["p384"], target=target, method="POST", sign_headers=("(request-target)", "date")
    )
    assert status == 200


async def test_signature_for_another_target_is_refused(send: Send) -> None:
    signer = httpsig.RequestSigner(
        KEYS["rsa"], f"/alice/keys/{fp(KEYS['rsa'])}", sign_headers=("(request-target)", "date")
    )
    headers = signer.sign("GET", f"/alice/images/{IMAGE}")
    status, body = await send("GET", f"/alice/images/{IMAGE}?x=1", headers)
    assert (status, body["code"]) == (401, "InvalidCredentials")
    status, body = await send("DELETE", f"/alice/images/{IMAGE}", headers)
    assert (status, body["code"]) == (401, "InvalidCredentials")


async def test_request_line(send: Send) -> None:
    status, _ = await signed(send, KEYS["rsa"], sign_headers=("request-line", "date"))
    assert status == 200


async def test_x_date_replaces_date(send: Send) -> None:
    key = KEYS["ed25519"]
    target = f"/alice/images/{IMAGE}"
    headers = {"x-date": http_date()}
    # An explicit headers="x-date" ...
    signer = httpsig.RequestSigner(key, f"/alice/keys/{fp(key)}", sign_headers=("x-date",))
    headers["Authorization"] = signer.authorization("GET", target, headers)
    assert (await send("GET", target, headers))[0] == 200
    # ... and the default when headers= is absent and x-date is present (no Date at all).
    sig = httpsig.sign_bytes(key, "ed25519-sha512", f"x-date: {headers['x-date']}".encode())
    headers["Authorization"] = (
        f'Signature keyId="/alice/keys/{fp(key)}",algorithm="ed25519-sha512",signature="{sig}"'
    )
    assert (await send("GET", target, headers))[0] == 200
    # Legacy 0.9 with x-date: the signed string is the bare x-date value.
    sig = httpsig.sign_bytes(key, "ed25519-sha512", headers["x-date"].encode())
    headers["Authorization"] = (
        f'Signature keyId="/alice/keys/{fp(key)}",algorithm="ed25519-sha512" {sig}'
    )
    assert (await send("GET", target, headers))[0] == 200


async def test_extra_signed_headers(send: Send) -> None:
    target = f"/alice/images/{IMAGE}"
    signer = httpsig.RequestSigner(
        KEYS["p521"],
        f"/alice/keys/{fp(KEYS['p521'])}",
        sign_headers=("(request-target)", "host", "date", "content-md5"),
    )
    headers = {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "host": "gateway.example"}
    headers = signer.sign("GET", target, headers)
    assert (await send("GET", target, headers))[0] == 200


async def test_my_resolves_to_the_caller(send: Send) -> None:
    status, body = await signed(send, KEYS["rsa"], target=f"/my/images/{IMAGE}")
    assert (status, body["login"]) == (200, "alice")


async def test_raw_der_and_raw_rs_ecdsa_signatures(send: Send) -> None:
    key = KEYS["p256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    date = http_date()
    der = key.sign(f"date: {date}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
    authz = f'Signature keyId="/alice/keys/{fp(key)}",algorithm="ecdsa-sha256",signature="{raw}"'
    status, _ = await send("GET", f"/alice/images/{IMAGE}", {"Date": date, "Authorization": authz})
    assert status == 200


# --- what must be refused, exactly as CloudAPI does ------------------------------------------


async def expect(
    send: Send,
    headers: dict[str, str],
    status: int,
    code: str,
    message: str | None = None,
    target: str = f"/alice/images/{IMAGE}",
) -> str:
    got_status, body = await send("GET", target, headers)
    assert (got_status, body["code"]) == (status, code), body
    assert set(body) == {"code", "message"}
    if message is not None:
        assert body["message"] == message
    return str(body["message"])


async def test_no_authorization(send: Send) -> None:
    await expect(
        send,
        {"Date": http_date()},
        401,
        "InvalidCredentials",
        "You must make authenticated requests to use CloudAPI",
    )


async def test_basic_auth_is_not_enough(send: Send) -> None:
    basic = "Basic " + base64.b64encode(b"alice:secret").decode()
    await expect(
        send,
        {"Authorization": basic},
        401,
        "InvalidCredentials",
        "You must make authenticated requests to use CloudAPI",
    )


async def test_authorization_without_a_space(send: Send) -> None:
    await expect(
        send,
        {"Authorization": "Signature", "Date": http_date()},
        400,
        "InvalidHeader",
        "BasicAuth content is invalid.",
    )


@pytest.mark.parametrize(
    ("authz", "message"),
    [
        ("Signature garbage", "keyId was not specified"),  # a bare name is no param
        ("Signature garbage!", "bad param format"),
        ('Signature keyId="/alice/keys/x",', "algorithm was not specified"),  # trailing comma
        ('Signature algorithm="rsa-sha256",signature="AAAA"', "keyId was not specified"),
        ('Signature keyId="/alice/keys/x",signature="AAAA"', "algorithm was not specified"),
        (
            'signature keyId="/alice/keys/x",algorithm="rsa-sha256",signature="AAAA"',
            'scheme was not "Signature"',
        ),
        ('Signature keyId="/alice/keys/x",algorithm="rsa-sha256"', "signature was not specified"),
        ('Signature keyId="/alice/keys/x" algorithm="rsa-sha256"', "bad param format"),
    ],
)
async def test_malformed_signature_headers(send: Send, authz: str, message: str) -> None:
    await expect(
        send,
        {"Authorization": authz, "Date": http_date()},
        400,
        "InvalidHeader",
        f"Authorization header invalid: {message}",
    )


async def test_missing_date(send: Send) -> None:
    authz = 'Signature keyId="/alice/keys/id_rsa",algorithm="rsa-sha256",signature="AAAA"'
    await expect(
        send,
        {"Authorization": authz},
        400,
        "InvalidHeader",
        "Authorization header invalid: date was not in the request",
    )


async def test_date_must_be_signed(send: Send) -> None:
    signer = httpsig.RequestSigner(
        KEYS["rsa"], "/alice/keys/id_rsa", sign_headers=("(request-target)",)
    )
    headers = signer.sign("GET", f"/alice/images/{IMAGE}")
    await expect(
        send,
        headers,
        400,
        "InvalidHeader",
        "Authorization header invalid: date was not a signed header",
    )
    headers["x-date"] = headers["Date"]
    signer.sign_headers = ("(request-target)", "date")
    headers["Authorization"] = signer.authorization("GET", f"/alice/images/{IMAGE}", headers)
    await expect(
        send,
        headers,
        400,
        "InvalidHeader",
        "Authorization header invalid: x-date was not a signed header",
    )


async def test_signed_header_missing_from_request(send: Send) -> None:
    authz = (
        'Signature keyId="/alice/keys/id_rsa",algorithm="rsa-sha256",'
        'headers="date content-md5",signature="AAAA"'
    )
    await expect(
        send,
        {"Authorization": authz, "Date": http_date()},
        400,
        "InvalidHeader",
        "Authorization header invalid: content-md5 was not in the request",
    )


async def test_legacy_format_cannot_sign_request_target(send: Send) -> None:
    date = http_date()
    sig = httpsig.sign_bytes(KEYS["rsa"], "rsa-sha256", date.encode())
    authz = (
        f'Signature keyId="/alice/keys/id_rsa",algorithm="rsa-sha256",'
        f'headers="(request-target) date" {sig}'
    )
    # The 1.x parser's complaint is the one reported (the 0.9 parser fails as well).
    await expect(
        send,
        {"Authorization": authz, "Date": date},
        400,
        "InvalidHeader",
        "Authorization header invalid: bad param format",
    )


@pytest.mark.parametrize("offset", [-400, 400])
async def test_clock_skew_of_a_signed_request(send: Send, offset: int) -> None:
    signer = httpsig.RequestSigner(KEYS["rsa"], "/alice/keys/id_rsa")
    headers = signer.sign("GET", f"/alice/images/{IMAGE}", {"Date": http_date(offset)})
    message = await expect(send, headers, 400, "InvalidHeader")
    found = re.fullmatch(
        r"Authorization header invalid: clock skew of ([0-9.]+)s was greater than 300s", message
    )
    assert found and 390 < float(found[1]) < 410, message


async def test_small_skew_is_fine(send: Send) -> None:
    signer = httpsig.RequestSigner(KEYS["rsa"], "/alice/keys/id_rsa")
    for offset in (-200, 200):
        headers = signer.sign("GET", f"/alice/images/{IMAGE}", {"Date": http_date(offset)})
        assert (await send("GET", f"/alice/images/{IMAGE}", headers))[0] == 200


async def test_old_date_without_signature_is_request_expired(send: Send) -> None:
    date = http_date(-400)
    await expect(send, {"Date": date}, 400, "RequestExpired", f"Date header {date} is too old")


async def test_old_date_beside_a_fresh_signed_x_date_is_request_expired(send: Send) -> None:
    key = KEYS["rsa"]
    date = http_date(-400)
    headers = {"x-date": http_date(), "Date": date}
    signer = httpsig.RequestSigner(key, "/alice/keys/id_rsa", sign_headers=("x-date",))
    headers["Authorization"] = signer.authorization("GET", f"/alice/images/{IMAGE}", headers)
    await expect(send, headers, 400, "RequestExpired", f"Date header {date} is too old")


async def test_unparsable_date(send: Send) -> None:
    signer = httpsig.RequestSigner(KEYS["rsa"], "/alice/keys/id_rsa")
    headers = signer.sign("GET", f"/alice/images/{IMAGE}", {"Date": "yesterday-ish"})
    await expect(
        send,
        headers,
        400,
        "InvalidHeader",
        "Authorization header invalid: date header is not a valid HTTP date",
    )
    await expect(send, {"Date": "yesterday-ish"}, 400, "InvalidHeader", "Date header is invalid")


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "dsa-sha1", "ed25519-sha256", "rsa-md5"])
async def test_unsupported_algorithms(send: Send, algorithm: str) -> None:
    date = http_date()
    authz = f'Signature keyId="/alice/keys/id_rsa",algorithm="{algorithm}",signature="AAAA"'
    await expect(
        send,
        {"Authorization": authz, "Date": date},
        401,
        "InvalidCredentials",
        f"{algorithm.upper()} is not a supported signing algorithm",
    )


@pytest.mark.parametrize("key_id", ["alice", "/alice/id_rsa", "/alice/key/id_rsa", "/a/b/keys/c/d"])
async def test_malformed_key_ids(send: Send, key_id: str) -> None:
    status, body = await signed(send, KEYS["rsa"], key_id=key_id)
    assert (status, body) == (
        401,
        {
            "code": "InvalidCredentials",
            "message": f"Invalid KeyId {key_id} in authorization header",
        },
    )


async def test_sub_user_key_ids_are_refused_clearly(send: Send) -> None:
    status, body = await signed(send, KEYS["rsa"], key_id="/alice/users/dev/keys/id_rsa")
    assert (status, body["code"]) == (401, "InvalidCredentials")
    assert "sub-users are not supported" in body["message"]


@pytest.mark.parametrize(
    ("key", "key_id"),
    [
        (KEYS["rsa"], "/nobody/keys/id_rsa"),  # unknown login
        (KEYS["rsa"], "/my/keys/id_rsa"),  # keyId must carry the real login
        (KEYS["rsa"], "/alice/keys/no_such_key"),  # unknown key name
        (KEYS["rsa"], "/alice/keys/00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"),
        (BOB_KEY, f"/alice/keys/{fp(KEYS['p256'])}"),  # someone else's private key
        (BOB_KEY, f"/alice/keys/{fp(BOB_KEY)}"),  # bob's key is not alice's
    ],
    ids=["unknown-login", "my-in-keyid", "unknown-name", "unknown-fp", "wrong-key", "other-acct"],
)
async def test_bad_credentials(send: Send, key: httpsig.PrivateKey, key_id: str) -> None:
    status, body = await signed(send, key, key_id=key_id)
    assert (status, body) == (
        401,
        {"code": "InvalidCredentials", "message": "Invalid authorization credentials supplied"},
    )


async def test_tampered_and_mismatched_signatures(send: Send) -> None:
    target = f"/alice/images/{IMAGE}"
    signer = httpsig.RequestSigner(KEYS["rsa"], "/alice/keys/id_rsa")
    headers = signer.sign("GET", target)
    good = headers["Authorization"]
    sig = good.rsplit('signature="', 1)[1].rstrip('"')
    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
    for bad in (
        good.replace(sig, flipped),  # one bit off
        good.replace(sig, "not base64!!"),  # garbage
        good.replace("rsa-sha256", "rsa-sha512"),  # another hash than the one used
        good.replace("rsa-sha256", "ecdsa-sha256"),  # an algorithm that does not fit the key
        good.replace("rsa-sha256", "ed25519-sha512"),
    ):
        headers["Authorization"] = bad
        await expect(
            send, headers, 401, "InvalidCredentials", "Invalid authorization credentials supplied"
        )
    # A signature over another date than the one sent.
    headers["Authorization"] = good
    headers["Date"] = http_date(5)
    await expect(send, headers, 401, "InvalidCredentials")


async def test_disabled_account(send: Send) -> None:
    status, body = await signed(
        send, CAROL_KEY, key_id=f"/carol/keys/{fp(CAROL_KEY)}", target=f"/carol/images/{IMAGE}"
    )
    assert (status, body) == (
        403,
        {"code": "NotAuthorized", "message": "Account or user is disabled"},
    )


async def test_another_accounts_path(send: Send) -> None:
    for login in ("bob", "nobody"):
        status, body = await signed(send, KEYS["rsa"], target=f"/{login}/images/{IMAGE}")
        assert (status, body) == (
            403,
            {
                "code": "NotAuthorized",
                "message": f"You do not have permission to access /{login}/images/{IMAGE}"
                " (getimage)",
            },
        )


async def test_accounts_and_keys_added_while_running(
    send: Send, store: AccountStore, store_settings: Settings
) -> None:
    """The CLI writes through its own connection (its own process); no restart is needed: a
    change is seen within ``RECHECK_AFTER`` (the key cache looks at the file once a ms)."""
    key = ed25519.Ed25519PrivateKey.generate()
    key_id, target = f"/dave/keys/{fp(key)}", f"/dave/images/{IMAGE}"
    assert (await signed(send, key, key_id=key_id, target=target))[0] == 401
    databases = await Databases.open(store_settings, ("accounts",))
    other = AccountStore(databases["accounts"])

    async def written_elsewhere() -> None:
        await asyncio.sleep(2 * RECHECK_AFTER)

    try:
        await other.add_account("dave")
        await written_elsewhere()
        assert (await signed(send, key, key_id=key_id, target=target))[0] == 401
        await other.add_key("dave", httpsig.ssh_public_key_line(key), name="laptop")
        await written_elsewhere()
        status, body = await signed(send, key, key_id="/dave/keys/laptop", target=target)
        assert (status, body["login"]) == (200, "dave")
        await other.set_disabled("dave", True)
        await written_elsewhere()
        assert (await signed(send, key, key_id=key_id, target=target))[0] == 403
        await other.set_disabled("dave", False)
        await written_elsewhere()
        assert (await signed(send, key, key_id=key_id, target=target))[0] == 200
    finally:
        await databases.close()


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authz",
    [
        b'Signature keyId="/al\xffice/keys/k",algorithm="rsa-sha256",signature="AAAA"',
        b'Signature keyId="/alice/keys/k",algorithm="rsa-sha256\xff",signature="AAAA"',
        b'Signature keyId="/alice/keys/id_rsa",algorithm="rsa-sha256",headers="date x-\xff",'
        b'signature="AAAA"',
        b'Signature keyId="/alice/keys/id_rsa",algorithm="rsa-sha256",signature="\xff\xfe"',
        b'Signature keyId="/a/users/\xff/keys/k",algorithm="rsa-sha256",signature="AAAA"',
        b"Signature " + b"k" * 7000,
        b'Signature keyId="/alice/keys/id_rsa",algorithm="rsa-sha256",headers="date x-a",'
        b'signature="AAAA"',
    ],
)
async def test_undecodable_bytes_get_a_clean_4xx(aiohttp_server: Any, authz: bytes) -> None:
    """Bytes that are not UTF-8 end up as lone surrogates in aiohttp's strings; they must
    never turn an error message into a 500 (raw socket, since clients refuse to send them)."""
    app = web.Application(middlewares=[errors_as_json])
    app[SETTINGS] = Settings()  # authenticate reads clock_skew
    app[ACCOUNTS] = AccountStore(":memory:")
    await app[ACCOUNTS].add_account("alice")
    await app[ACCOUNTS].add_key("alice", httpsig.ssh_public_key_line(KEYS["rsa"]), name="id_rsa")
    app.router.add_get("/{login}/images/{id}", get_image)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /alice/images/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Date: " + http_date().encode() + b"\r\nX-A: caf\xe9\xff\r\n"
        b"Authorization: " + authz + b"\r\n\r\n"
    )
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    assert 400 <= status < 500, response
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert set(body) == {"code", "message"}
    await app[ACCOUNTS].close()


@pytest.mark.parametrize(
    "date",
    ["Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 32 Foo 2020 99:99:99 GMT", "0" * 300, "-1"],
)
async def test_absurd_dates(send: Send, date: str) -> None:
    signer = httpsig.RequestSigner(KEYS["rsa"], "/alice/keys/id_rsa")
    headers = signer.sign("GET", f"/alice/images/{IMAGE}", {"Date": date})
    status, body = await send("GET", f"/alice/images/{IMAGE}", headers)
    assert (status, body["code"]) == (400, "InvalidHeader")


async def test_x_date_is_the_one_checked_for_skew(send: Send) -> None:
    """With both present, http-signature judges x-date; a fresh Date does not save it."""
    target = f"/alice/images/{IMAGE}"
    headers = {"x-date": http_date(-1000), "Date": http_date()}
    signer = httpsig.RequestSigner(KEYS["rsa"], "/alice/keys/id_rsa", sign_headers=("x-date",))
    headers["Authorization"] = signer.authorization("GET", target, headers)
    message = await expect(send, headers, 400, "InvalidHeader")
    assert message.startswith("Authorization header invalid: clock skew of ")
