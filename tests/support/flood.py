"""A flood of incomplete connections against a ``cloudapi-gateway serve`` process, measured.

Shared by ``tests/gateway/test_flood.py`` and ``bench/flood.py``. The gateway runs as a child
process with a small descriptor limit (soft and hard); the fake Manta (on-disk backend) runs
in this process, on loopback. ``Flood`` keeps N connections that each send half a request
line and then nothing, opening a new one whenever the gateway closes one (an attacker that
keeps up the pressure); it runs in a process of its own (``tests/support/flood_attack.py``),
so that its load does not slow down the measuring side. ``ping_while`` pings ``/--ping`` on a
fresh connection each time, as a load balancer's health check does, and records every answer
and its latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.catalog import Image
from gateway.httpsig import RequestSigner
from gateway.server.app import create_app
from gateway.server.appkeys import CATALOG
from gateway.settings import Settings
from tests.support.helpers import _chunks, add_caller, make_manifest
from tests.support.serve_process import ServeProcess, settings_env
from tests.support.storage_targets import TargetHarness, manta_target


def raise_own_fd_limit() -> int:
    """This process's soft descriptor limit raised to its hard one (the flood needs many)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


@dataclass
class FloodSetup:
    """A data directory with bob and one image, and the fake Manta that bob exports to."""

    harness: TargetHarness
    data_dir: Path
    signer: RequestSigner
    image: Image


@contextlib.asynccontextmanager
async def flood_setup(workdir: Path, image_size: int = 1 << 20) -> AsyncIterator[FloodSetup]:
    """The fake Manta on disk, and a gateway data directory prepared by an app of its own
    (started and stopped here: the gateway process then opens the same stores)."""
    async with manta_target(workdir / "target", backend="disk") as harness:
        data_dir = workdir / "gateway"
        settings = Settings(data_dir=data_dir, storage=harness.storage, metrics={"listen": ""})
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            bob, signer = await add_caller(app, harness.login)
            data = os.urandom(image_size)
            image = await app[CATALOG].import_image(make_manifest(bob.uuid, data), _chunks(data))
        finally:
            await runner.cleanup()
        yield FloodSetup(harness, data_dir, signer, image)


def _limit_descriptors(limit: int) -> None:
    """In the child, before exec: soft and hard descriptor limits both ``limit``."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


class GatewayProcess(ServeProcess):
    """``python -m gateway serve`` with at most ``fd_limit`` descriptors, logging to a file."""

    def __init__(self, setup: FloodSetup, log: Path, *, fd_limit: int, **settings: Any) -> None:
        env = settings_env(setup.harness.storage, drain_seconds=0, **settings)
        super().__init__(
            setup.data_dir, env, log, preexec_fn=lambda: _limit_descriptors(fd_limit)
        )
        self.fd_limit = fd_limit

    def descriptor_limits(self) -> str:
        """The ``Max open files`` line of the process's limits, as the kernel reports it."""
        assert self.process is not None
        limits = Path(f"/proc/{self.process.pid}/limits").read_text()
        return next(line for line in limits.splitlines() if line.startswith("Max open files"))

    async def stop(self, sig: int = signal.SIGINT) -> None:
        await super().stop(sig)


#: The repository's root: where ``python -m tests.support.flood_attack`` runs.
ROOT = Path(__file__).resolve().parents[2]


