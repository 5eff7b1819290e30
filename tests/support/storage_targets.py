"""Every storage target the tests run against, ready to use: real servers on loopback.

One ``TargetHarness`` per target name (``TARGET_NAMES``): the Manta plugin on the fake Manta
(memory or on-disk backend, and on-disk as Manta v2, which refuses SnapLinks), and the S3
plugin on moto's server behind a tiny fault-injecting proxy. A harness carries the
``[storage]`` settings mapping (to build a gateway with ``Settings(storage=harness.storage)``),
an opened ``StorageTarget``, the login whose tree the tests write in, the target's documented
capabilities (``has_parents``, ``can_copy``), and fault injection with one API for
every target (``harness.faults.add(method=, path=, status=, code=, times=, cut_after=)``).

Reuse it from any conftest::

    from tests.support.storage_targets import moto_s3, storage_harness  # noqa: F401 (fixtures)

and parametrize over targets by requesting ``storage_harness`` (or call ``open_target``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.httpsig import ssh_public_key_line
from gateway.settings import Settings
from gateway.storage import StorageError, StorageTarget
from tests.support import secrets

#: Every target the contract suite (and the export's HTTP tests) run against.
TARGET_NAMES = ("manta-memory", "manta-disk", "manta-v2", "s3")
#: The account whose tree the tests write into; the gateway writes as ``OPERATOR``.
LOGIN = "bob"
OPERATOR = "operator"
BUCKET = "gateway-tests"
#: Small enough that a 12 MiB upload is multipart on S3 (5 MiB is S3's and moto's minimum).
S3_PART_SIZE = 5 * 1024 * 1024
#: Retries every harness target makes; a fault with ``times > RETRIES`` is seen by the caller.
RETRIES = 2


class FaultAdder:
    """What ``harness.faults`` offers for every target (the fake Manta's own API)."""

    def add(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        code: str | None = None,
        times: int = 1,
        cut_after: int | None = None,
    ) -> object:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class TargetHarness:
    """A storage target under test, and what a test needs to know about it."""

    name: str
    #: The ``[storage]`` section that builds this target (``kind`` included).
    storage: dict[str, Any]
    target: StorageTarget
    login: str
    faults: Any
    #: Manta refuses a write whose parent is missing or is an object; S3 has no parents.
    has_parents: bool
    #: ``copy_object`` copies; Manta v2 refuses every SnapLink (``CopyUnsupported``).
    can_copy: bool
    #: Incomplete uploads the store still holds (S3 multipart uploads; none for Manta).
    leftovers: Callable[[], Awaitable[list[str]]]
    #: The fake Manta server object, or the moto helper, for target-specific checks.
    server: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, *parts: str) -> str:
        """``/login/stor/<parts>``."""
        return "/".join([f"/{self.login}/stor", *parts])


def write_operator_key(directory: Path) -> tuple[Path, str]:
    """A fresh Ed25519 key in OpenSSH form; returns (private key file, public key line).

    Recorded as a secret (``tests/support/secrets.py``): no log may ever show it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    secrets.REGISTRY.add_key(key)
    path = directory / "operator_ed25519"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path, ssh_public_key_line(key, "gateway-operator")


# --- Manta ---------------------------------------------------------------------------------


async def open_manta_uploads(target: StorageTarget) -> list[str]:
    """The objects of the multipart uploads the fake Manta still holds open (not committed nor
    aborted), as keys without the leading ``/`` as S3's ``leftovers`` gives them."""
    found: list[str] = []
    with contextlib.suppress(StorageError):  # no upload was ever made: no uploads tree
        async for prefix in await target.list_directory(f"/{OPERATOR}/uploads"):
            async for upload in await target.list_directory(prefix.path):
                chunks = [c async for c in await target.get_object(f"{upload.path}/state")]
                state = json.loads(b"".join(chunks))
                if state["state"] != "done":
                    found.append(state["targetObject"].lstrip("/"))
    return found



