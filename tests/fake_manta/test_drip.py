"""The "drip" fault: the response head or body, N bytes every T seconds, seen from a raw socket
that records each piece as it arrives."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from fake_manta import ADMIN_HEADERS, FakeMantaServer
from fake_manta.faults import FaultInjector

BODY = bytes(range(256)) * 2  # 512 bytes


async def slow_read(url: str, method: str = "GET") -> tuple[list[bytes], float]:
    """Send one request; return every piece read until the server closes, and the seconds
    from the request to the last piece."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    start = time.monotonic()
    writer.write(f"{method} {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    pieces = []
    while piece := await asyncio.wait_for(reader.read(65536), timeout=60):
        pieces.append(piece)
    elapsed = time.monotonic() - start
    writer.close()
    return pieces, elapsed


def split(pieces: list[bytes]) -> tuple[bytes, bytes, int]:
    """(head, body, how many pieces it took to complete the head)."""
    data = b""
    for i, piece in enumerate(pieces, 1):
        data += piece
        if b"\r\n\r\n" in data:
            head_pieces = i
            break
    whole = b"".join(pieces)
    head, _, body = whole.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", body, head_pieces


@pytest.fixture
async def drip_server(server: FakeMantaServer) -> FakeMantaServer:
    """The conftest server (memory and disk backends) holding ``/bob/stor/o``."""
    async with aiohttp.ClientSession() as http, http.put(
            f"{server.url}/bob/stor/o", data=BODY) as r:
        assert r.status == 204
    return server


async def test_drip_in_head(drip_server: FakeMantaServer) -> None:
    drip_server.faults.add("GET", r"/o$", drip_bytes=25, drip_interval=0.05, drip_in="head")
    pieces, elapsed = await slow_read(f"{drip_server.url}/bob/stor/o")
    head, body, head_pieces = split(pieces)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == BODY
    assert all(len(p) <= 25 for p in pieces[: head_pieces - 1])  # a trickle, not one write
    assert head_pieces >= len(head) // 25
    assert elapsed >= (len(head) // 25 - 1) * 0.05 * 0.5  # it waited between the pieces


async def test_drip_in_body(drip_server: FakeMantaServer) -> None:
    drip_server.faults.add("GET", r"/o$", drip_bytes=32, drip_interval=0.05)
    pieces, elapsed = await slow_read(f"{drip_server.url}/bob/stor/o")
    _head, body, head_pieces = split(pieces)
    assert head_pieces == 1  # the head went out at once
    assert body == BODY
    body_pieces = pieces[1:]
    assert all(len(p) <= 32 for p in body_pieces)
    assert len(body_pieces) >= len(BODY) // 32 - 1
    assert elapsed >= (len(BODY) // 32 - 1) * 0.05 * 0.5
    # the rule was used up: the next GET is fast and whole
    pieces, _ = await slow_read(f"{drip_server.url}/bob/stor/o")
    assert split(pieces)[1] == BODY


async def test_drip_applies_to_errors_and_heads_without_body(server: FakeMantaServer) -> None:
    server.faults.add(None, r"/nope$", status=503, drip_bytes=40, drip_interval=0.01,
                      drip_in="head", times=2)
    pieces, _ = await slow_read(f"{server.url}/bob/stor/nope")
    head, body, head_pieces = split(pieces)
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b'"code":"ServiceUnavailable"' in body
    assert head_pieces >= len(head) // 40
    pieces, _ = await slow_read(f"{server.url}/bob/stor/nope", "HEAD")
    head, body, head_pieces = split(pieces)
    assert head.startswith(b"HTTP/1.1 503 ") and body == b""
    assert head_pieces >= len(head) // 40


async def test_drip_over_the_admin_api(server: FakeMantaServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/_fake/faults", headers=ADMIN_HEADERS, json={
                "method": "GET", "path": "/o$", "drip_bytes": 5, "drip_interval": 0.5,
                "drip_in": "head"}) as r:
            assert r.status == 201
            rule = await r.json()
        assert (rule["drip_bytes"], rule["drip_interval"], rule["drip_in"]) == (5, 0.5, "head")
        for bad in ({"drip_bytes": 0}, {"drip_bytes": 5, "drip_in": "neck"},
                    {"drip_interval": 1}, {"drip_bytes": "5"}, {"drip_bytes": 5, "cut_after": 1},
                    {"drip_bytes": 5, "drip_interval": -1}):
            async with http.post(f"{server.url}/_fake/faults", headers=ADMIN_HEADERS,
                                 json={"path": "/o$", **bad}) as r:
                assert r.status == 400, bad
                assert (await r.json())["code"] == "InvalidArgumentError"
    (live,) = server.faults.rules()
    assert live.drip_in == "head"


def test_drip_defaults_and_validation() -> None:
    injector = FaultInjector()
    rule = injector.add("GET", "x", drip_bytes=3)
    assert (rule.drip_interval, rule.drip_in) == (1.0, "body")
    for bad in ({"drip_bytes": 0}, {"drip_in": "head"}, {"drip_bytes": 1, "drip_in": "tail"},
                {"drip_bytes": 1, "cut_after": 2}):
        with pytest.raises(ValueError):
            injector.add("GET", "x", **bad)  # type: ignore[arg-type]