async def attack_in_child(
    port: int, connections: int, seconds: float, started: asyncio.Event
) -> dict[str, Any]:
    """``attack`` in a child process (its own loop and descriptors); its numbers. ``started``
    is set once it has opened all its connections (its flood time counts from then)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.flood_attack",
        "--port", str(port), "--connections", str(connections), "--seconds", str(seconds),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    last = b""
    async for line in process.stdout:
        if line.strip() == b"started":
            started.set()
        last = line or last
    await process.wait()
    assert process.returncode == 0, f"the attacking process failed ({process.returncode})"
    numbers: dict[str, Any] = json.loads(last)
    return numbers


@dataclass
class Pings:
    """What ``ping_while`` saw: latencies (s) of the answered pings, and the failures."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.latencies) + len(self.failures)

    @property
    def answered_ratio(self) -> float:
        return len(self.latencies) / self.sent if self.sent else 0.0

    def latency(self, fraction: float) -> float:
        """The latency (s) that ``fraction`` of the answered pings did not exceed."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]

    def summary(self) -> str:
        if not self.latencies:
            return f"{self.sent} pings, none answered"
        return (
            f"{len(self.latencies)}/{self.sent} pings answered "
            f"({100 * self.answered_ratio:.1f}%), latency median "
            f"{1000 * statistics.median(self.latencies):.1f} ms, p99 "
            f"{1000 * self.latency(0.99):.1f} ms, max {1000 * max(self.latencies):.1f} ms"
        )


async def ping_while(url: str, stop: asyncio.Event, interval: float = 0.1) -> Pings:
    """``GET /--ping`` on a fresh connection every ``interval`` until ``stop``; 10 s each."""
    pings = Pings()
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with session.get(url + "/--ping") as response:
                    await response.read()
                    if response.status == 200:
                        pings.latencies.append(time.monotonic() - started)
                    else:
                        pings.failures.append(f"status {response.status}")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                pings.failures.append(repr(exc))
            await asyncio.sleep(interval)
    return pings


async def export(url: str, setup: FloodSetup, manta_path: str) -> tuple[int, Any, float]:
    """ExportImage of the setup's image over a fresh connection: status, body, seconds."""
    path = f"/{setup.harness.login}/images/{setup.image.uuid}?action=export&manta_path={manta_path}"
    headers = setup.signer.sign("POST", path, {"Accept": "application/json"})
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.post(url + path, headers=headers) as response:
            body = await response.json(content_type=None)
            return response.status, body, time.monotonic() - started


@dataclass
class FloodReport:
    """The numbers of one flood run."""

    connections: int
    seconds: float
    opened: int
    closed_by_server: int
    held_median: float
    held_max: int
    during: Pings
    after: Pings
    export_during: tuple[int, float]
    export_after: tuple[int, float]

    def lines(self) -> list[str]:
        return [
            f"flood: {self.connections} half-open connections kept up for {self.seconds:.0f} s "
            f"(open at once, as the attacker saw them: median {self.held_median:.0f}, max "
            f"{self.held_max}); {self.opened} opened, {self.closed_by_server} closed by the "
            "gateway",
            f"during the flood: {self.during.summary()}",
            f"export during the flood: status {self.export_during[0]} "
            f"in {self.export_during[1]:.2f} s",
            f"after the flood: {self.after.summary()}",
            f"export after the flood: status {self.export_after[0]} "
            f"in {self.export_after[1]:.2f} s",
        ]


async def run_flood(
    gateway: GatewayProcess, setup: FloodSetup, *, connections: int, seconds: float
) -> FloodReport:
    """Flood ``gateway`` for ``seconds`` while pinging and exporting, then check recovery.

    Pings and the export start once the attacking process has opened all its connections;
    the pings stop before the flood does.
    """
    stop = asyncio.Event()
    attack_started = asyncio.Event()
    attacking = asyncio.create_task(
        attack_in_child(gateway.port, connections, seconds + 2, attack_started)
    )
    await attack_started.wait()
    pinging = asyncio.create_task(ping_while(gateway.url, stop))
    await asyncio.sleep(seconds / 2)
    status, _, took = await export(gateway.url, setup, setup.harness.path("during"))
    export_during = (status, took)
    await asyncio.sleep(max(0.0, seconds / 2 - took))
    stop.set()
    during = await pinging
    flood = await attacking
    after_stop = asyncio.Event()
    pinging = asyncio.create_task(ping_while(gateway.url, after_stop))
    status, _, took = await export(gateway.url, setup, setup.harness.path("after"))
    await asyncio.sleep(3)
    after_stop.set()
    after = await pinging
    return FloodReport(
        connections=connections,
        seconds=seconds,
        opened=flood["opened"],
        closed_by_server=flood["closed_by_server"],
        held_median=flood["held_median"],
        held_max=flood["held_max"],
        during=during,
        after=after,
        export_during=export_during,
        export_after=(status, took),
    )
