"""kill -9 of a gateway process mid-export: another process, or a restart, repairs it.

The gateway runs as a real child process (``python -m gateway serve``) on a data directory the
test shares (accounts, catalog, journal). The store stalls one request of the export (a stall
fault: during the safety copy, during the file, between file and manifest, during cleanup),
the test kills the process with SIGKILL while that request hangs, and then waits for a
gateway (a second process already running, or the same one restarted) to repair the
destination. Each case asserts the destination byte for byte equal to "before" or "after",
and that no safety copy, orphan, upload or journal entry is left.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.catalog import Image
from gateway.server.journal import SQLiteJournal
from gateway.storage import PartialUploadsTarget
from tests.export.test_export_safety import assert_clean, blob, holding
from tests.support.export_env import ExportEnv, make_env
from tests.support.serve_process import ServeProcess, settings_env
from tests.support.storage_targets import open_target

#: The on-disk fake Manta with SnapLinks (v1) and without (v2), and S3 on moto.
CRASH_TARGETS = ("manta-disk", "manta-v2", "s3")
#: Lease of every gateway here, and how often their sweepers look.
LEASE = 1.0
SWEEP = 0.25
#: The stalled request hangs this long and then fails, never reaching the store: the process
#: is killed meanwhile, so nothing of it lands (a real store drops the request of a client
#: that vanished; the fake must not commit it after the test has looked).
STALL = 1.5


class GatewayProcess(ServeProcess):
    """``python -m gateway serve`` on the test's data directory and storage, on loopback."""

    def __init__(self, data_dir: Path, storage: dict[str, Any], log: Path, **settings: Any):
        env = settings_env(storage, lease_seconds=LEASE, sweep_interval=SWEEP, **settings)
        super().__init__(data_dir, env, log)

    async def export(self, env: ExportEnv, image: Image, manta_path: str) -> tuple[int, Any]:
        path = f"/bob/images/{image.uuid}?action=export&manta_path={manta_path}"
        headers = env.signers["bob"].sign("POST", path, {"Accept": "application/json"})
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url + path, headers=headers) as response:
                return response.status, await response.json()


