"""CloudAPI conventions on every response: headers, CORS, error envelope, Ping."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from gateway import __version__
from tests.support.helpers import EchoPlugin, import_image

pytestmark = pytest.mark.asyncio

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COMMON = (
    "Date",
    "Server",
    "Api-Version",
    "Request-Id",
    "Response-Time",
    "X-Api-Version",
    "X-Request-Id",
    "X-Response-Time",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Headers",
    "Access-Control-Expose-Headers",
)


def assert_common_headers(resp: Any) -> None:
    for name in COMMON:
        assert name in resp.headers, f"{name} missing on {resp.status}"
    assert resp.headers["Server"] == f"cloudapi-gateway/{__version__}"
    assert parsedate_to_datetime(resp.headers["Date"]) is not None
    assert resp.headers["Request-Id"] == resp.headers["X-Request-Id"]
    assert resp.headers["Api-Version"] == resp.headers["X-Api-Version"]
    assert resp.headers["Response-Time"].isdigit()
    assert resp.headers["Response-Time"] == resp.headers["X-Response-Time"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Accept-Version" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Access-Control-Expose-Headers"] == "Api-Version, Request-Id, Response-Time"


async def assert_content_md5(resp: Any) -> bytes:
    raw = await resp.read()
    expected = base64.b64encode(hashlib.md5(raw).digest()).decode()
    assert resp.headers["Content-MD5"] == expected
    return bytes(raw)


async def test_ping(client: Any) -> None:
    resp = await client.get("/--ping")
    assert resp.status == 200
    assert await resp.json() == {
        "ping": "pong",
        "cloudapi": {"versions": ["7.0.0", "7.1.0", "7.2.0", "7.3.0", "8.0.0", "9.0.0"]},
    }
    assert resp.headers["Triton-Datacenter-Name"] == "test-dc-1"
    assert resp.headers["Api-Version"] == "9.0.0"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert_common_headers(resp)
    await assert_content_md5(resp)


async def test_request_id_is_a_fresh_uuid(client: Any) -> None:
    first = await client.get("/--ping")
    second = await client.get("/--ping")
    assert UUID_RE.match(first.headers["Request-Id"])
    assert first.headers["Request-Id"] != second.headers["Request-Id"]


async def test_request_id_echoes_the_client(client: Any) -> None:
    given = str(uuid.uuid4())
    resp = await client.get("/--ping", headers={"x-request-id": given})
    assert resp.headers["Request-Id"] == given
    assert resp.headers["X-Request-Id"] == given


async def test_unsafe_client_request_id_is_replaced(client: Any) -> None:
    resp = await client.get("/--ping", headers={"x-request-id": "a" * 500})
    assert UUID_RE.match(resp.headers["Request-Id"])


async def test_404_envelope_and_headers(client: Any) -> None:
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert await resp.json() == {
        "code": "ResourceNotFound",
        "message": "/no/such/thing does not exist",
    }
    assert_common_headers(resp)
    await assert_content_md5(resp)


async def test_405_bad_method(client: Any) -> None:
    resp = await client.put("/--ping")
    assert resp.status == 405
    assert await resp.json() == {"code": "MethodNotAllowedError", "message": "PUT is not allowed"}
    assert resp.headers["Allow"] == "GET, HEAD"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert_common_headers(resp)


async def test_head_error_has_no_body(client: Any) -> None:
    resp = await client.head("/no/such/thing")
    assert resp.status == 404
    assert await resp.read() == b""
    assert_common_headers(resp)


async def test_allow_methods_of_the_image_route(caller: Any) -> None:
    resp = await caller.request("POST", "/my/images/not-a-uuid?action=export")
    assert_common_headers(resp)
    # GET/HEAD/DELETE come from gateway.server.views.images on the same path, POST from the actions.
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, DELETE"


async def test_allow_methods_of_the_images_collection(caller: Any) -> None:
    resp = await caller.request("GET", "/my/images")
    # POST is CloudAPI's CreateImageFromMachine, answered 501 here (no machines).
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST"


async def test_405_on_the_image_route_lists_every_method(client: Any) -> None:
    resp = await client.put("/my/images/00000000-0000-0000-0000-000000000000")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD, POST, DELETE"


async def test_auth_error_has_all_headers(client: Any) -> None:
    resp = await client.post("/my/images/00000000-0000-0000-0000-000000000000")
    assert resp.status == 401
    assert (await resp.json())["code"] == "InvalidCredentials"
    assert_common_headers(resp)
    await assert_content_md5(resp)


async def test_success_of_an_action_has_all_headers(app_client: Any, caller_factory: Any) -> None:
    client = await app_client(plugins=(EchoPlugin(),))
    caller = await caller_factory(client, "alice")
    image = await import_image(client.server.app, caller.account, b"abc")
    resp = await caller.request(
        "POST", f"/my/images/{image.uuid}?action=echo&word=x", headers={"x-request-id": "r-1"}
    )
    assert resp.status == 200
    assert resp.headers["Request-Id"] == "r-1"
    assert_common_headers(resp)
    await assert_content_md5(resp)
    # restify's JSON type carries no charset parameter.
    assert resp.headers["Content-Type"] == "application/json"


async def test_internal_errors_are_logged_with_the_request_id(
    app_client: Any, caller_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app_client(plugins=(EchoPlugin(),))
    caller = await caller_factory(client, "alice")
    image = await import_image(client.server.app, caller.account, b"abc")
    resp = await caller.request("POST", f"/my/images/{image.uuid}?action=echo&word=boom")
    assert resp.status == 500
    assert await resp.json() == {"code": "InternalError", "message": "Internal Error"}
    rid = resp.headers["Request-Id"]
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
    assert_common_headers(resp)
