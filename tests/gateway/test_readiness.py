"""``GET /--ready``: the databases and the storage answer, and the server is not draining.

The storage probe's answer is cached; the tests drive the cache's clock instead of sleeping.
Draining is tested on the real ``serve`` in a child process, as the graceful shutdown is.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.server.app import create_app
from gateway.server.appkeys import DATABASES, READINESS
from gateway.settings import Settings
from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import TARGET_NAMES, open_target


class Clock:
    """The readiness cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pass_cache(self, env: ExportEnv) -> None:
        self.now += env.app[READINESS].cache_seconds


async def ready(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/--ready")
    assert response.headers["Content-Type"] == "application/json"
    return response.status, await response.json()


UP = {"ready": True, "checks": {"database": "ok", "storage": "ok"}}


@pytest.fixture
async def manta_env(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[ExportEnv, Clock]]:
    async with open_target("manta-memory", tmp_path / "target") as harness:
        env = await make_env(aiohttp_client, harness, tmp_path / "gateway")
        clock = Clock()
        env.app[READINESS].clock = clock
        yield env, clock


async def test_without_storage_the_databases_decide(tmp_path: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path)))
    assert await ready(client) == (
        200,
        {"ready": True, "checks": {"database": "ok", "storage": "not configured"}},
    )
    assert (await client.head("/--ready")).status == 200
    await client.app[DATABASES].close()  # the database stops answering
    status, body = await ready(client)
    assert (status, body["checks"]["database"]) == (503, "failed")


async def test_not_ready_while_manta_is_stopped(manta_env: tuple[ExportEnv, Clock]) -> None:
    env, clock = manta_env
    server = env.harness.server
    assert await ready(env.client) == (200, UP)
    await server.stop()
    assert await ready(env.client) == (200, UP)  # the answer is cached for a few seconds
    clock.pass_cache(env)
    assert await ready(env.client) == (
        503,
        {"ready": False, "checks": {"database": "ok", "storage": "failed (StorageUnavailable)"}},
    )
    assert (await env.client.get("/--ping")).status == 200  # alive, just not ready
    await server.start()  # back, on the same port
    assert (await ready(env.client))[0] == 503  # still the cached answer
    clock.pass_cache(env)
    assert await ready(env.client) == (200, UP)


async def test_one_probe_per_cache_period(manta_env: tuple[ExportEnv, Clock]) -> None:
    env, clock = manta_env
    heads = env.harness.faults.add(method="HEAD", path=r"^/operator$", stall=0, times=None)
    answers = await asyncio.gather(*(ready(env.client) for _ in range(10)))
    assert answers == [(200, UP)] * 10
    assert heads.hits == 1
    clock.pass_cache(env)
    await ready(env.client)
    assert heads.hits == 2


@pytest.mark.parametrize("target", TARGET_NAMES)
async def test_a_refused_probe_is_not_ready(
    target: str, request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any
) -> None:
    moto = request.getfixturevalue("moto_s3") if target == "s3" else None
    async with open_target(target, tmp_path / "target", moto) as harness:
        env = await make_env(aiohttp_client, harness, tmp_path / "gateway")
        clock = Clock()
        env.app[READINESS].clock = clock
        harness.faults.add(method="HEAD", status=503, times=1)
        status, body = await ready(env.client)
        assert (status, body["checks"]["storage"]) == (503, "failed (StorageUnavailable)")
        clock.pass_cache(env)
        assert await ready(env.client) == (200, UP)


# --- draining: the real `serve`, in a child process --------------------------------------------

SERVER = r"""
import logging, sys
from pathlib import Path

from gateway.cli.main import serve
from gateway.server.app import create_app
from gateway.settings import Settings

port, data_dir, drain = int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
settings = Settings(host="127.0.0.1", port=port, data_dir=data_dir, load_entrypoints=False,
                    drain_seconds=drain, metrics={"listen": "127.0.0.1:0"})
logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # serve() logs "Running on ..."
serve(create_app(settings), settings)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(tmp_path: Path, drain: float) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(port), str(tmp_path / "data"), str(drain),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    while True:  # the "Running on" line says the socket is listening
        line = await proc.stderr.readline()
        assert line, "server exited before listening"
        if b"Running on" in line:
            break
    return proc, f"http://127.0.0.1:{port}"


async def test_sigterm_drains_then_stops(tmp_path: Path) -> None:
    """Ready until SIGTERM; then 503 while everything else is still served; a second SIGTERM
    ends the drain early and the server stops cleanly."""
    proc, url = await _start(tmp_path, drain=600)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/--ready") as response:
                assert response.status == 200
            proc.send_signal(signal.SIGTERM)
            while True:  # until the child has handled the signal
                async with session.get(f"{url}/--ready") as response:
                    if response.status == 503:
                        assert await response.json() == {"ready": False, "draining": True}
                        break
                    assert response.status == 200
                await asyncio.sleep(0.01)
            async with session.get(f"{url}/--ping") as response:
                assert response.status == 200  # still serving: alive, not ready
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_drain_ends_by_itself(tmp_path: Path) -> None:
    proc, _url = await _start(tmp_path, drain=0.2)
    try:
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "draining for 0.2s" in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
