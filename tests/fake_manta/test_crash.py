"""kill -9 of the on-disk fake Manta in the middle of a large PUT, then a restart.

The server runs as a real subprocess (``python -m fake_manta --data-dir D --port 0``). A large
upload is started and, once the server has provably written MiBs of it to disk (``wchar`` in
``/proc/PID/io``), the process gets SIGKILL. After a restart on the same data directory the
previous version must be intact (bytes, etag, headers) and nothing of the interrupted upload
may be visible through the API, nor left behind on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

SENT_BEFORE_KILL = 16 * 1024 * 1024
DECLARED_SIZE = 300 * 1024 * 1024
CHUNK = b"\xab" * (1024 * 1024)
PREVIOUS = b"the previous version\n" * 50

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


class ServerProcess:
    """``python -m fake_manta`` on a data dir; ``url`` parsed from its banner."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fake_manta", "--data-dir", str(self.data_dir),
            "--host", "127.0.0.1", "--port", "0", "--no-auth", "--account", "alice",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        seen = []
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
            if not line:
                raise AssertionError(f"fake_manta exited before listening: {''.join(seen)}")
            seen.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        # Keep draining its output so that the pipe never fills up and blocks the server.
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    def bytes_written(self) -> int:
        """Bytes the server has written to files (``wchar``; socket sends are not counted)."""
        assert self.proc is not None
        text = Path(f"/proc/{self.proc.pid}/io").read_text()
        return int(re.search(r"^wchar:\s*(\d+)", text, re.M).group(1))  # type: ignore[union-attr]

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "manta"


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(data_dir)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def snapshot(http: aiohttp.ClientSession, url: str, path: str) -> dict[str, Any]:
    """What a client can see of one object."""
    async with http.get(url + path) as resp:
        body = await resp.read()
        headers = {k: resp.headers.get(k) for k in
                   ("Etag", "Content-Type", "Content-MD5", "Content-Length", "m-color",
                    "Last-Modified", "Durability-Level")}
        return {"status": resp.status, "body": body, "headers": headers}


async def walk(http: aiohttp.ClientSession, url: str, path: str) -> list[str]:
    """Every entry under ``path``, recursively, as the listing API shows it."""
    found = []
    async with http.get(url + path, params={"limit": "1024"}) as resp:
        assert resp.status == 200, await resp.text()
        rows = [json.loads(line) for line in (await resp.text()).splitlines() if line]
        assert int(resp.headers["Result-Set-Size"]) == len(rows)
    for row in rows:
        child = f"{path}/{row['name']}"
        found.append(f"{child} {row['type']} {row.get('size', '')}")
        if row["type"] == "directory":
            found += await walk(http, url, child)
    return found


async def everything(http: aiohttp.ClientSession, url: str) -> list[str]:
    out = []
    for top in ("stor", "public", "reports", "uploads"):
        out += await walk(http, url, f"/alice/{top}")
    return out


async def interrupted_put(server: ServerProcess, path: str, *, chunked: bool) -> None:
    """Stream a large body; kill -9 the server once it has stored most of what was sent."""
    start = server.bytes_written()
    sent_enough = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while True:
            if sent >= SENT_BEFORE_KILL:
                sent_enough.set()
                await asyncio.sleep(3600)  # a slow client: the rest never comes
            yield CHUNK
            sent += len(CHUNK)

    headers = {"Content-Type": "application/octet-stream", "m-color": "red"}
    if chunked:
        headers["max-content-length"] = str(DECLARED_SIZE)
    else:
        headers["Content-Length"] = str(DECLARED_SIZE)

    async def upload() -> None:
        async with aiohttp.ClientSession() as http, \
                http.put(server.url + path, data=body(), headers=headers) as resp:
            await resp.read()

    task = asyncio.create_task(upload())
    await asyncio.wait_for(sent_enough.wait(), 120)
    for _ in range(600):  # wait until the server has written (most of) it to disk
        if server.bytes_written() - start >= SENT_BEFORE_KILL - 4 * len(CHUNK):
            break
        await asyncio.sleep(0.05)
    else:
        task.cancel()
        raise AssertionError("the server did not store the upload as it arrived")
    await server.kill9()
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(task, 60)


def disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_kill9_mid_put_keeps_previous_version(data_dir: Path, chunked: bool) -> None:
    async with running(data_dir) as server, aiohttp.ClientSession() as http:
        async with http.put(server.url + "/alice/stor/dir",
                            headers={"Content-Type": "application/json; type=directory"}) as r:
            assert r.status == 204
        async with http.put(server.url + "/alice/stor/dir/obj", data=PREVIOUS,
                            headers={"Content-Type": "text/plain", "m-color": "blue"}) as r:
            assert r.status == 204, await r.text()
        before = await snapshot(http, server.url, "/alice/stor/dir/obj")
        listing_before = await everything(http, server.url)
        await interrupted_put(server, "/alice/stor/dir/obj", chunked=chunked)

    async with running(data_dir) as server, aiohttp.ClientSession() as http:
        after = await snapshot(http, server.url, "/alice/stor/dir/obj")
        assert after == before
        assert after["body"] == PREVIOUS and after["headers"]["m-color"] == "blue"
        assert await everything(http, server.url) == listing_before
        async with http.head(server.url + "/alice/stor/dir/obj") as resp:
            assert resp.headers["Etag"] == before["headers"]["Etag"]
            assert resp.headers["Content-Length"] == str(len(PREVIOUS))
    # The partial upload must not linger on disk either.
    assert disk_usage(data_dir) < SENT_BEFORE_KILL // 2


async def test_kill9_mid_put_of_a_new_object_leaves_nothing(data_dir: Path) -> None:
    async with running(data_dir) as server, aiohttp.ClientSession() as http:
        listing_before = await everything(http, server.url)
        await interrupted_put(server, "/alice/stor/new-object", chunked=False)

    async with running(data_dir) as server, aiohttp.ClientSession() as http:
        async with http.get(server.url + "/alice/stor/new-object") as resp:
            assert resp.status == 404
        assert await everything(http, server.url) == listing_before
        # And the object can be written normally afterwards.
        async with http.put(server.url + "/alice/stor/new-object", data=b"ok") as resp:
            assert resp.status == 204
        async with http.get(server.url + "/alice/stor/new-object") as resp:
            assert await resp.read() == b"ok"
    assert disk_usage(data_dir) < SENT_BEFORE_KILL // 2


async def test_kill9_right_after_204_keeps_the_new_version(data_dir: Path) -> None:
    """A PUT answered 204 is committed: a crash the next instant must not lose it."""
    async with running(data_dir) as server, aiohttp.ClientSession() as http:
        async with http.put(server.url + "/alice/stor/obj", data=b"v1") as resp:
            assert resp.status == 204
        async with http.put(server.url + "/alice/stor/obj", data=b"v2",
                            headers={"m-version": "2"}) as resp:
            assert resp.status == 204
            etag = resp.headers["Etag"]
        await server.kill9()

    async with running(data_dir) as server, aiohttp.ClientSession() as http:
        async with http.get(server.url + "/alice/stor/obj") as resp:
            assert resp.status == 200
            assert await resp.read() == b"v2"
            assert resp.headers["Etag"] == etag
            assert resp.headers["m-version"] == "2"
