"""Embedding: an async context manager and a background-thread runner (moto's ThreadedMotoServer).

Both bind (port 0 picks a free port) and return only once the server is listening.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from fake_manta.accounts import AccountRegistry
from fake_manta.admin import add_account, add_user, reset_state
from fake_manta.app import create_app
from fake_manta.audit import AuditAccessLogger
from fake_manta.config import DEFAULT_MAX_CONTENT_LENGTH, STORE, FakeMantaConfig
from fake_manta.faults import FaultInjector
from fake_manta.logs import AUDIT_LOGGER, RequestLog
from fake_manta.models import Store
from fake_manta.models.store import MIN_PART_SIZE

#: Per-request body buffer: large, so that big PUTs arrive in few large chunks (throughput).
READ_BUFSIZE = 1 << 20


class FakeMantaServer:
    """``async with FakeMantaServer(port=0) as server: server.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | str | None = None,
        no_auth: bool = False,
        snaplinks: Literal["v1", "v2"] = "v1",
        max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
        *,
        min_part_size: int = MIN_PART_SIZE,
        registry: AccountRegistry | None = None,
        fsync: bool = False,
        keep_requests: int = 1000,
        log_requests: bool = False,
        admin_from: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        #: HTTPS with this context (``--tls-cert``/``--tls-key``); plain HTTP without.
        self.ssl_context = ssl_context
        self.config = FakeMantaConfig(
            data_dir=Path(data_dir) if data_dir is not None else None,
            no_auth=no_auth,
            snaplinks=snaplinks,
            max_content_length=max_content_length,
            min_part_size=min_part_size,
            registry=registry or AccountRegistry(),
            fsync=fsync,
            requests=RequestLog(keep_requests),
            log_requests=log_requests,
            admin_from=tuple(admin_from),
        )
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    @property
    def registry(self) -> AccountRegistry:
        return self.config.registry

    @property
    def faults(self) -> FaultInjector:
        return self.config.faults

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The audit records of the latest Manta requests (at most ``keep_requests``), oldest
        first: the fields of the ``fake-manta -v`` log lines (``req_id``, ``req``, ``res``,
        ``route``...) plus ``time``. A snapshot; thread-safe. ``reset()`` empties it."""
        return self.config.requests.records()

    @property
    def store(self) -> Store:
        if self.app is None:
            raise RuntimeError("server not started")
        return self.app[STORE]

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("server not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    def add_account(
        self, login: str, public_keys: Iterable[str] = (), operator: bool = False
    ) -> list[str]:
        """Register a login (its stor/public/reports/uploads trees exist) and keys; returns fps."""
        return add_account(self.config, login, list(public_keys), operator)

    def add_user(self, login: str, user: str, public_keys: Iterable[str] = ()) -> list[str]:
        """Register sub-user ``login/user`` (keyId ``/login/user/keys/FP``); returns fps.

        The account must exist. A sub-user acts as its account: same trees, same operator bit.
        """
        return add_user(self.config, login, user, list(public_keys))

    async def start(self) -> None:
        self.app = create_app(self.config)
        runner = web.AppRunner(self.app, handle_signals=False, read_bufsize=READ_BUFSIZE,
                               access_log_class=AuditAccessLogger,
                               access_log=logging.getLogger(AUDIT_LOGGER))
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def reset(self) -> None:
        """Empty all objects and directories (accounts stay); clear fault rules and the
        recorded requests."""
        await reset_state(self.config, self.store)

    async def __aenter__(self) -> FakeMantaServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ThreadedFakeManta:
    """The same server on its own event loop in a daemon thread: for sync code and fixtures."""

    def __init__(self, **kwargs: Any) -> None:
        self.server = FakeMantaServer(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def registry(self) -> AccountRegistry:
        return self.server.registry

    @property
    def faults(self) -> FaultInjector:
        return self.server.faults

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.server.requests

    def add_account(
        self, login: str, public_keys: Iterable[str] = (), operator: bool = False
    ) -> list[str]:
        return self.server.add_account(login, public_keys, operator)

    def add_user(self, login: str, user: str, public_keys: Iterable[str] = ()) -> list[str]:
        return self.server.add_user(login, user, public_keys)

    def start(self) -> None:
        """Start the thread; returns once listening (re-raises a bind error)."""
        started: Future[None] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.server.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-manta", daemon=True)
        self._thread.start()
        started.result()

    def _call(self, coro: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("server not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def reset(self) -> None:
        self._call(self.server.reset())

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop = None
            self._thread = None

    def __enter__(self) -> ThreadedFakeManta:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
