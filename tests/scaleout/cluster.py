"""Several ``cloudapi-gateway serve`` processes on one PostgreSQL and one fake Manta.

What the scale-out tests share: ``Instance`` (one gateway process, with its own data dir, so
nothing is shared on local disk), ``Spread`` (a client that sends request n to instance
``n % 3``, standing in for a load balancer), and ``cli`` (``cloudapi-gateway`` commands on
the same configuration, as an operator on yet another host would run them).

Every instance gets the same configuration through ``CLOUDAPI_GATEWAY_*`` variables: the
database URL, the Manta target of the harness, the object-store catalog (image files in Manta,
records in the database), a short lease and sweep so that a dead instance's export is repaired
within seconds, and the account refresh interval the tests state as the bound.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from gateway.httpsig import RequestSigner
from tests.support.serve_process import ServeProcess, settings_env
from tests.support.storage_targets import TargetHarness

#: Seconds an export's journal lease lasts, and how often each instance's sweeper looks.
LEASE = 1.0
SWEEP = 0.25
#: ``[database] refresh_interval``: how long an account or key change made anywhere may take
#: to be seen by every instance (the bound the tests check, with slack for a busy machine).
REFRESH = 1.0
#: Where the object-store catalog keeps image files (the operator's tree, as IMGAPI does).
IMAGES_PREFIX = "/operator/stor/imgapi"


def environment(harness: TargetHarness, database_url: str) -> dict[str, str]:
    """The configuration every instance and every CLI command of a test shares."""
    env = settings_env(
        harness.storage, lease_seconds=LEASE, sweep_interval=SWEEP, database_url=database_url
    )
    env.update(
        {
            "CLOUDAPI_GATEWAY_DATABASE__REFRESH_INTERVAL": str(REFRESH),
            "CLOUDAPI_GATEWAY_CATALOG__KIND": "objectstore",
            "CLOUDAPI_GATEWAY_CATALOG__PREFIX": IMAGES_PREFIX,
        }
    )
    return env


async def cli(env: Mapping[str, str], data_dir: Path, *args: str) -> str:
    """``cloudapi-gateway ARGS`` in a child process; its stdout (fails the test on an error)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, "--data-dir", str(data_dir),
        env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"cloudapi-gateway {' '.join(args)}: {err.decode()[-2000:]}"
    return out.decode()


class Instance(ServeProcess):
    """One ``python -m gateway serve`` process with a data dir of its own."""

    def __init__(self, name: str, env: Mapping[str, str], workdir: Path) -> None:
        super().__init__(workdir / name, env, workdir / f"{name}.log", name=name)


@dataclass
class Reply:
    status: int
    body: Any
    instance: str
    finished: float


class Spread:
    """A signed client that sends each request to the next instance in turn (round-robin),
    or to the one named; the load balancer of the tests."""

    def __init__(
        self, instances: list[Instance], signer: RequestSigner, session: aiohttp.ClientSession
    ) -> None:
        self.instances = instances
        self.signer = signer
        self.session = session
        self._next = itertools.cycle(range(len(instances)))

    async def request(self, method: str, path: str, *, instance: Instance | None = None) -> Reply:
        target = instance or self.instances[next(self._next)]
        headers = self.signer.sign(method, path, {"Accept": "application/json"})
        async with self.session.request(method, target.url + path, headers=headers) as resp:
            raw = await resp.read()
            finished = time.monotonic()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Reply(resp.status, body, target.name, finished)

    async def export(
        self, image_uuid: str, manta_path: str, *, instance: Instance | None = None
    ) -> Reply:
        login = self.signer.key_id.split("/")[1]
        path = f"/{login}/images/{image_uuid}?action=export&manta_path={manta_path}"
        return await self.request("POST", path, instance=instance)


async def journal_keys(database_url: str) -> list[str]:
    """The export journal's entries (destinations being written, or left by a dead writer)."""
    conn = await asyncpg.connect(database_url, timeout=30)
    try:
        return [row["key"] for row in await conn.fetch("SELECT key FROM journal")]
    finally:
        await conn.close()
