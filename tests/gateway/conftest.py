"""Fixtures for the gateway suites: settings on tmp_path, the real app, a signed-in caller.

Every app is built by ``gateway.server.app.create_app`` and served on loopback by
``aiohttp_client``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.actions import Account
from gateway.httpsig import RequestSigner
from gateway.server.app import create_app
from gateway.settings import Settings
from tests.support.helpers import add_caller

AppFactory = Callable[..., web.Application]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose stores live under this test's tmp_path."""
    return Settings(data_dir=tmp_path / "data", datacenter_name="test-dc-1")


@pytest.fixture
def make_app(settings: Settings) -> AppFactory:
    """``make_app(settings=None, plugins=(), **changes)``: the real app on tmp_path settings."""

    def factory(
        custom: Settings | None = None, *, plugins: tuple[object, ...] = (), **changes: Any
    ) -> web.Application:
        return create_app(replace(custom or settings, **changes), plugins=plugins)

    return factory


@pytest.fixture
async def client(aiohttp_client: Any, make_app: AppFactory) -> TestClient:
    """A client of the default app (default plugins, embedded catalog, no storage)."""
    return await aiohttp_client(make_app())


@dataclass
class Caller:
    """A signed-in account on a running test server: ``await caller.request("GET", path)``."""

    client: TestClient
    account: Account
    signer: RequestSigner

    @property
    def app(self) -> web.Application:
        return self.client.server.app  # type: ignore[return-value]

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        **kwargs: Any,
    ) -> ClientResponse:
        """Send ``path`` exactly as given (already encoded), signed unless ``sign=False``."""
        out = dict(headers or {})
        if sign:
            out = self.signer.sign(method, path, out)
        return await self.client.request(method, URL(path, encoded=True), headers=out, **kwargs)


@pytest.fixture
def caller_factory() -> Callable[..., Awaitable[Caller]]:
    """``caller_factory(client, login)`` adds an account with a fresh ECDSA key."""

    async def factory(client: TestClient, login: str = "alice", **signer_kwargs: Any) -> Caller:
        account, signer = await add_caller(client.server.app, login, **signer_kwargs)  # type: ignore[arg-type]
        return Caller(client, account, signer)

    return factory


@pytest.fixture
async def caller(
    client: TestClient, caller_factory: Callable[..., Awaitable[Caller]]
) -> Caller:
    """Account ``alice`` on the default app, with a key and a signer."""
    return await caller_factory(client, "alice")


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def app_client(aiohttp_client: Any, make_app: AppFactory) -> ClientFactory:
    """``await app_client(plugins=(...), **settings_changes)``: a client of a custom app."""

    async def factory(*, plugins: tuple[object, ...] = (), **changes: Any) -> TestClient:
        return await aiohttp_client(make_app(plugins=plugins, **changes))  # type: ignore[no-any-return]

    return factory
