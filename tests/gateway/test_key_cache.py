"""The verified-key cache in the auth path (``gateway.server.key_cache``), on both engines.

A signed request whose keyId verified recently is answered without asking the account store;
any account or key change, made by anyone (here: the CLI in another process), is seen within
the engine's bound (SQLite: the next request; PostgreSQL: ``[database] refresh_interval``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.httpsig import RequestSigner, ssh_public_key_line
from gateway.server.accounts import AccountStore
from gateway.server.app import create_app
from gateway.server.database import Databases
from gateway.server.key_cache import KEY_CACHE, SETTLE_MARGIN, KeyCache, PolledCounterWatch
from gateway.settings import Settings
from tests.support.helpers import add_caller, new_key

#: PostgreSQL's bound in these tests (seconds), and slack for a loaded machine.
REFRESH = 0.5
SLACK = 5.0


@pytest.fixture
def settings(tmp_path: Path, database: dict[str, Any]) -> Settings:
    section = {**database, "refresh_interval": REFRESH} if database else {}
    return Settings(data_dir=tmp_path / "data", database=section)


async def cli(settings: Settings, *args: str) -> None:
    """``cloudapi-gateway ARGS`` in another process, on the same database."""
    env = {}
    if settings.database.get("url"):
        env["CLOUDAPI_GATEWAY_DATABASE_URL"] = str(settings.database["url"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, "--data-dir", str(settings.data_dir),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def get(client: TestClient, signer: RequestSigner, login: str = "alice") -> int:
    path = f"/{login}/images"
    response = await client.get(path, headers=signer.sign("GET", path))
    await response.read()
    return response.status


async def wait_for_status(
    client: TestClient, signer: RequestSigner, status: int, bound: float
) -> float:
    started = time.monotonic()
    while (got := await get(client, signer)) != status:
        assert time.monotonic() - started < bound, f"still {got} after {bound} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def settled(cache: KeyCache) -> None:
    """Wait until a store answer may be cached (PostgreSQL: a refresh after the last change)."""
    deadline = time.monotonic() + REFRESH * 4 + SLACK
    while cache.fill_stamp() is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def serving_alice(
    aiohttp_client: Any, settings: Settings
) -> tuple[TestClient, RequestSigner, KeyCache]:
    """A gateway with the caller alice, once its key cache may be filled."""
    client = await aiohttp_client(create_app(settings))
    _, signer = await add_caller(client.server.app, "alice")
    cache = client.server.app[KEY_CACHE]
    await settled(cache)
    return client, signer, cache


async def test_a_verified_key_is_served_from_the_cache(
    aiohttp_client: Any, settings: Settings
) -> None:
    client, signer, cache = await serving_alice(aiohttp_client, settings)
    assert await get(client, signer) == 200  # from the store, then cached
    assert len(cache) == 1
    hits = cache.hits
    for _ in range(5):
        assert await get(client, signer) == 200
    assert cache.hits == hits + 5


async def test_a_cached_key_still_needs_a_good_signature(
    aiohttp_client: Any, settings: Settings
) -> None:
    client, signer, _ = await serving_alice(aiohttp_client, settings)
    assert await get(client, signer) == 200
    # Same keyId, another private key: the signature does not verify, cached or not.
    impostor = RequestSigner(new_key("ecdsa"), signer.key_id)
    assert await get(client, impostor) == 401
    assert await get(client, signer) == 200


async def test_failed_and_unknown_keys_are_never_cached(
    aiohttp_client: Any, settings: Settings
) -> None:
    client, signer, cache = await serving_alice(aiohttp_client, settings)
    impostor = RequestSigner(new_key("ecdsa"), signer.key_id)
    stranger = RequestSigner.for_login(new_key("ecdsa"), "mallory")
    for _ in range(3):
        assert await get(client, impostor) == 401
        assert await get(client, stranger, "mallory") == 401
    assert len(cache) == 0


async def test_a_change_made_by_another_process_reaches_cached_keys(
    aiohttp_client: Any, settings: Settings
) -> None:
    """The CLI disables, then enables the account: cached or not, the server follows
    (SQLite at once, PostgreSQL within the refresh interval)."""
    client, signer, cache = await serving_alice(aiohttp_client, settings)
    assert await get(client, signer) == 200
    assert await get(client, signer) == 200
    assert len(cache) == 1

    await cli(settings, "accounts", "disable", "alice")
    if not settings.database:
        assert await get(client, signer) == 403  # the very next request
    else:
        took = await wait_for_status(client, signer, 403, REFRESH + SLACK)
        print(f"disable seen after {took:.2f} s")
    await cli(settings, "accounts", "enable", "alice")
    await wait_for_status(client, signer, 200, REFRESH + SLACK)


async def test_a_key_added_elsewhere_for_a_cached_account_is_usable(
    aiohttp_client: Any, settings: Settings
) -> None:
    client, signer, _ = await serving_alice(aiohttp_client, settings)
    assert await get(client, signer) == 200
    second = new_key("ecdsa")
    public = settings.data_dir.parent / "second.pub"
    public.write_text(ssh_public_key_line(second, "second") + "\n")
    await cli(settings, "keys", "add", "alice", str(public))
    await wait_for_status(client, RequestSigner.for_login(second, "alice"), 200, REFRESH + SLACK)
    assert await get(client, signer) == 200


async def test_postgres_poll_settles_only_a_refresh_after_a_change(postgres_url: str) -> None:
    """The watch's stamp follows the change counter, and a store answer may be cached only
    once the store itself is sure to have re-read it (a refresh after the change)."""
    settings = Settings(database={"url": postgres_url})
    databases = await Databases.open(settings, ("accounts",))
    try:
        watch = PolledCounterWatch(databases["accounts"], REFRESH)
        await watch.poll()
        first = watch.stamp()
        assert first is not None
        assert not watch.settled()
        await asyncio.sleep(REFRESH + SETTLE_MARGIN + 0.05)
        await watch.poll()
        assert watch.settled() and watch.stamp() == first

        await AccountStore(databases["accounts"]).add_account("zed")
        await watch.poll()
        assert watch.stamp() not in (None, first)
        assert not watch.settled()
    finally:
        await databases.close()


async def test_no_cache_when_every_request_must_read_the_counter(
    aiohttp_client: Any, tmp_path: Path, postgres_url: str
) -> None:
    """``refresh_interval = 0`` on PostgreSQL asks for a counter read on every request: no
    cache then, and authentication still works through the store."""
    settings = Settings(
        data_dir=tmp_path / "data", database={"url": postgres_url, "refresh_interval": 0}
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    _, signer = await add_caller(app, "alice")
    assert KEY_CACHE not in app
    assert await get(client, signer) == 200
    await cli(settings, "accounts", "disable", "alice")
    assert await get(client, signer) == 403


async def send(client: TestClient, headers: dict[str, str], path: str = "/alice/images") -> int:
    """GET ``path`` with exactly these (already signed) headers."""
    response = await client.get(path, headers=headers)
    await response.read()
    return response.status


def _tampered(headers: dict[str, str]) -> dict[str, str]:
    """The same headers with one character of the signature changed."""
    authz = headers["Authorization"]
    start = authz.index('signature="') + len('signature="')
    swapped = "A" if authz[start + 5] != "A" else "B"
    return {**headers, "Authorization": authz[: start + 5] + swapped + authz[start + 6 :]}


async def test_a_signature_that_verified_is_remembered_with_its_key(
    aiohttp_client: Any, settings: Settings
) -> None:
    """The same signed headers again (what a client sends within one second) are not verified
    twice; a signature differing by one character still is, and fails."""
    client, signer, cache = await serving_alice(aiohttp_client, settings)
    headers = signer.sign("GET", "/alice/images")
    assert await send(client, headers) == 200  # verified; the key is cached from here
    assert await send(client, headers) == 200  # verified with the cached key, remembered
    entry = cache.get(signer.key_id)
    assert entry is not None and len(entry.signatures) == 1
    for _ in range(3):
        assert await send(client, headers) == 200
    assert len(entry.signatures) == 1
    assert await send(client, _tampered(headers)) == 401
    assert len(entry.signatures) == 1


async def test_remembered_signatures_go_with_an_account_change(
    aiohttp_client: Any, settings: Settings
) -> None:
    client, signer, _ = await serving_alice(aiohttp_client, settings)
    headers = signer.sign("GET", "/alice/images")
    for _ in range(3):
        assert await send(client, headers) == 200
    await cli(settings, "accounts", "disable", "alice")
    if not settings.database:
        assert await send(client, headers) == 403  # the very next request, same headers
    else:
        deadline = time.monotonic() + REFRESH + SLACK
        while await send(client, headers) != 403:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)


async def test_a_remembered_signature_still_expires_with_its_date(
    aiohttp_client: Any, tmp_path: Path, database: dict[str, Any]
) -> None:
    """The clock-skew check runs on every request: remembering a signature does not extend it."""
    section = {**database, "refresh_interval": REFRESH} if database else {}
    settings = Settings(data_dir=tmp_path / "data", database=section, clock_skew=1)
    client = await aiohttp_client(create_app(settings))
    _, signer = await add_caller(client.server.app, "alice")
    await settled(client.server.app[KEY_CACHE])
    headers = signer.sign("GET", "/alice/images")
    assert await send(client, headers) == 200
    assert await send(client, headers) == 200
    await asyncio.sleep(2.2)
    assert await send(client, headers) in (400, 401)
