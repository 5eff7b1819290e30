"""Fairness between accounts: one account's slow exports cannot starve another account's.

The gateway runs on the fake Manta with a pool of three storage connections. bob's exports
stall in Manta (a ``stall`` fault on their file PUTs), each holding one connection. With
``max_exports_per_account = 2`` bob's third export is refused at once (429 RequestThrottled)
and alice's export finds a free connection while bob's still hang. Below the cap, bob's requests
still hold at most ``account_share`` of the pool. The control run without cap or share shows
that these tests can fail: there bob takes the whole pool and alice waits for him.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from gateway.server.appkeys import STORAGE
from gateway.server.limits import EXPORT_LIMITER, ExportLimiter, RequestThrottled
from tests.support.export_env import ExportEnv
from tests.support.export_env import make_env as make_export_env
from tests.support.storage_targets import manta_target

#: Seconds bob's file PUTs hang in Manta; alice must be served long before.
STALL = 8.0
POOL = 3


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def wait_for_hits(rule: Any, hits: int, within: float = 30.0) -> None:
    """Until ``hits`` requests have reached the fault (bob's exports hold their connections)."""
    deadline = time.monotonic() + within
    while rule.hits < hits:
        assert time.monotonic() < deadline, f"only {rule.hits} of {hits} exports reached Manta"
        await asyncio.sleep(0.05)


async def start_slow_exports(env: ExportEnv, count: int) -> list[asyncio.Task[Any]]:
    image = await env.image(blob(32 * 1024, seed=1))
    return [asyncio.create_task(env.export(image.uuid, env.path(f"slow{n}"))) for n in range(count)]


async def test_one_account_at_its_cap_leaves_storage_for_another(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    async with manta_target(tmp_path / "target", max_connections=POOL) as harness:
        harness.server.add_account("alice")
        env = await make_export_env(
            aiohttp_client, harness, tmp_path / "gateway", limits={"max_exports_per_account": 2}
        )
        rule = harness.faults.add("PUT", r"^/bob/stor/slow.*\.zfs$", stall=STALL, times=None)
        slow = await start_slow_exports(env, 2)
        await wait_for_hits(rule, 2)

        refused = await env.export((await env.image(blob(1024, seed=2))).uuid, env.path("more"))
        assert refused.status == 429, refused.body
        assert refused.body == {
            "code": "RequestThrottled",
            "message": "You have exceeded your limit of 2 concurrent image exports; "
            "try again when one has finished",
        }

        image = await env.image(blob(32 * 1024, seed=3), owner=env.alice)
        started = time.monotonic()
        answer = await env.export(image.uuid, "/alice/stor/img", login="alice")
        latency = time.monotonic() - started
        print(f"alice's export, bob at his cap of 2 stalled exports: {latency:.2f} s")
        assert answer.status == 200, answer.body
        assert not any(task.done() for task in slow)  # bob's still hang: alice did not wait
        assert latency < STALL / 2

        assert [(await task).status for task in slow] == [200, 200]
        assert env.app[EXPORT_LIMITER].running(env.bob.uuid) == 0  # the slots were given back
        again = await env.export((await env.image(blob(1024, seed=4))).uuid, env.path("again"))
        assert again.status == 200, again.body


async def test_an_account_under_its_cap_still_leaves_the_reserved_connections(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """Even below the export cap (or with exports that use several connections), one
    account's requests hold at most ``account_share`` of the pool; the rest wait in its queue."""
    async with manta_target(tmp_path / "target", max_connections=4, account_share=0.5) as harness:
        harness.server.add_account("alice")
        env = await make_export_env(
            aiohttp_client, harness, tmp_path / "gateway", limits={"max_exports_per_account": 10}
        )
        shares = env.app[STORAGE].shares  # type: ignore[union-attr]
        rule = harness.faults.add("PUT", r"^/bob/stor/slow.*\.zfs$", stall=STALL, times=None)
        slow = await start_slow_exports(env, 3)
        await wait_for_hits(rule, 2)
        await asyncio.sleep(0.5)
        assert rule.hits == 2  # the third waits in bob's queue, not on the pool
        assert shares.holding(env.bob.uuid) == 2

        image = await env.image(blob(32 * 1024, seed=3), owner=env.alice)
        started = time.monotonic()
        answer = await env.export(image.uuid, "/alice/stor/img", login="alice")
        latency = time.monotonic() - started
        print(f"alice's export, bob holding his share of 2 of 4 connections: {latency:.2f} s")
        assert answer.status == 200, answer.body
        assert not any(task.done() for task in slow)
        assert latency < STALL / 2
        assert [(await task).status for task in slow] == [200, 200, 200]


async def test_without_cap_or_share_one_account_takes_the_whole_pool(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """The control: what the cap and the share prevent (alice waits until bob's stalls end)."""
    async with manta_target(
        tmp_path / "target", max_connections=POOL, account_share=1.0
    ) as harness:
        harness.server.add_account("alice")
        env = await make_export_env(
            aiohttp_client, harness, tmp_path / "gateway", limits={"max_exports_per_account": 10}
        )
        rule = harness.faults.add("PUT", r"^/bob/stor/slow.*\.zfs$", stall=STALL, times=None)
        slow = await start_slow_exports(env, POOL)
        await wait_for_hits(rule, POOL)
        image = await env.image(blob(32 * 1024, seed=3), owner=env.alice)
        answer = await env.export(image.uuid, "/alice/stor/img", login="alice")
        assert answer.status == 200, answer.body
        assert any(task.done() for task in slow)  # alice got a connection only after bob
        await asyncio.gather(*slow)


def test_the_limiter_counts_per_account_and_gives_slots_back() -> None:
    limiter = ExportLimiter(2)
    with limiter.slot("a"), limiter.slot("a"), limiter.slot("b"):
        assert (limiter.running("a"), limiter.running("b")) == (2, 1)
        try:
            with limiter.slot("a"):
                raise AssertionError("a third slot was given")
        except RequestThrottled as exc:
            assert exc.status == 429
    assert (limiter.running("a"), limiter.running("b")) == (0, 0)
