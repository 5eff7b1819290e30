"""``python -m gateway serve`` in a child process on loopback: what the crash, flood and
multi-instance suites run (each adds its own settings and requests on top).

Settings reach the child as operators give them, through ``CLOUDAPI_GATEWAY_*`` variables;
its output goes to a log file that a failed start quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

#: Seconds a child has to answer ``/--ping`` after it was started.
START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(
    storage: Mapping[str, Any] | None = None, base: Mapping[str, str] | None = None, **settings: Any
) -> dict[str, str]:
    """``base`` (default: this process's environment) plus ``[storage]`` keys and top-level
    settings as ``CLOUDAPI_GATEWAY_*`` variables (booleans as ``true``/``false``)."""
    env = dict(os.environ if base is None else base)

    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    for key, value in (storage or {}).items():
        env[f"CLOUDAPI_GATEWAY_STORAGE__{key.upper()}"] = text(value)
    for key, value in settings.items():
        env[f"CLOUDAPI_GATEWAY_{key.upper()}"] = text(value)
    return env


class ServeProcess:
    """One ``serve`` child on a free loopback port, with ``data_dir``, ``env`` and ``log``."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str],
        log: Path,
        *,
        name: str = "gateway",
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        # No Prometheus listener: a child binding "127.0.0.1:0" for it can be handed the very
        # port free_port() just chose for its requests (it happened), and no suite here
        # scrapes these children.
        self.env = {**env, "CLOUDAPI_GATEWAY_METRICS__LISTEN": ""}
        self.log = log
        self.preexec_fn = preexec_fn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it, and return once ``/--ping`` answers 200 (fails with the log otherwise)."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "--data-dir", str(self.data_dir),
                "--host", "127.0.0.1", "--port", str(self.port),
                env=self.env, stdout=log, stderr=log, preexec_fn=self.preexec_fn,
            )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process.returncode is None, self.log.read_text()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self.url + "/--ping") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")

    async def kill(self) -> None:
        """``kill -9``: no shutdown code runs (a journal lease is left behind)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` and wait for the exit; kill it after 30 s."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(sig)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
