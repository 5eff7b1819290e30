"""On-disk backend: restarts keep everything; failed or dropped writes leave the old version."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import aiohttp

from fake_manta import ADMIN_HEADERS, FakeMantaServer

DIR_CT = "application/json; type=directory"


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


async def test_restart_keeps_objects_directories_headers_etags(tmp_path: Path) -> None:
    data_dir = tmp_path / "m"
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/d", headers={"Content-Type": DIR_CT,
                                                             "m-dir": "yes"}) as r:
            assert r.status == 204
        async with s.put(f"{srv.url}/bob/stor/d/x", data=b"hello",
                         headers={"m-a": "1", "Content-Type": "text/plain"}) as r:
            etag = r.headers["Etag"]
        async with s.get(f"{srv.url}/bob/stor/d/x") as r:
            before = dict(r.headers)
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.get(f"{srv.url}/bob/stor/d/x") as r:
            assert await r.read() == b"hello"
            assert r.headers["Etag"] == etag
            for key in ("m-a", "Content-Type", "Content-MD5", "Last-Modified", "Durability-Level"):
                assert r.headers[key] == before[key]
        async with s.head(f"{srv.url}/bob/stor/d") as r:
            assert r.headers["m-dir"] == "yes"


async def test_md5_mismatch_leaves_no_blob(tmp_path: Path) -> None:
    data_dir = tmp_path / "m"
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/x", data=b"old") as r:
            assert r.status == 204
        bad = base64.b64encode(hashlib.md5(b"nope").digest()).decode()
        async with s.put(f"{srv.url}/bob/stor/x", data=b"new", headers={"Content-MD5": bad}) as r:
            assert r.status == 400
        assert len(blob_files(data_dir)) == 1
        assert list((data_dir / "tmp").iterdir()) == []


async def test_dropped_connection_mid_put_keeps_previous_version(tmp_path: Path) -> None:
    data_dir = tmp_path / "m"
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/x", data=b"previous") as r:
            assert r.status == 204
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"PUT /bob/stor/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        # 100 Continue comes once the upload has begun (its temp file exists), so the wait
        # below cannot see an empty tmp/ before the server even started.
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        writer.write(b"z" * 5000)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        for _ in range(200):  # wait until the server noticed and cleaned up (bounded)
            if not list((data_dir / "tmp").iterdir()):
                break
            await asyncio.sleep(0.01)
        async with s.get(f"{srv.url}/bob/stor/x") as r:
            assert await r.read() == b"previous"
        assert list((data_dir / "tmp").iterdir()) == []
        assert len(blob_files(data_dir)) == 1


async def test_startup_sweeps_leftovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "m"
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/x", data=b"keep") as r:
            assert r.status == 204
    (data_dir / "tmp" / "half-written").write_bytes(b"partial")
    (data_dir / "blobs" / "ff").mkdir(exist_ok=True)
    (data_dir / "blobs" / "ff" / "ff00orphan").write_bytes(b"never indexed")
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        assert list((data_dir / "tmp").iterdir()) == []
        assert len(blob_files(data_dir)) == 1
        async with s.get(f"{srv.url}/bob/stor/x") as r:
            assert await r.read() == b"keep"


async def test_delete_and_reset_remove_blob_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "m"
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        for name in ("a", "b"):
            async with s.put(f"{srv.url}/bob/stor/{name}", data=b"x") as r:
                assert r.status == 204
        async with s.delete(f"{srv.url}/bob/stor/a") as r:
            assert r.status == 204
        assert len(blob_files(data_dir)) == 1
        await srv.reset()
        assert blob_files(data_dir) == []
        async with s.get(f"{srv.url}/bob/stor/b") as r:
            assert r.status == 404


async def test_fsync_option_keeps_objects_across_restart(tmp_path: Path) -> None:
    """``fsync=True`` (``--fsync``): same behaviour, plus fsync before answering."""
    data_dir = tmp_path / "m"
    body = bytes(range(256)) * 40_000  # several write batches
    async with FakeMantaServer(data_dir=data_dir, no_auth=True, fsync=True) as srv, \
            aiohttp.ClientSession() as s:
        assert srv.config.fsync
        async with s.get(f"{srv.url}/_fake/state", headers=ADMIN_HEADERS) as r:
            assert (await r.json())["fsync"] is True
        async with s.put(f"{srv.url}/bob/stor/x", data=body) as r:
            assert r.status == 204
            md5 = r.headers["Computed-MD5"]
        async with s.put(f"{srv.url}/bob/stor/x", data=body[::-1]) as r:
            assert r.status == 204
        async with s.put(f"{srv.url}/bob/stor/x", data=body) as r:
            assert r.status == 204
    async with FakeMantaServer(data_dir=data_dir, no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.get(f"{srv.url}/bob/stor/x") as r:
            assert r.headers["Content-MD5"] == md5
            assert await r.read() == body
        assert len(blob_files(data_dir)) == 1


async def test_get_with_sendfile_full_and_ranges(tmp_path: Path) -> None:
    """GET on disk goes through sendfile(2): whole object, a middle range, a suffix range."""
    body = hashlib.sha512(b"seed").digest() * (3 * 1024 * 1024 // 64 + 7)
    async with FakeMantaServer(data_dir=tmp_path / "m", no_auth=True) as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/big", data=body) as r:
            assert r.status == 204
        async with s.get(f"{srv.url}/bob/stor/big") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(body)
            assert await r.read() == body
        start, end = 1_000_003, 2_500_000
        async with s.get(f"{srv.url}/bob/stor/big",
                         headers={"Range": f"bytes={start}-{end}"}) as r:
            assert r.status == 206
            assert await r.read() == body[start : end + 1]
        async with s.get(f"{srv.url}/bob/stor/big", headers={"Range": "bytes=-777"}) as r:
            assert r.status == 206
            assert await r.read() == body[-777:]
