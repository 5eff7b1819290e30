"""Fault injection, from Python and over the admin surface, against a running FakeMantaServer."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from fake_manta import ADMIN_HEADERS, FakeMantaServer, ThreadedFakeManta
from fake_manta.faults import FaultInjector

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(params=["memory", "disk"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FakeMantaServer]:
    data_dir = tmp_path / "data" if request.param == "disk" else None
    async with FakeMantaServer(host="127.0.0.1", port=0, data_dir=data_dir, no_auth=True) as srv:
        srv.add_account("alice")
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def put(http: aiohttp.ClientSession, server: FakeMantaServer, path: str,
              data: bytes) -> tuple[int, dict[str, str] | None]:
    async with http.put(server.url + path, data=data,
                        headers={"Content-Type": "application/octet-stream"}) as resp:
        body = await resp.read()
        return resp.status, (json.loads(body) if resp.status >= 400 and body else None)


async def get(http: aiohttp.ClientSession, server: FakeMantaServer, path: str) -> tuple[int, bytes]:
    async with http.get(server.url + path) as resp:
        return resp.status, await resp.read()


async def test_next_n_matching_requests_get_the_error(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    rule = server.faults.add(method="PUT", path=r"\.zfs$", status=503,
                             code="ServiceUnavailable", times=2)
    assert await put(http, server, "/alice/stor/other", b"x") == (204, None)  # no match
    for _ in range(2):
        async with http.put(server.url + "/alice/stor/img.zfs", data=b"zfs") as resp:
            assert resp.status == 503
            assert resp.headers["Content-Type"] == "application/json"
            error = json.loads(await resp.read())
            assert error["code"] == "ServiceUnavailable"
            assert isinstance(error["message"], str)
    assert rule.hits == 2
    assert await put(http, server, "/alice/stor/img.zfs", b"zfs") == (204, None)
    assert rule.hits == 2
    assert await get(http, server, "/alice/stor/img.zfs") == (200, b"zfs")


async def test_method_filter_and_any_method(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    assert await put(http, server, "/alice/stor/obj", b"v1") == (204, None)
    only_get = server.faults.add(method="GET", path=r"/obj$", status=500, times=1)
    assert await put(http, server, "/alice/stor/obj", b"v2") == (204, None)
    assert only_get.hits == 0
    assert (await get(http, server, "/alice/stor/obj"))[0] == 500
    any_method = server.faults.add(path=r"/obj$", code="ThrottledError", times=None)
    for _ in range(3):
        status, error = await put(http, server, "/alice/stor/obj", b"v3")
        assert (status, error and error["code"]) == (503, "ThrottledError")
    assert any_method.hits == 3
    assert any_method in server.faults.rules()
    assert server.faults.remove(any_method)
    assert await get(http, server, "/alice/stor/obj") == (200, b"v2")


async def test_status_only_gets_a_matching_code(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(method="PUT", path="/x$", status=507)
    status, error = await put(http, server, "/alice/stor/x", b"x")
    assert (status, error and error["code"]) == (507, "NotEnoughSpace")


async def test_head_error_has_no_body(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    server.faults.add(method="HEAD", path="/alice/stor", status=503)
    async with http.head(server.url + "/alice/stor") as resp:
        assert resp.status == 503
        assert await resp.read() == b""


async def test_stall_then_proceed(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    """A stalled request is still pending while others are served; then it completes."""
    rule = server.faults.add(method="PUT", path="/slow$", stall=2.0)
    slow = asyncio.create_task(put(http, server, "/alice/stor/slow", b"slow"))
    for _ in range(1000):  # until the server has matched it (hits is a plain counter)
        if rule.hits:
            break
        await asyncio.sleep(0.01)
    assert await put(http, server, "/alice/stor/fast", b"fast") == (204, None)
    assert not slow.done()
    assert await slow == (204, None)
    assert await get(http, server, "/alice/stor/slow") == (200, b"slow")


async def test_stall_then_fail(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    rule = server.faults.add(method="GET", path="/alice/stor$", stall=0.2, status=500,
                             code="InternalError")
    assert (await get(http, server, "/alice/stor"))[0] == 500
    assert rule.hits == 1


async def test_cut_put_after_k_bytes_keeps_previous_version(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    assert await put(http, server, "/alice/stor/obj", b"previous") == (204, None)
    # times=None: aiohttp silently retries an idempotent PUT once after a disconnect.
    rule = server.faults.add(method="PUT", path="/obj$", cut_after=1024, times=None)
    with pytest.raises(aiohttp.ClientError):
        await put(http, server, "/alice/stor/obj", DATA * 8)
    assert server.faults.remove(rule)
    assert rule.hits >= 1
    assert await get(http, server, "/alice/stor/obj") == (200, b"previous")
    # The next PUT is not affected.
    assert await put(http, server, "/alice/stor/obj", DATA) == (204, None)
    assert await get(http, server, "/alice/stor/obj") == (200, DATA)


async def test_cut_put_of_new_object_leaves_nothing(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    server.faults.add(method="PUT", path="/new$", cut_after=0, times=None)
    with pytest.raises(aiohttp.ClientError):
        await put(http, server, "/alice/stor/new", DATA)
    server.faults.reset()
    assert (await get(http, server, "/alice/stor/new"))[0] == 404


async def raw_get(server: FakeMantaServer, path: str) -> tuple[bytes, bytes]:
    """GET over a bare socket, reading until the server closes: (head, body bytes received)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()  # until EOF
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        decoded = bytearray()
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            decoded += rest[:size]
            body = rest[size + 2 :]
            if size == 0:
                break
        body = bytes(decoded)
    return head, body


