"""Repeated authentication failures from one address are slowed down; nobody else is.

The real app on loopback; a second client address is ``127.0.0.2`` (all of 127/8 is local),
so an attacker and a legitimate client can be told apart by the gateway as in production.
Loopback is exempt by default (``auth_exempt``), so these apps set ``auth_exempt = []``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.httpsig import RequestSigner
from gateway.server.app import create_app
from gateway.server.auth_throttle import AUTH_THROTTLE, AuthThrottle
from gateway.server.limits import Limits
from gateway.server.plugin_manager import ConfigurationError
from gateway.settings import Settings
from tests.gateway.conftest import ClientFactory
from tests.support.helpers import add_caller, new_key

PATH = "/alice/images"
ATTACKER = "127.0.0.1"
NEIGHBOUR = "127.0.0.2"


def throttled_limits(**changes: Any) -> dict[str, Any]:
    return {
        "auth_exempt": [],
        "auth_free_failures": 3,
        "auth_failure_window": 60,
        "auth_delay": 0.2,
        "auth_max_delay": 5,
        **changes,
    }


@pytest.fixture
async def session_from() -> AsyncIterator[Any]:
    """``session_from(address)``: an HTTP session whose connections come from ``address``."""
    sessions: list[aiohttp.ClientSession] = []

    def make(address: str) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
        session = aiohttp.ClientSession(connector=connector)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


async def get(
    session: aiohttp.ClientSession, client: TestClient, signer: RequestSigner
) -> tuple[int, dict[str, Any]]:
    url = f"http://{client.host}:{client.port}{PATH}"
    async with session.get(url, headers=signer.sign("GET", PATH, {})) as response:
        return response.status, await response.json()


def wrong_signer() -> RequestSigner:
    """alice's login with a key she never registered: a 401 InvalidCredentials."""
    return RequestSigner.for_login(new_key(), "alice")


async def test_failures_beyond_the_free_ones_are_spaced_out_and_still_answered_401(
    app_client: ClientFactory, session_from: Any
) -> None:
    client = await app_client(limits=throttled_limits())
    await add_caller(client.server.app, "alice")
    attacker = session_from(ATTACKER)
    guess = wrong_signer()
    for _ in range(3):  # the free failures
        status, body = await get(attacker, client, guess)
        assert (status, body["code"]) == (401, "InvalidCredentials")
    started = time.monotonic()
    for _ in range(3):  # failures 4, 5, 6: waits of 0.2, 0.4 and 0.8 s before each check
        status, body = await get(attacker, client, guess)
        assert (status, body["code"]) == (401, "InvalidCredentials")
    elapsed = time.monotonic() - started
    print(f"3 penalised guesses took {elapsed:.2f} s (at least 1.4 s required)")
    assert elapsed >= 1.4  # a lower bound only: a loaded machine is never faster


async def test_a_neighbour_address_is_never_slowed_by_an_attacker(
    app_client: ClientFactory, session_from: Any
) -> None:
    client = await app_client(limits=throttled_limits(auth_delay=4, auth_max_delay=8))
    app = client.server.app
    _, alice = await add_caller(app, "alice")
    attacker = session_from(ATTACKER)
    guess = wrong_signer()
    for _ in range(3):  # the 3 free failures make the next turn 4 s away
        await get(attacker, client, guess)
    waiting = asyncio.create_task(get(attacker, client, guess))
    await asyncio.sleep(0.2)  # let it reach its wait
    status, body = await get(session_from(NEIGHBOUR), client, alice)
    assert status == 200 and isinstance(body, list)
    assert not waiting.done()  # the attacker's guess still waits while alice got her answer
    throttle = app[AUTH_THROTTLE]
    assert await throttle.wait_turn(NEIGHBOUR) == 0.0
    status, _ = await waiting
    assert status == 401


async def test_a_success_clears_the_address_record(
    app_client: ClientFactory, session_from: Any
) -> None:
    client = await app_client(limits=throttled_limits())
    app = client.server.app
    _, alice = await add_caller(app, "alice")
    session = session_from(ATTACKER)
    for _ in range(4):
        await get(session, client, wrong_signer())
    assert len(app[AUTH_THROTTLE]) == 1
    status, _ = await get(session, client, alice)  # waits its turn once, then succeeds
    assert status == 200
    assert len(app[AUTH_THROTTLE]) == 0
    assert await app[AUTH_THROTTLE].wait_turn(ATTACKER) == 0.0


async def test_a_flood_of_parallel_guesses_is_refused_with_429_request_throttled(
    app_client: ClientFactory, session_from: Any
) -> None:
    client = await app_client(limits=throttled_limits(auth_delay=1, auth_max_delay=2))
    await add_caller(client.server.app, "alice")
    attacker = session_from(ATTACKER)
    guess = wrong_signer()
    for _ in range(4):
        await get(attacker, client, guess)
    answers = await asyncio.gather(*(get(attacker, client, guess) for _ in range(8)))
    refused = [body for status, body in answers if status == 429]
    assert refused, answers
    assert all(body["code"] == "RequestThrottled" for body in refused)
    assert all(status in (401, 429) for status, _ in answers)


async def test_loopback_is_exempt_by_default(app_client: ClientFactory, session_from: Any) -> None:
    client = await app_client()
    _, alice = await add_caller(client.server.app, "alice")
    session = session_from(ATTACKER)
    for _ in range(20):
        status, _ = await get(session, client, wrong_signer())
        assert status == 401
    assert len(client.server.app[AUTH_THROTTLE]) == 0
    status, _ = await get(session, client, alice)
    assert status == 200


def test_memory_is_bounded_least_recently_seen_first() -> None:
    throttle = AuthThrottle(Limits(auth_exempt=(), auth_tracked_addresses=100))
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    throttle.failed("10.0.3.231")  # the newest stays
    assert len(throttle) == 100


def test_a_bad_limits_section_stops_the_start(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, limits={"auth_delay": -1})
    with pytest.raises(ConfigurationError, match="auth_delay"):
        create_app(settings)
    settings = Settings(data_dir=tmp_path, limits={"auth_exempt": ["10.0.0.0/33"]})
    with pytest.raises(ConfigurationError, match="auth_exempt"):
        create_app(settings)


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted_not_the_proxy(
    app_client: ClientFactory, session_from: Any
) -> None:
    """With ``trusted_proxies``, a proxy on loopback (exempt) does not exempt its clients."""
    client = await app_client(
        trusted_proxies=("127.0.0.0/8",),
        limits={"auth_free_failures": 2, "auth_delay": 0.2, "auth_max_delay": 1},
    )
    throttle = client.server.app[AUTH_THROTTLE]
    proxy = session_from(ATTACKER)
    url = f"http://{client.host}:{client.port}{PATH}"
    guess = wrong_signer()
    for _ in range(2):
        headers = {**guess.sign("GET", PATH, {}), "X-Forwarded-For": "203.0.113.9"}
        async with proxy.get(url, headers=headers) as response:
            assert response.status == 401
    assert len(throttle) == 1
    assert await throttle.wait_turn("203.0.113.9") > 0  # the client waits, not the proxy
    assert await throttle.wait_turn(ATTACKER) == 0.0
