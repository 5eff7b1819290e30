"""A request body that stops arriving: 408 RequestTimeout after ``body_idle_timeout``, then the
connection closes; a body that keeps coming, however slowly, is read.

Raw sockets against the real app on loopback: aiohttp's client cannot stall a body on purpose.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import pytest

from gateway.settings import SettingsError, load_settings
from tests.gateway.conftest import Caller

#: Generous bound on every wait (the box is loaded); the timeout under test is 0.5 s.
PATIENCE = 20.0
IDLE = 0.5


@pytest.fixture
async def slow_caller(
    app_client: Callable[..., Awaitable[object]],
    caller_factory: Callable[..., Awaitable[Caller]],
) -> Caller:
    client = await app_client(body_idle_timeout=IDLE)
    return await caller_factory(client, "alice")


async def open_request(
    caller: Caller, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A signed ``POST /alice/images/<uuid>`` whose head (with ``headers``) is sent."""
    path = f"/alice/images/{uuid.uuid4()}?action=export"
    signed = caller.signer.sign("POST", path, {"Host": "gateway", **headers})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    server = caller.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The status line and headers, and the body (by Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await asyncio.wait_for(reader.readexactly(length), PATIENCE)
    return head, body


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), PATIENCE) == b""
    except ConnectionError:
        return True


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_stalled_body_is_a_408_and_the_connection_closes(
    slow_caller: Caller, framing: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        first = b'5\r\n{"act\r\n'
    else:
        headers["Content-Length"] = "100"
        first = b'{"act'
    reader, writer = await open_request(slow_caller, headers)
    writer.write(first)  # ... and nothing more
    head, body = await answer(reader)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "code": "RequestTimeout",
        "message": f"Request body stalled: no data for {IDLE:g} seconds",
    }
    assert await closed(reader)
    writer.close()


async def test_a_slow_body_that_keeps_coming_is_read(slow_caller: Caller) -> None:
    body = json.dumps({"action": "export", "manta_path": "/alice/stor/x"}).encode()
    reader, writer = await open_request(
        slow_caller, {"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    for index in range(0, len(body), 8):  # longer than IDLE in all, never IDLE between bytes
        writer.write(body[index : index + 8])
        await writer.drain()
        await asyncio.sleep(IDLE / 5)
    head, answered = await answer(reader)
    # Read whole: the request went on to look the image up (it does not exist).
    assert head.startswith(b"HTTP/1.1 404 "), head
    assert json.loads(answered)["code"] == "ResourceNotFound"
    writer.close()


async def test_the_server_keeps_serving_after_a_stalled_body(slow_caller: Caller) -> None:
    reader, writer = await open_request(
        slow_caller, {"Content-Type": "application/json", "Content-Length": "10"}
    )
    head, _ = await answer(reader)
    assert head.startswith(b"HTTP/1.1 408 ")
    response = await slow_caller.client.get("/--ping")
    assert response.status == 200
    writer.close()


@pytest.mark.parametrize("name", ["body_idle_timeout", "request_head_timeout", "keepalive_timeout"])
def test_the_timeouts_are_settings_and_must_be_positive(name: str) -> None:
    assert getattr(load_settings(env={f"CLOUDAPI_GATEWAY_{name.upper()}": "2.5"}), name) == 2.5
    with pytest.raises(SettingsError, match=f"{name} must be a number > 0, got 0"):
        load_settings(env={f"CLOUDAPI_GATEWAY_{name.upper()}": "0"})