async def test_cut_get_after_k_bytes(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    assert await put(http, server, "/alice/stor/obj", DATA) == (204, None)
    rule = server.faults.add(method="GET", path="/obj$", cut_after=1000)
    head, body = await raw_get(server, "/alice/stor/obj")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == DATA[:1000]
    assert rule.hits == 1
    # A client that trusts Content-Length notices the truncation.
    server.faults.add(method="GET", path="/obj$", cut_after=10, times=None)
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(http, server, "/alice/stor/obj")
    server.faults.reset()
    assert await get(http, server, "/alice/stor/obj") == (200, DATA)


async def test_cut_larger_than_the_body_changes_nothing(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    assert await put(http, server, "/alice/stor/obj", DATA) == (204, None)
    server.faults.add(method="GET", path="/obj$", cut_after=len(DATA))
    assert await get(http, server, "/alice/stor/obj") == (200, DATA)


async def test_reset_forgets_rules(server: FakeMantaServer, http: aiohttp.ClientSession) -> None:
    server.faults.add(path=".*", status=500, times=None)
    await server.reset()
    server.add_account("alice")
    assert server.faults.rules() == []
    assert await put(http, server, "/alice/stor/x", b"x") == (204, None)


# --- admin surface --------------------------------------------------------------------------------
async def test_admin_surface_adds_lists_and_clears(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    spec = {"method": "PUT", "path": r"\.zfs$", "status": 503, "code": "ServiceUnavailable",
            "times": 1}
    async with http.post(server.url + "/_fake/faults", headers=ADMIN_HEADERS, json=spec) as resp:
        assert resp.status == 201
        rule = await resp.json()
    assert rule["path"] == r"\.zfs$" and rule["hits"] == 0 and rule["remaining"] == 1
    status, error = await put(http, server, "/alice/stor/a.zfs", b"z")
    assert (status, error and error["code"]) == (503, "ServiceUnavailable")

    async with http.post(server.url + "/_fake/faults", headers=ADMIN_HEADERS,
                         json={"path": "/b$", "cut_after": 5, "times": 3}) as resp:
        assert resp.status == 201
    async with http.get(server.url + "/_fake/faults", headers=ADMIN_HEADERS) as resp:
        listed = await resp.json()
    assert [r["path"] for r in listed] == ["/b$"]  # the used-up rule is gone

    # Admin paths are never faulted, even by a rule matching everything.
    catch_all = server.faults.add(path=".*", status=500, times=None)
    async with http.get(server.url + "/_fake/faults", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 200
    assert catch_all.hits == 0
    async with http.delete(server.url + "/_fake/faults", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 204
    async with http.get(server.url + "/_fake/faults", headers=ADMIN_HEADERS) as resp:
        assert await resp.json() == []
    assert await put(http, server, "/alice/stor/b", b"b") == (204, None)


async def test_admin_surface_removes_one_rule(
    server: FakeMantaServer, http: aiohttp.ClientSession
) -> None:
    keep = server.faults.add(method="GET", path="/keep$", status=503, times=None)
    async with http.post(server.url + "/_fake/faults", headers=ADMIN_HEADERS,
                         json={"method": "GET", "path": "/drop$", "status": 500}) as resp:
        dropped = await resp.json()
    one = server.url + f"/_fake/faults/{dropped['id']}"
    async with http.delete(one, headers=ADMIN_HEADERS) as resp:
        assert resp.status == 204
    async with http.delete(one, headers=ADMIN_HEADERS) as resp:
        assert resp.status == 404
    assert server.faults.rules() == [keep]
    assert (await get(http, server, "/alice/stor/keep"))[0] == 503
    async with http.get(server.url + "/_fake/faults", headers=ADMIN_HEADERS) as resp:
        assert [(r["id"], r["hits"], r["remaining"]) for r in await resp.json()] == [
            (keep.id, 1, None)]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"path": "(", "status": 500}).encode(),
        json.dumps({"path": "x"}).encode(),
        json.dumps({"path": "x", "status": "500"}).encode(),
        json.dumps({"path": "x", "status": 500, "bogus": 1}).encode(),
        json.dumps({"path": "x", "status": 500, "times": 0}).encode(),
    ],
)
async def test_admin_surface_rejects_bad_rules(
    server: FakeMantaServer, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(server.url + "/_fake/faults", data=body,
                         headers={**ADMIN_HEADERS, "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "InvalidArgumentError"
    assert server.faults.rules() == []


def test_python_api_validates() -> None:
    faults = FaultInjector()
    with pytest.raises(ValueError):
        faults.add(path="(", status=500)
    with pytest.raises(ValueError):
        faults.add(path="x")
    with pytest.raises(ValueError):
        faults.add(path="x", cut_after=-1)
    rule = faults.add(method="put", path="x", status=503)
    assert rule.method == "PUT" and rule.remaining == 1
    assert faults.take("GET", "/a/x") is None
    assert faults.take("PUT", "/a/x") is rule
    assert rule.hits == 1 and faults.rules() == []


def test_rules_from_another_thread_than_the_servers() -> None:
    """ThreadedFakeManta: rules are added from the test thread, applied on the server's loop."""
    with ThreadedFakeManta(host="127.0.0.1", port=0, no_auth=True) as threaded:
        threaded.add_account("alice")
        rule = threaded.faults.add(method="GET", path="/alice/stor$", status=503)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(threaded.url + "/alice/stor", timeout=30)
        assert err.value.code == 503
        assert json.loads(err.value.read())["code"] == "ServiceUnavailable"
        assert rule.hits == 1
        with urllib.request.urlopen(threaded.url + "/alice/stor", timeout=30) as resp:
            assert resp.status == 200