@asynccontextmanager
async def manta_target(
    workdir: Path,
    *,
    backend: str = "memory",
    snaplinks: Literal["v1", "v2"] = "v1",
    **overrides: Any,
) -> AsyncIterator[TargetHarness]:
    """The Manta plugin on a fresh fake Manta (``backend`` memory or disk) with auth on.

    ``snaplinks="v2"`` makes it Manta v2, which answers every SnapLink with 403
    SnaplinksDisabledError; the harness is then named ``manta-v2``.
    """
    from fake_manta import FakeMantaServer
    from plugins.storage.manta import MantaTargetFactory

    key_file, public_line = write_operator_key(workdir / "keys")
    data_dir = workdir / "manta-data" if backend == "disk" else None
    async with FakeMantaServer(
        host="127.0.0.1", port=0, data_dir=data_dir, snaplinks=snaplinks
    ) as fm:
        fm.add_account(OPERATOR, public_keys=[public_line], operator=True)
        fm.add_account(LOGIN, public_keys=[])
        storage: dict[str, Any] = {
            "kind": "manta",
            "url": fm.url,
            "public_url": "https://manta.example.com",
            "user": OPERATOR,
            "key_file": str(key_file),
            "retries": RETRIES,
            "retry_delay": 0.01,
            "retry_max_delay": 0.05,
            # As on S3: a 12 MiB upload is a multipart upload, so every suite exercises both.
            "multipart_threshold": S3_PART_SIZE,
            "part_size": S3_PART_SIZE,
            "max_concurrency": 2,
            **overrides,
        }
        target = MantaTargetFactory().create(storage, Settings())
        await target.open()

        async def leftovers() -> list[str]:
            return await open_manta_uploads(target)
        try:
            yield TargetHarness(
                name="manta-v2" if snaplinks == "v2" else f"manta-{backend}",
                storage=storage,
                target=target,
                login=LOGIN,
                faults=fm.faults,
                has_parents=True,
                can_copy=snaplinks == "v1",
                leftovers=leftovers,
                server=fm,
            )
        finally:
            await target.close()


# --- S3 ------------------------------------------------------------------------------------


class MotoS3:
    """moto's ThreadedMotoServer on a free loopback port: one per session, reset per test."""

    def __init__(self) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """``POST /moto-api/reset``: forget every bucket and upload."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


@dataclass
class FaultRule:
    """Fail the next ``times`` matching requests: answer ``status``, or cut the connection
    after ``cut_after`` bytes of the request body; ``stall`` waits that long first (and then
    forwards the request, if nothing else is set), as the fake Manta's stall fault does."""

    method: str | None
    path: re.Pattern[str] | None
    status: int | None
    code: str | None
    times: int
    cut_after: int | None
    stall: float | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )


class ProxyFaults:
    """The fault rules of an ``S3FaultProxy``, with the fake Manta's ``faults.add`` signature."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        code: str | None = None,
        times: int = 1,
        cut_after: int | None = None,
        stall: float | None = None,
    ) -> FaultRule:
        if status is None and cut_after is None and stall is None:
            status = 503
        rule = FaultRule(
            method, re.compile(path) if path else None, status, code, times, cut_after, stall
        )
        self.rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path):
                rule.hits += 1
                return rule
        return None

    def reset(self) -> None:
        self.rules.clear()


HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "expect", "te", "upgrade"}


class S3FaultProxy:
    """A streaming loopback HTTP proxy in front of moto that can fail requests on demand."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = ProxyFaults()
        self.url = ""
        #: Every request received (faulted or forwarded): method, path, headers (lower case).
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        #: Requests being forwarded right now, and the most seen at once, per method.
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append((request.method, request.path, headers))
        rule = self.faults.take(request.method, request.path)
        if rule is not None and rule.stall is not None:
            await asyncio.sleep(rule.stall)
            if rule.status is None and rule.cut_after is None:
                rule = None  # a plain stall: forward the request now
        if rule is not None and rule.cut_after is not None:
            received = 0
            while received < rule.cut_after:
                chunk = await request.content.read(rule.cut_after - received)
                if not chunk:
                    break
                received += len(chunk)
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("fault injected: connection cut")
        if rule is not None:
            code = rule.code or "ServiceUnavailable"
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>fault injected</Message></Error>"
            )
            return web.Response(
                status=rule.status or 503, text=body, content_type="application/xml"
            )
        method = request.method
        self.in_flight[method] = self.in_flight.get(method, 0) + 1
        self.max_in_flight[method] = max(self.max_in_flight.get(method, 0), self.in_flight[method])
        try:
            return await self._forward(request)
        finally:
            self.in_flight[method] -= 1

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        data = request.content if request.body_exists else None
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=data,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    await response.write(chunk)
            await response.write_eof()
            return response


