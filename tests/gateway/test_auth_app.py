"""Auth through the real app (``create_app``): the clients' signing styles and the refusals on
the image routes, with the gateway's own error middleware and headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.httpsig import RequestSigner, md5_fingerprint, ssh_public_key_line
from gateway.server.appkeys import ACCOUNTS
from tests.support.helpers import import_image

UNKNOWN = "00000000-0000-0000-0000-000000000000"


async def test_each_clients_signing_style(
    client: TestClient, caller_factory: Callable[..., Any]
) -> None:
    """triton signs ``(request-target) date``; sdc-* and node-manta sign ``date``; python-manta
    sends rsa-sha1 without headers=; very old clients use the 0.9 format."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    caller = await caller_factory(client, "alice", key=key)
    image = await import_image(caller.app, caller.account, b"hello image")
    styles: list[dict[str, Any]] = [
        {"sign_headers": ("(request-target)", "date")},
        {"sign_headers": ("date",)},
        {"algorithm": "rsa-sha1"},
        {"legacy": True},
    ]
    for style in styles:
        caller.signer = RequestSigner.for_login(key, "alice", **style)
        for path in (f"/alice/images/{image.uuid}", f"/my/images/{image.uuid}"):
            resp = await caller.request("GET", path, headers={"Accept-Version": "~9||~8"})
            assert resp.status == 200, (style, await resp.text())
            assert (await resp.json())["id"] == image.uuid
        resp = await caller.request("HEAD", "/my/images")
        assert resp.status == 200


async def test_refusals_carry_cloudapi_headers(
    client: TestClient, caller_factory: Callable[..., Any]
) -> None:
    caller = await caller_factory(client, "alice")
    await caller_factory(client, "bob")
    resp = await caller.request("GET", "/alice/images", sign=False)
    assert resp.status == 401
    assert await resp.json() == {
        "code": "InvalidCredentials",
        "message": "You must make authenticated requests to use CloudAPI",
    }
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "Request-Id" in resp.headers

    resp = await caller.request("GET", "/bob/images")
    assert resp.status == 403
    assert await resp.json() == {
        "code": "NotAuthorized",
        "message": "You do not have permission to access /bob/images (listimages)",
    }
    resp = await caller.request("DELETE", f"/bob/images/{UNKNOWN}")
    assert (await resp.json())["message"].endswith(f"/bob/images/{UNKNOWN} (deleteimage)")
    resp = await caller.request("POST", f"/bob/images/{UNKNOWN}?action=export")
    assert resp.status == 403
    assert (await resp.json())["message"].endswith(f"/bob/images/{UNKNOWN} (updateimage)")


async def test_auth_comes_before_image_lookup_and_parameters(
    client: TestClient, caller_factory: Callable[..., Any]
) -> None:
    """A stranger learns nothing about images or parameters: 401 first, then the rest."""
    caller = await caller_factory(client, "alice")
    resp = await caller.request("POST", f"/alice/images/{UNKNOWN}", sign=False)
    assert (resp.status, (await resp.json())["code"]) == (401, "InvalidCredentials")
    resp = await caller.request("GET", f"/alice/images/{UNKNOWN}", sign=False)
    assert (resp.status, (await resp.json())["code"]) == (401, "InvalidCredentials")
    resp = await caller.request("GET", f"/alice/images/{UNKNOWN}")
    assert (resp.status, (await resp.json())["code"]) == (404, "ResourceNotFound")


async def test_disabled_then_enabled_while_serving(
    client: TestClient, caller_factory: Callable[..., Any]
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    caller = await caller_factory(client, "carol", key=key)
    store = caller.app[ACCOUNTS]
    await store.set_disabled("carol", True)
    resp = await caller.request("GET", "/my/images")
    assert (resp.status, await resp.json()) == (
        403,
        {"code": "NotAuthorized", "message": "Account or user is disabled"},
    )
    await store.set_disabled("carol", False)
    assert (await caller.request("GET", "/my/images")).status == 200


async def test_key_added_by_name_while_serving(
    client: TestClient, caller_factory: Callable[..., Any]
) -> None:
    caller = await caller_factory(client, "alice")
    laptop = ed25519.Ed25519PrivateKey.generate()
    caller.signer = RequestSigner(laptop, "/alice/keys/laptop")
    assert (await caller.request("GET", "/my/images")).status == 401
    await caller.app[ACCOUNTS].add_key("alice", ssh_public_key_line(laptop), name="laptop")
    assert (await caller.request("GET", "/my/images")).status == 200
    caller.signer = RequestSigner(laptop, f"/alice/keys/{md5_fingerprint(laptop)}")
    assert (await caller.request("GET", "/my/images")).status == 200
