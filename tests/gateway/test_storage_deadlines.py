"""Storage that drips: each answer's head has a deadline, each body a rate floor.

A store that sends one byte per interval keeps aiohttp's per-read timeout happy forever; the
gateway must give up after ``response_timeout`` (head) or when a body moves fewer than
``min_rate_bytes * min_rate_window`` bytes in ``min_rate_window`` seconds, retry, and then
fail with ``StorageUnavailable`` (an export: 503 StorageIsDown, nothing left behind).

Manta runs on the fake Manta with its ``drip`` fault; S3 on ``DripServer``, a loopback HTTP
server that answers everything slowly. Bounds are generous (a loaded 2-core machine): each
asserts only that the transfer ended long before the drip would have ended it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.plugin_kit.network import StorageTooSlow
from gateway.settings import Settings
from gateway.storage import StorageUnavailable
from plugins.storage.manta import MantaConfig
from plugins.storage.s3 import S3TargetFactory
from tests.support.export_env import make_env as make_export_env
from tests.support.storage_targets import RETRIES, manta_target

#: What the tests' targets are held to: short, so that a drip is caught in about a second.
FAST_DEADLINES = {"response_timeout": 1.0, "min_rate_bytes": 20_000, "min_rate_window": 1.0}
#: A drip that would take this many seconds per answer without the deadlines.
DRIP_INTERVAL = 0.25


def blob(size: int, seed: int = 3) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


# --- Manta -------------------------------------------------------------------------------------


async def test_a_manta_dripping_its_answer_head_is_unavailable_within_the_deadline(
    tmp_path: Path,
) -> None:
    async with manta_target(tmp_path, **FAST_DEADLINES) as harness:
        path = harness.path("obj")
        rule = harness.faults.add(
            "HEAD", r"/obj$", drip_bytes=1, drip_interval=DRIP_INTERVAL, drip_in="head", times=None
        )
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="no answer within 1 s"):
            await harness.target.stat(path)
        elapsed = time.monotonic() - started
    print(f"Manta HEAD dripping its head: gave up after {elapsed:.1f} s, {rule.hits} attempts")
    assert rule.hits == RETRIES + 1  # each attempt timed out and was retried
    # Undeadlined, each attempt would take ~200 header bytes * 0.25 s = 50 s.
    assert elapsed < 30


async def test_a_manta_dripping_a_download_body_breaks_the_rate_floor(tmp_path: Path) -> None:
    data = blob(200_000)
    async with manta_target(tmp_path, **FAST_DEADLINES) as harness:
        path = harness.path("obj")
        await harness.target.mkdir(harness.path())
        await harness.target.put_object(
            path, _body(data), size=len(data), content_md5=None, content_type="x/y"
        )
        harness.faults.add("GET", r"/obj$", drip_bytes=100, drip_interval=DRIP_INTERVAL)
        started = time.monotonic()
        stream = await harness.target.get_object(path)
        with pytest.raises(StorageTooSlow, match="the body moved fewer than 20000 bytes in 1 s"):
            await read_all(stream)
        elapsed = time.monotonic() - started
        assert await read_all(await harness.target.get_object(path)) == data  # healthy again
    print(f"Manta GET dripping its body: abandoned after {elapsed:.1f} s")
    assert elapsed < 20  # undeadlined: 200_000 / 100 * 0.25 s = 500 s


async def test_a_manta_that_stops_reading_an_upload_breaks_the_rate_floor(tmp_path: Path) -> None:
    data = blob(24 * 1024 * 1024, seed=5)  # more than the socket buffers hold
    # One streamed PUT (the harness makes 24 MiB a multipart upload otherwise).
    single_put = {"multipart_threshold": 64 * 1024 * 1024}
    async with manta_target(tmp_path, **FAST_DEADLINES, **single_put) as harness:
        await harness.target.mkdir(harness.path())
        rule = harness.faults.add("PUT", r"/big$", stall=8, times=None)
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="the body moved fewer than"):
            await harness.target.put_object(
                harness.path("big"),
                _body(data, chunk=256 * 1024),
                size=len(data),
                content_md5=None,
                content_type="x/y",
            )
        elapsed = time.monotonic() - started
        harness.faults.remove(rule)
        assert await harness.target.stat(harness.path("big")) is None
    print(f"Manta PUT to a store that stopped reading: abandoned after {elapsed:.1f} s")
    assert elapsed < 30


async def test_an_export_to_a_dripping_manta_fails_503_and_leaves_nothing(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    async with manta_target(tmp_path / "target", **FAST_DEADLINES) as harness:
        env = await make_export_env(aiohttp_client, harness, tmp_path / "gateway")
        image = await env.image(blob(64 * 1024, seed=7))
        harness.faults.add(
            "PUT", r"\.zfs$", drip_bytes=1, drip_interval=DRIP_INTERVAL, drip_in="head", times=None
        )
        started = time.monotonic()
        answer = await env.export(image.uuid, env.path("img"))
        elapsed = time.monotonic() - started
        assert answer.status == 503, answer.body
        assert answer.body["code"] == "StorageIsDown"
        harness.faults.reset()
        for name in ("img.zfs", "img.imgmanifest"):
            assert not await env.exists(env.path(name)), f"{name} was left behind"
    print(f"export to a Manta dripping its PUT answers: 503 after {elapsed:.1f} s")
    assert elapsed < 60


def test_deadline_settings_are_validated_and_documented_defaults_hold() -> None:
    base = {"url": "http://127.0.0.1:1", "user": "u", "key_file": "k"}
    config = MantaConfig.from_mapping(base)
    assert (config.response_timeout, config.min_rate_bytes, config.min_rate_window) == (
        60.0,
        4096,
        60.0,
    )
    with pytest.raises(ValueError, match="response_timeout"):
        MantaConfig.from_mapping({**base, "response_timeout": 0})
    with pytest.raises(ValueError, match="min_rate_bytes"):
        MantaConfig.from_mapping({**base, "min_rate_bytes": -1})
    off = MantaConfig.from_mapping({**base, "min_rate_bytes": "0"})
    assert off.min_rate_bytes == 0  # 0 turns the floor off (environment strings convert)


def _body(data: bytes, chunk: int = 65536) -> Any:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return chunks


# --- S3 ----------------------------------------------------------------------------------------


class DripServer:
    """A loopback HTTP/1.1 server that answers every request 200 with ``body``, sending its
    head (``region="head"``) or its body one ``size``-byte slice every ``interval`` seconds."""

    def __init__(self, region: str, *, size: int = 1, body: bytes = b"") -> None:
        self.region = region
        self.size = size
        self.body = body
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> DripServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:  # ends the drips still going
            writer.transport.abort()
        await self._server.wait_closed()

    async def _drip(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        for start in range(0, len(data), self.size):
            writer.write(data[start : start + self.size])
            await writer.drain()
            await asyncio.sleep(DRIP_INTERVAL)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ", 1)[0]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                answer = (
                    "HTTP/1.1 200 OK\r\n"
                    f"Content-Length: {len(self.body)}\r\n"
                    "Content-Type: application/octet-stream\r\n"
                    'ETag: "0123456789abcdef0123456789abcdef"\r\n'
                    "\r\n"
                ).encode()
                body = b"" if method == "HEAD" else self.body
                if self.region == "head":
                    await self._drip(writer, answer)
                    writer.write(body)
                else:
                    writer.write(answer)
                    await self._drip(writer, body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def _s3_target(url: str) -> Any:
    storage = {
        "kind": "s3",
        "endpoint_url": url,
        "region": "us-east-1",
        "bucket": "drip",
        "access_key": "testing",
        "secret_key": "testing",
        "addressing_style": "path",
        "retries": RETRIES,
        "retry_delay": 0.01,
        "retry_max_delay": 0.05,
        **FAST_DEADLINES,
    }
    return S3TargetFactory().create(storage, Settings())


async def test_an_s3_dripping_its_answer_head_is_unavailable_within_the_deadline() -> None:
    async with DripServer("head") as server:
        target = _s3_target(server.url)
        await target.open()
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="no answer within 1 s"):
                await target.stat("/bob/stor/obj")
            elapsed = time.monotonic() - started
        finally:
            await target.close()
    print(f"S3 HEAD dripping its head: gave up after {elapsed:.1f} s, {server.requests} attempts")
    assert server.requests == RETRIES + 1
    assert elapsed < 30


async def test_an_s3_dripping_a_download_body_breaks_the_rate_floor() -> None:
    async with DripServer("body", size=100, body=blob(200_000)) as server:
        target = _s3_target(server.url)
        await target.open()
        try:
            started = time.monotonic()
            stream = await target.get_object("/bob/stor/obj")
            with pytest.raises(StorageTooSlow, match="fewer than 20000 bytes in 1 s"):
                await read_all(stream)
            elapsed = time.monotonic() - started
        finally:
            await target.close()
    print(f"S3 GET dripping its body: abandoned after {elapsed:.1f} s")
    assert elapsed < 20