@pytest.fixture(params=CRASH_TARGETS)
async def crash_env(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[ExportEnv]:
    """The storage target, and an in-process gateway on the shared data directory that only
    sets things up (its sweeper looks once, at start, when there is nothing to see)."""
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    async with open_target(request.param, tmp_path / "target", moto) as harness:
        yield await make_env(
            aiohttp_client, harness, tmp_path / "gateway", lease_seconds=LEASE, sweep_interval=3600
        )


@pytest.fixture
async def processes(crash_env: ExportEnv, tmp_path: Path) -> AsyncIterator[list[GatewayProcess]]:
    """Gateway processes a test starts; whatever is still running is stopped at the end."""
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        await process.stop()


def new_process(env: ExportEnv, tmp_path: Path, started: list[GatewayProcess]) -> GatewayProcess:
    process = GatewayProcess(
        tmp_path / "gateway", env.harness.storage, tmp_path / f"gateway-{len(started)}.log"
    )
    started.append(process)
    return process


async def wait_for_repair(env: ExportEnv, tmp_path: Path, killed_at: float) -> float:
    """Seconds from the kill until the journal is empty (the repair is done)."""
    journal = SQLiteJournal(tmp_path / "gateway" / "journal.sqlite", lease_seconds=LEASE)
    key = f"export:{env.harness.target.public_url}{env.path('img.imgmanifest')}"
    try:
        while await journal.holder(key) is not None:
            # A generous bound, only so that a repair that never comes fails the test.
            assert time.monotonic() - killed_at < 60, "not repaired a minute after the kill"
            await asyncio.sleep(0.05)
    finally:
        journal.close()
    return time.monotonic() - killed_at


#: Where the store stalls (method, path), and whether the repair ends "before" or "after".
STEPS = {
    "during the safety copy": ("PUT", r"\.previous$", "before"),
    "during the file": ("PUT", r"/img\.zfs$", "before"),
    "between file and manifest": ("PUT", r"/img\.imgmanifest$", "after"),
    "during cleanup": ("DELETE", r"\.previous$", "after"),
}
#: Steps repaired by a second process already running when the first dies; the rest by a
#: restart of the dead one.
BY_ANOTHER_PROCESS = {"during the file", "during cleanup"}


@pytest.mark.parametrize("step", STEPS)
async def test_kill_9_is_repaired(
    crash_env: ExportEnv, processes: list[GatewayProcess], tmp_path: Path, step: str
) -> None:
    env = crash_env
    method, path, outcome = STEPS[step]
    if "\\.previous" in path and not env.harness.can_copy:
        pytest.skip("the store cannot copy: an export there makes no safety copy")
    old = await env.image(blob(40_000, seed=7), name="old")
    new_data = blob(50_000, seed=9)
    new = await env.image(new_data, name="new")
    assert (await env.export(old.uuid, env.path("img"))).status == 200
    before = await holding(env)

    doomed = new_process(env, tmp_path, processes)
    other = new_process(env, tmp_path, processes)
    if step in BY_ANOTHER_PROCESS:
        await asyncio.gather(doomed.start(), other.start())
    else:
        await doomed.start()
    rule = env.harness.faults.add(method=method, path=path, stall=STALL, status=503, times=1)
    request = asyncio.create_task(doomed.export(env, new, env.path("img")))
    while rule.hits == 0:
        assert not request.done(), request.result()
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the stalled request is in the store's hands
    await doomed.kill()
    killed_at = time.monotonic()
    assert isinstance((await asyncio.gather(request, return_exceptions=True))[0], Exception)
    if step not in BY_ANOTHER_PROCESS:
        await other.start()

    took = await wait_for_repair(env, tmp_path, killed_at)
    # Not a timing assertion (a busy machine starts processes slowly): pytest -s shows it.
    print(f"[{env.harness.name}, {step}] repaired {took:.2f} s after the kill")
    if outcome == "before":
        assert await holding(env) == before
    else:
        after = await holding(env)
        assert after.file == new_data
        assert after.manifest is not None and json.loads(after.manifest) == new.manifest
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_next_export_repairs_first(
    crash_env: ExportEnv, processes: list[GatewayProcess], tmp_path: Path
) -> None:
    """No sweep needed: an export to a destination whose writer died waits for its lease,
    repairs, and then writes."""
    env = crash_env
    old = await env.image(blob(40_000, seed=7), name="old")
    new = await env.image(blob(50_000, seed=9), name="new")
    third_data = blob(30_000, seed=3)
    third = await env.image(third_data, name="third")
    assert (await env.export(old.uuid, env.path("img"))).status == 200
    doomed = new_process(env, tmp_path, processes)
    await doomed.start()
    rule = env.harness.faults.add(
        method="PUT", path=r"/img\.imgmanifest$", stall=STALL, status=503, times=1
    )
    request = asyncio.create_task(doomed.export(env, new, env.path("img")))
    while rule.hits == 0:  # noqa: ASYNC110 - the store's own counter
        await asyncio.sleep(0.01)
    await doomed.kill()
    await asyncio.gather(request, return_exceptions=True)

    answer = await env.export(third.uuid, env.path("img"))  # in-process; it never sweeps
    assert answer.status == 200, answer.body
    after = await holding(env)
    assert after.file == third_data
    assert after.manifest is not None and json.loads(after.manifest) == third.manifest
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_kill_9_mid_multipart_upload_leaves_no_parts(
    crash_env: ExportEnv, processes: list[GatewayProcess], tmp_path: Path
) -> None:
    """A store whose large writes are many requests (S3 and Manta multipart uploads) keeps a
    dead writer's parts until they are aborted: the repair aborts them."""
    env = crash_env
    if not isinstance(env.harness.target, PartialUploadsTarget):
        pytest.skip("the store has no partial uploads")
    old = await env.image(blob(40_000, seed=7), name="old")
    new = await env.image(blob(11 * 1024 * 1024, seed=9), name="new")  # three parts
    assert (await env.export(old.uuid, env.path("img"))).status == 200
    before = await holding(env)
    doomed = new_process(env, tmp_path, processes)
    await doomed.start()
    # Hold one part: S3's parts are PUTs of the key, Manta's go under the uploads tree.
    part = r"/img\.zfs$" if env.harness.name == "s3" else r"/uploads/[^/]+/[^/]+/1$"
    rule = env.harness.faults.add(method="PUT", path=part, stall=STALL, status=503, times=1)
    request = asyncio.create_task(doomed.export(env, new, env.path("img")))
    while rule.hits == 0:  # noqa: ASYNC110 - the store's own counter
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the other parts are on their way
    await doomed.kill()
    killed_at = time.monotonic()
    await asyncio.gather(request, return_exceptions=True)
    assert await env.harness.leftovers() == ["bob/stor/img.zfs"]  # the dead upload's parts

    await new_process(env, tmp_path, processes).start()
    await wait_for_repair(env, tmp_path, killed_at)
    assert await holding(env) == before
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])


async def test_two_processes_take_turns_at_one_destination(
    crash_env: ExportEnv, processes: list[GatewayProcess], tmp_path: Path
) -> None:
    """Exports to one destination from two gateway processes are serialized by the journal:
    the second waits for the first (held in the store by a stall), then replaces it whole."""
    env = crash_env
    first_data, second_data = blob(40_000, seed=7), blob(50_000, seed=9)
    first = await env.image(first_data, name="first")
    second = await env.image(second_data, name="second")
    one, two = new_process(env, tmp_path, processes), new_process(env, tmp_path, processes)
    await asyncio.gather(one.start(), two.start())
    rule = env.harness.faults.add(method="PUT", path=r"/img\.zfs$", stall=1.0, times=1)
    earlier = asyncio.create_task(one.export(env, first, env.path("img")))
    while rule.hits == 0:  # noqa: ASYNC110 - the store's own counter
        await asyncio.sleep(0.01)
    later = asyncio.create_task(two.export(env, second, env.path("img")))
    await asyncio.sleep(0.3)
    assert not later.done()  # waiting for the first export's journal entry
    assert (await earlier)[0] == 200
    assert (await later)[0] == 200
    after = await holding(env)
    assert after.file == second_data
    assert after.manifest is not None and json.loads(after.manifest) == second.manifest
    await assert_clean(env, ["img.imgmanifest", "img.zfs"])