@asynccontextmanager
async def s3_target(moto: MotoS3, **overrides: Any) -> AsyncIterator[TargetHarness]:
    """The S3 plugin on a freshly reset moto, through a fault-injecting proxy."""
    from plugins.storage.s3 import S3Target, S3TargetFactory

    await asyncio.to_thread(moto.reset)
    proxy = S3FaultProxy(moto.url)
    await proxy.start()
    storage: dict[str, Any] = {
        "kind": "s3",
        "endpoint_url": proxy.url,
        "region": "us-east-1",
        "bucket": BUCKET,
        "access_key": "testing",
        "secret_key": "testing",
        "addressing_style": "path",
        "public_url": "https://s3.example.com/" + BUCKET,
        "multipart_threshold": S3_PART_SIZE,
        "part_size": S3_PART_SIZE,
        "copy_multipart_threshold": S3_PART_SIZE,
        "copy_part_size": S3_PART_SIZE,
        "max_concurrency": 2,
        "retries": RETRIES,
        "retry_delay": 0.01,
        "retry_max_delay": 0.05,
        **overrides,
    }
    target = S3TargetFactory().create(storage, Settings())
    assert isinstance(target, S3Target)
    await target.open()

    async def leftovers() -> list[str]:
        listing = await target.client.list_multipart_uploads(Bucket=BUCKET)
        return [upload["Key"] for upload in listing.get("Uploads", [])]

    try:
        await target.client.create_bucket(Bucket=BUCKET)
        yield TargetHarness(
            name="s3",
            storage=storage,
            target=target,
            login=LOGIN,
            faults=proxy.faults,
            has_parents=False,
            can_copy=True,
            leftovers=leftovers,
            server=moto,
            extra={"proxy": proxy},
        )
    finally:
        await target.close()
        await proxy.stop()


@asynccontextmanager
async def open_target(
    name: str, workdir: Path, moto: MotoS3 | None = None, **overrides: Any
) -> AsyncIterator[TargetHarness]:
    """The harness for one of ``TARGET_NAMES``."""
    if name == "manta-memory":
        async with manta_target(workdir, backend="memory", **overrides) as harness:
            yield harness
    elif name == "manta-disk":
        async with manta_target(workdir, backend="disk", **overrides) as harness:
            yield harness
    elif name == "manta-v2":
        async with manta_target(workdir, backend="disk", snaplinks="v2", **overrides) as harness:
            yield harness
    elif name == "s3":
        if moto is None:
            raise ValueError("the s3 target needs a running MotoS3")
        async with s3_target(moto, **overrides) as harness:
            yield harness
    else:
        raise ValueError(f"unknown storage target {name!r}; known: {', '.join(TARGET_NAMES)}")


# --- pytest fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto server for the whole session (each stop costs time; reset is per test)."""
    moto = MotoS3()
    moto.start()
    try:
        yield moto
    finally:
        moto.stop()


@pytest.fixture(params=TARGET_NAMES)
async def storage_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TargetHarness]:
    """Each storage target in turn; moto starts only when the s3 target is first used."""
    moto = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    async with open_target(request.param, tmp_path, moto) as harness:
        yield harness
