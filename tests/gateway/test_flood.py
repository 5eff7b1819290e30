"""Floods of incomplete connections, idle connections, descriptor limits, a port in use.

The first tests serve the real app in this process through the same guarded site ``serve``
uses, with short deadlines; ``test_flood_of_half_open_connections`` runs ``cloudapi-gateway
serve`` as a child process limited to 256 descriptors (soft and hard) and floods it with four
times as many half-open connections for 30 s while pinging and exporting (``pytest -s``
prints the numbers; ``bench/flood.py`` reports the same).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.server.app import create_app
from gateway.server.connections import ConnectionGuard, GuardedSite, watching
from gateway.server.descriptors import ACCEPT_MESSAGES, AcceptErrorLog
from gateway.settings import Settings
from tests.support.flood import (
    GatewayProcess,
    flood_setup,
    raise_own_fd_limit,
    run_flood,
)
from tests.support.serve_process import free_port

#: Generous bounds: the box is loaded; a deadline that is not enforced never ends these waits.
PATIENCE = 20.0


class Served:
    """The real app behind a guarded site on loopback, and its guard."""

    def __init__(self, guard: ConnectionGuard, port: int) -> None:
        self.guard = guard
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    async def connect(self, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        if data:
            writer.write(data)
            await writer.drain()
        return reader, writer


ServeFactory = Callable[..., Any]


@pytest.fixture
async def serve_guarded(settings: Settings) -> AsyncIterator[ServeFactory]:
    """``await serve_guarded(keepalive_timeout=..., **guard_kwargs)``: a guarded server."""
    runners: list[web.AppRunner] = []
    watchers: list[Any] = []

    async def start(*, keepalive_timeout: float = 75.0, **guard_kwargs: Any) -> Served:
        loop = asyncio.get_running_loop()
        app = create_app(replace(settings, metrics={"listen": ""}))
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        guard_kwargs.setdefault("head_timeout", 5.0)
        guard_kwargs.setdefault("fd_limit", 100_000)
        guard = ConnectionGuard(clock=loop.time, **guard_kwargs)
        watcher = watching(guard)
        await watcher.__aenter__()
        watchers.append(watcher)
        port = free_port()
        site = GuardedSite(
            runner, "127.0.0.1", port, guard=guard,
            handler_kwargs={"keepalive_timeout": keepalive_timeout},
        )  # fmt: skip
        await site.start()
        return Served(guard, port)

    yield start
    for watcher in watchers:
        await watcher.__aexit__(None, None, None)
    for runner in runners:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def ping(url: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/--ping") as response:
            return response.status


async def test_an_incomplete_head_is_closed_after_the_head_timeout(
    serve_guarded: ServeFactory,
) -> None:
    served = await serve_guarded(head_timeout=0.5, keepalive_timeout=3600)
    half, _half_writer = await served.connect(b"GET /--ping HT")
    silent, _silent_writer = await served.connect()  # (a writer collected closes its socket)
    assert await closed_within(half, PATIENCE)
    assert await closed_within(silent, PATIENCE)
    assert served.guard.timed_out == 2
    assert await ping(served.url) == 200  # the server itself is unaffected


async def test_a_head_sent_slowly_but_in_time_is_served(serve_guarded: ServeFactory) -> None:
    served = await serve_guarded(head_timeout=30.0)
    reader, writer = await served.connect(b"GET /--ping HTTP/1.1\r\n")
    await asyncio.sleep(0.3)
    writer.write(b"Host: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), PATIENCE)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert served.guard.timed_out == 0


async def test_an_idle_connection_is_closed_after_keepalive_but_a_busy_one_is_not(
    serve_guarded: ServeFactory,
) -> None:
    served = await serve_guarded(head_timeout=0.5, keepalive_timeout=0.5)
    reader, _writer = await served.connect(b"GET /--ping HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    assert head.startswith(b"HTTP/1.1 200")
    # The answer came: the connection is idle (not waiting for a head), so the keep-alive
    # timer, not the head timer, closes it.
    assert await closed_within(reader, PATIENCE)
    assert served.guard.timed_out == 0

    # A request whose body is still coming is busy: neither timer closes it.
    _, busy = await served.connect(
        b"POST /bob/images/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    )
    await asyncio.sleep(1.5)
    assert not busy.is_closing()
    assert served.guard.timed_out == 0


async def test_bytes_after_an_idle_spell_start_a_head_deadline(serve_guarded: ServeFactory) -> None:
    served = await serve_guarded(head_timeout=0.5, keepalive_timeout=3600)
    reader, writer = await served.connect(b"GET /--ping HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    writer.write(b"GET /--pi")  # the next request never completes
    assert await closed_within(reader, PATIENCE)
    assert served.guard.timed_out == 1


async def test_under_pressure_the_oldest_incomplete_connections_are_shed_first(
    serve_guarded: ServeFactory,
) -> None:
    # Room for 10 connections: the guard is told the process has no other descriptors.
    served = await serve_guarded(fd_limit=20, reserve=10, count_fds=lambda: None)
    assert served.guard.high_water == 10
    idle_reader, _idle_writer = await served.connect(b"GET /--ping HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), PATIENCE)
    halves = []
    for _ in range(9):
        halves.append(await served.connect(b"GET /--ping HT"))
        await asyncio.sleep(0.02)  # in this order
    assert served.guard.shed == 0

    for _ in range(5):  # a complete request needs a connection too: one is shed for it
        assert await ping(served.url) == 200
    # The oldest incomplete ones went first; the idle keep-alive connection stayed.
    closed = [await closed_within(reader, 0.5) for reader, _ in halves]
    assert closed[0] and closed[1], closed
    assert not closed[-1], closed
    assert closed == sorted(closed, reverse=True), closed  # oldest first
    assert not await closed_within(idle_reader, 0.2)
    assert served.guard.shed >= 2


async def test_accept_errors_are_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    relieved: list[int] = []
    others: list[dict[str, Any]] = []
    handler = AcceptErrorLog(lambda: relieved.append(1), loop.time)
    loop.set_exception_handler(lambda _loop, context: others.append(context))
    handler.install(loop)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.server.descriptors"):
            for _ in range(5000):
                loop.call_exception_handler(
                    {"message": ACCEPT_MESSAGES[0], "exception": OSError(24, "Too many open files")}
                )
            loop.call_exception_handler({"message": "something else"})
    finally:
        handler.uninstall(loop)
    records = [r for r in caplog.records if r.name == "gateway.server.descriptors"]
    # The first error is reported at once, the rest when the interval ends (uninstall here).
    assert len(records) == 2, [r.getMessage() for r in records]
    assert "4999" in records[1].getMessage()
    assert "Too many open files" in records[1].getMessage()
    assert all(r.exc_info is None for r in records)  # no traceback
    assert len(relieved) == 5000
    assert [c["message"] for c in others] == ["something else"]


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))\n"
        "from gateway.server.descriptors import raise_fd_limit\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["512", "512"]


def test_serve_on_a_port_in_use_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path / "data"),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warn"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("cloudapi-gateway:")]
    assert errors == [
        f"cloudapi-gateway: error: cannot listen on http://127.0.0.1:{port}: "
        "the address is already in use (is another server running?)"
    ], out.stderr


#: The issue's test: the gateway's descriptors, and four times as many flood connections.
FD_LIMIT = 256
FLOOD_CONNECTIONS = 4 * FD_LIMIT
FLOOD_SECONDS = 30.0


@pytest.mark.slow
async def test_flood_of_half_open_connections(tmp_path: Path) -> None:
    assert raise_own_fd_limit() > FLOOD_CONNECTIONS + 256, "this process needs descriptors too"
    async with flood_setup(tmp_path) as setup:
        log = tmp_path / "gateway.log"
        gateway = GatewayProcess(setup, log, fd_limit=FD_LIMIT)
        await gateway.start()
        try:
            limits = gateway.descriptor_limits().split()
            assert limits[3:5] == [str(FD_LIMIT), str(FD_LIMIT)], limits
            report = await run_flood(
                gateway, setup, connections=FLOOD_CONNECTIONS, seconds=FLOOD_SECONDS
            )
        finally:
            await gateway.stop()
        exported = await setup.harness.target.stat(setup.harness.path("during.imgmanifest"))
    print("\n" + "\n".join(report.lines()))

    # The flood was real: the gateway closed far more connections than it could hold, and
    # the attacker renewed each of its connections many times over.
    assert report.closed_by_server > 4 * FLOOD_CONNECTIONS, report.lines()
    assert report.during.answered_ratio >= 0.99, (report.lines(), report.during.failures[:5])
    assert report.export_during[0] == 200, report.lines()
    assert report.after.answered_ratio == 1.0, (report.lines(), report.after.failures[:5])
    assert report.export_after[0] == 200, report.lines()
    assert exported is not None

    # The log says what happened in a few lines: no traceback, no error per connection.
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(text) < 1_000_000, f"{len(text)} bytes of log"
    assert not [r for r in records if r["level"] >= 50], "error records in the log"
    assert "Traceback" not in text
    assert any("under descriptor pressure" in r["msg"] for r in records)
