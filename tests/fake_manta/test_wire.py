"""Wire details: 100-continue ordering, common headers, the error envelope, unknown routes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from urllib.parse import urlsplit

import pytest


async def _raw_put(url: str, path: str, body: bytes, extra: str = "") -> tuple[str, bytes]:
    """Send PUT headers with Expect: 100-continue; send the body only after a 100.

    Returns (first status line, whatever followed) so tests can see what came before the body.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
            f"Expect: 100-continue\r\nx-durability-level: 2\r\n{extra}\r\n".encode())
        await writer.drain()
        first = (await reader.readline()).decode().strip()
        if first.startswith("HTTP/1.1 100"):
            await reader.readline()  # blank line after the interim response
            writer.write(body)
            await writer.drain()
            final = await reader.readuntil(b"\r\n\r\n")
            return first, final
        rest = await reader.readuntil(b"\r\n\r\n")
        return first, rest
    finally:
        writer.close()


async def test_error_goes_out_before_100_continue(manta) -> None:
    first, rest = await _raw_put(manta.url, "/bob/stor/missing-dir/x", b"hello\n")
    assert first.startswith("HTTP/1.1 404"), first
    assert b"100 Continue" not in rest


async def test_continue_then_204(manta) -> None:
    first, final = await _raw_put(manta.url, "/bob/stor/x", b"hello\n")
    assert first == "HTTP/1.1 100 Continue"
    assert final.startswith(b"HTTP/1.1 204")
    assert await manta.get(f"{manta.stor}/x") == b"hello\n"


async def test_precondition_checked_before_continue(manta) -> None:
    await manta.put(f"{manta.stor}/x", b"a")
    first, _ = await _raw_put(manta.url, "/bob/stor/x", b"b", "If-None-Match: *\r\n")
    assert first.startswith("HTTP/1.1 412")


async def test_aiohttp_client_expect100(manta) -> None:
    async with manta.session.put(f"{manta.stor}/e", data=b"abc", expect100=True) as r:
        assert r.status == 204
    async with manta.session.put(f"{manta.stor}/nodir/e", data=b"abc", expect100=True) as r:
        assert r.status == 404
        assert (await r.json(content_type=None))["code"] == "DirectoryDoesNotExist"


async def test_common_headers_on_success_and_error(manta) -> None:
    for url in (manta.stor, f"{manta.stor}/missing"):
        async with manta.session.get(url, headers={"x-request-id": "req-123"}) as r:
            assert r.headers["Server"] == "Manta/2"
            # muskie answers with an id of its own; the client's is only logged
            assert r.headers["x-request-id"] != "req-123"
            assert len(r.headers["x-request-id"]) == 36
            assert int(r.headers["x-response-time"]) >= 0
            assert r.headers["x-server-name"]
            assert r.headers["Date"].endswith("GMT")
    async with manta.session.get(manta.stor) as r:
        assert len(r.headers["x-request-id"]) == 36  # generated when the client sent none


async def test_error_envelope(manta) -> None:
    async with manta.session.get(f"{manta.stor}/missing") as r:
        body = await r.read()
        assert r.status == 404
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Content-MD5"] == base64.b64encode(hashlib.md5(body).digest()).decode()
        assert json.loads(body) == {"code": "ResourceNotFound",
                                    "message": "/bob/stor/missing was not found"}


async def test_head_error_has_no_body(manta) -> None:
    async with manta.session.head(f"{manta.stor}/missing") as r:
        assert r.status == 404
        assert await r.read() == b""


async def test_unknown_method_is_405(manta) -> None:
    msg = await manta.error("POST", f"{manta.stor}/x", 405, "MethodNotAllowed")
    assert "POST" in msg
    async with manta.session.patch(f"{manta.stor}/x") as r:
        assert r.status == 405
        assert "GET" in r.headers["Allow"]


@pytest.mark.parametrize("path", ["/", "/bob/jobs", "/bob/nothing/x", "/_bad/stor"])
async def test_unknown_route_is_404(manta, path: str) -> None:
    await manta.error("GET", manta.url + path, 404, "ResourceNotFound")
