"""Fixtures: a running FakeMantaServer (no auth) per test, over both backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_manta import FakeMantaServer

DIR_CT = "application/json; type=directory"
LISTING_CT = "application/x-json-stream; type=directory"


class Manta:
    """A thin test client: base URL plus helpers that assert the happy path."""

    def __init__(self, server: FakeMantaServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.url = server.url
        self.stor = f"{server.url}/bob/stor"

    def request(self, method: str, url: str, **kw: Any) -> Any:
        return self.session.request(method, url, **kw)

    async def mkdir(self, url: str, **headers: str) -> None:
        async with self.session.put(url, headers={"Content-Type": DIR_CT, **headers}) as r:
            assert r.status == 204, await r.text()

    async def put(self, url: str, body: bytes = b"data", **headers: str) -> str:
        """PUT an object and return its etag."""
        async with self.session.put(url, data=body, headers=headers) as r:
            assert r.status == 204, await r.text()
            return r.headers["Etag"]

    async def get(self, url: str) -> bytes:
        async with self.session.get(url) as r:
            assert r.status == 200, await r.text()
            return await r.read()

    async def ls(self, url: str, **params: str) -> tuple[list[dict[str, Any]], int]:
        """(rows, Result-Set-Size)."""
        async with self.session.get(url, params=params) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == LISTING_CT
            text = await r.text()
            rows = [json.loads(line) for line in text.splitlines() if line]
            return rows, int(r.headers["Result-Set-Size"])

    async def error(self, method: str, url: str, status: int, code: str, **kw: Any) -> str:
        """Assert a Manta error; returns its message."""
        async with self.session.request(method, url, **kw) as r:
            body = await r.read()
            assert r.status == status, body
            if method == "HEAD":
                assert body == b""
                return ""
            assert r.headers["Content-Type"] == "application/json"
            payload = json.loads(body)
            assert payload["code"] == code, payload
            return str(payload["message"])


@pytest.fixture(params=["memory", "disk"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def server(backend_kind: str, tmp_path: Path) -> AsyncIterator[FakeMantaServer]:
    """A fake Manta with login ``bob``; the disk variant keeps its state under tmp_path.

    MPU's minimum part size is lowered to 1 KiB so multipart tests stay small.
    """
    data_dir = tmp_path / "manta" if backend_kind == "disk" else None
    async with FakeMantaServer(port=0, data_dir=data_dir, no_auth=True,
                               min_part_size=1024) as srv:
        srv.add_account("bob")
        yield srv


@pytest.fixture
async def manta(server: FakeMantaServer) -> AsyncIterator[Manta]:
    async with aiohttp.ClientSession() as session:
        yield Manta(server, session)
