"""Objects over HTTP: PUT/GET/HEAD/DELETE, checksums, headers, ranges, conditionals, chattr."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest

from fake_manta import FakeMantaServer

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def test_put_returns_204_with_etag_and_computed_md5(manta) -> None:
    async with manta.session.put(f"{manta.stor}/a.txt", data=b"hello\n") as r:
        assert r.status == 204
        assert UUID_RE.match(r.headers["Etag"])
        assert r.headers["Computed-MD5"] == b64md5(b"hello\n")
        assert r.headers["Last-Modified"].endswith(" GMT")
        assert await r.read() == b""


async def test_get_and_head_return_object_headers(manta) -> None:
    etag = await manta.put(f"{manta.stor}/a.txt", b"hello\n", **{
        "Content-Type": "text/plain", "m-color": "blue", "Cache-Control": "no-cache",
        "Content-Disposition": 'attachment; filename="a.txt"', "durability-level": "3"})
    for method in ("GET", "HEAD"):
        async with manta.request(method, f"{manta.stor}/a.txt") as r:
            assert r.status == 200
            assert r.headers["Etag"] == etag
            assert r.headers["Content-Type"] == "text/plain"
            assert r.headers["Content-MD5"] == b64md5(b"hello\n")
            assert r.headers["Content-Length"] == "6"
            assert r.headers["Durability-Level"] == "3"
            assert r.headers["Accept-Ranges"] == "bytes"
            assert r.headers["m-color"] == "blue"
            assert r.headers["Cache-Control"] == "no-cache"
            assert r.headers["Content-Disposition"] == 'attachment; filename="a.txt"'
            assert "Computed-MD5" not in r.headers
            assert await r.read() == (b"hello\n" if method == "GET" else b"")


async def test_chunked_put_stores_received_bytes(manta) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([i]) * 1000

    async with manta.session.put(f"{manta.stor}/chunked", data=gen()) as r:
        assert r.status == 204, await r.text()
    body = await manta.get(f"{manta.stor}/chunked")
    assert body == b"".join(bytes([i]) * 1000 for i in range(50))


async def test_multi_megabyte_object_roundtrip(manta) -> None:
    data = bytes(range(256)) * 12_000  # ~3 MiB, several write buffers
    await manta.put(f"{manta.stor}/big", data)
    assert await manta.get(f"{manta.stor}/big") == data
    async with manta.session.get(f"{manta.stor}/big") as r:
        assert r.headers["Content-MD5"] == b64md5(data)


async def test_zero_byte_object(manta) -> None:
    await manta.put(f"{manta.stor}/empty", b"")
    async with manta.session.get(f"{manta.stor}/empty") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == "0"
        assert r.headers["Content-MD5"] == "1B2M2Y8AsgTpgAmY7PhCfg=="
        assert r.headers["Durability-Level"] == "0"
        assert await r.read() == b""


async def test_default_content_type_and_mime_lookup(manta) -> None:
    await manta.put(f"{manta.stor}/o1", b"x")
    await manta.put(f"{manta.stor}/o2", b"{}", **{"Content-Type": "json"})
    async with manta.session.head(f"{manta.stor}/o1") as r:
        assert r.headers["Content-Type"] == "application/octet-stream"
    async with manta.session.head(f"{manta.stor}/o2") as r:
        assert r.headers["Content-Type"] == "application/json"


async def test_content_md5_verified(manta) -> None:
    url = f"{manta.stor}/checked"
    etag = await manta.put(url, b"old")
    msg = await manta.error("PUT", url, 400, "ContentMD5Mismatch", data=b"new!",
                            headers={"Content-MD5": b64md5(b"other")})
    assert b64md5(b"new!") in msg
    assert await manta.get(url) == b"old"  # previous version untouched
    async with manta.session.head(url) as r:
        assert r.headers["Etag"] == etag
    await manta.put(url, b"new!", **{"Content-MD5": b64md5(b"new!")})
    assert await manta.get(url) == b"new!"


async def test_malformed_content_md5_is_bad_request(manta) -> None:
    await manta.error("PUT", f"{manta.stor}/x", 400, "BadRequest", data=b"abc",
                      headers={"Content-MD5": "bogus"})


@pytest.mark.parametrize("level", ["0", "7", "two"])
async def test_invalid_durability(manta, level: str) -> None:
    await manta.error("PUT", f"{manta.stor}/x", 400, "InvalidDurabilityLevel", data=b"a",
                      headers={"x-durability-level": level})


async def test_durability_header_fallback(manta) -> None:
    await manta.put(f"{manta.stor}/x", b"a", **{"x-durability-level": "5"})
    async with manta.session.head(f"{manta.stor}/x") as r:
        assert r.headers["Durability-Level"] == "5"


async def test_m_headers_capped_at_4k(manta) -> None:
    headers = {f"m-h{i}": "v" * 1000 for i in range(6)}
    await manta.put(f"{manta.stor}/x", b"a", **headers)
    async with manta.session.head(f"{manta.stor}/x") as r:
        kept = [k for k in r.headers if k.lower().startswith("m-h")]
    assert 1 <= len(kept) <= 4


async def test_put_into_missing_directory(manta) -> None:
    msg = await manta.error("PUT", f"{manta.stor}/nodir/x", 404, "DirectoryDoesNotExist", data=b"a")
    assert msg == "/bob/stor/nodir does not exist"


async def test_put_under_object_is_parent_not_directory(manta) -> None:
    await manta.put(f"{manta.stor}/file", b"a")
    await manta.error("PUT", f"{manta.stor}/file/x", 400, "ParentNotDirectory", data=b"a")


async def test_put_object_over_directory(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    await manta.error("PUT", f"{manta.stor}/d", 400, "InvalidUpdate", data=b"abc")

    async def gen() -> AsyncIterator[bytes]:
        yield b"abc"

    await manta.error("PUT", f"{manta.stor}/d", 400, "OperationNotAllowedOnDirectory", data=gen())


async def test_put_object_on_root_directory(manta) -> None:
    await manta.error("PUT", manta.stor, 400, "OperationNotAllowedOnRootDirectory", data=b"a",
                      headers={"Content-Type": "text/plain"})


async def test_max_content_length(backend_kind: str, tmp_path) -> None:
    import aiohttp

    data_dir = tmp_path / "d" if backend_kind == "disk" else None
    async with FakeMantaServer(no_auth=True, data_dir=data_dir, max_content_length=10) as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/x", data=b"x" * 11) as r:
            assert r.status == 413
            assert (await r.json(content_type=None))["code"] == "MaxContentLengthExceeded"

        async def gen() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"abcd"

        async with s.put(f"{srv.url}/bob/stor/x", data=gen()) as r:
            assert r.status == 413
        async with s.put(f"{srv.url}/bob/stor/x", data=b"x" * 10) as r:
            assert r.status == 204
        async with s.put(f"{srv.url}/bob/stor/y", data=b"x",
                         headers={"max-content-length": "-1"}) as r:
            assert r.status == 400
            assert (await r.json(content_type=None))["code"] == "InvalidMaxContentLength"


async def test_get_missing_object(manta) -> None:
    msg = await manta.error("GET", f"{manta.stor}/missing", 404, "ResourceNotFound")
    assert msg == "/bob/stor/missing was not found"
    await manta.error("HEAD", f"{manta.stor}/missing", 404, "ResourceNotFound")


async def test_delete_object(manta) -> None:
    etag = await manta.put(f"{manta.stor}/x", b"a")
    async with manta.session.delete(f"{manta.stor}/x") as r:
        assert r.status == 204
        assert r.headers["Etag"] == etag
    await manta.error("GET", f"{manta.stor}/x", 404, "ResourceNotFound")
    await manta.error("DELETE", f"{manta.stor}/x", 404, "ResourceNotFound")


async def test_overwrite_changes_etag(manta) -> None:
    e1 = await manta.put(f"{manta.stor}/x", b"one")
    e2 = await manta.put(f"{manta.stor}/x", b"two")
    assert e1 != e2
    assert await manta.get(f"{manta.stor}/x") == b"two"


# -- ranges ---------------------------------------------------------------------------------------
ALPHA = b"abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize(("header", "body", "content_range"), [
    ("bytes=3-8", b"defghi", "bytes 3-8/26"),
    ("bytes=19-", b"tuvwxyz", "bytes 19-25/26"),
    ("bytes=-10", b"qrstuvwxyz", "bytes 16-25/26"),
    ("bytes=20-100", b"uvwxyz", "bytes 20-25/26"),
])
async def test_single_range(manta, header: str, body: bytes, content_range: str) -> None:
    etag = await manta.put(f"{manta.stor}/alpha", ALPHA)
    async with manta.session.get(f"{manta.stor}/alpha", headers={"Range": header}) as r:
        assert r.status == 206
        assert await r.read() == body
        assert r.headers["Content-Range"] == content_range
        assert r.headers["Content-Length"] == str(len(body))
        assert r.headers["Etag"] == etag
        assert "Content-MD5" not in r.headers
        assert "Accept-Ranges" not in r.headers


@pytest.mark.parametrize("header", ["bytes=27-100", "bytes=foo", "bytes=26-"])
async def test_unsatisfiable_range(manta, header: str) -> None:
    await manta.put(f"{manta.stor}/alpha", ALPHA)
    async with manta.session.get(f"{manta.stor}/alpha", headers={"Range": header}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */26"
        assert (await r.json(content_type=None))["code"] == "RangeNotSatisfiable"


async def test_multi_range_not_implemented(manta) -> None:
    await manta.put(f"{manta.stor}/alpha", ALPHA)
    await manta.error("GET", f"{manta.stor}/alpha", 501, "NotImplemented",
                      headers={"Range": "bytes=0-1,3-4"})


async def test_range_over_multiple_chunks(manta) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: the range crosses the 1 MiB chunk boundary
    await manta.put(f"{manta.stor}/big", data)
    lo, hi = (1 << 20) - 5, (1 << 20) + 5
    async with manta.session.get(f"{manta.stor}/big", headers={"Range": f"bytes={lo}-{hi}"}) as r:
        assert r.status == 206
        assert await r.read() == data[lo : hi + 1]


# -- conditionals ---------------------------------------------------------------------------------
async def test_conditional_get(manta) -> None:
    url = f"{manta.stor}/c"
    etag = await manta.put(url, b"abc")
    async with manta.session.get(url, headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with manta.session.get(url, headers={"If-None-Match": "other"}) as r:
        assert r.status == 200
    async with manta.session.get(url, headers={"If-Match": etag}) as r:
        assert r.status == 200
    await manta.error("GET", url, 412, "PreconditionFailed", headers={"If-Match": "other"})
    future = formatdate(2_000_000_000, usegmt=True)
    past = formatdate(1_000_000_000, usegmt=True)
    async with manta.session.get(url, headers={"If-Modified-Since": future}) as r:
        assert r.status == 304
    async with manta.session.get(url, headers={"If-Modified-Since": past}) as r:
        assert r.status == 200
    await manta.error("GET", url, 412, "PreconditionFailed", headers={"If-Unmodified-Since": past})
    async with manta.session.head(url, headers={"If-Unmodified-Since": future}) as r:
        assert r.status == 200


async def test_conditional_put_and_delete(manta) -> None:
    url = f"{manta.stor}/c"
    await manta.error("PUT", url, 412, "PreconditionFailed", data=b"a",
                      headers={"If-Match": "nope"})
    etag = await manta.put(url, b"abc")
    await manta.error("PUT", url, 412, "PreconditionFailed", data=b"a",
                      headers={"If-None-Match": etag})
    await manta.error("PUT", url, 412, "PreconditionFailed", data=b"a",
                      headers={"If-None-Match": "*"})
    new = await manta.put(url, b"def", **{"If-Match": etag})
    await manta.error("DELETE", url, 412, "PreconditionFailed", headers={"If-Match": etag})
    async with manta.session.delete(url, headers={"If-Match": new}) as r:
        assert r.status == 204


async def test_not_acceptable(manta) -> None:
    await manta.put(f"{manta.stor}/t", b"x", **{"Content-Type": "text/plain"})
    await manta.error("GET", f"{manta.stor}/t", 406, "NotAcceptable",
                      headers={"Accept": "application/json"})
    async with manta.session.get(f"{manta.stor}/t", headers={"Accept": "text/*"}) as r:
        assert r.status == 200


# -- chattr ---------------------------------------------------------------------------------------
async def test_put_metadata_replaces_headers(manta) -> None:
    url = f"{manta.stor}/m"
    etag = await manta.put(url, b"abc", **{"m-old": "1", "Content-Type": "text/plain"})

    async def empty() -> AsyncIterator[bytes]:
        return
        yield b""

    async with manta.session.put(f"{url}?metadata=true", data=empty(),
                                 headers={"m-new": "2", "Content-Type": "text/csv"}) as r:
        assert r.status == 204, await r.text()
    async with manta.session.get(url) as r:
        assert await r.read() == b"abc"
        assert r.headers["Etag"] == etag
        assert r.headers["m-new"] == "2"
        assert "m-old" not in r.headers
        assert r.headers["Content-Type"] == "text/csv"
    await manta.error("PUT", f"{url}?metadata=true", 400, "InvalidUpdate",
                      headers={"Content-MD5": b64md5(b"")})
    await manta.error("PUT", f"{manta.stor}/missing?metadata=true", 404, "ResourceNotFound")


async def test_concurrent_puts_all_succeed(manta) -> None:
    async def one(i: int) -> str:
        return await manta.put(f"{manta.stor}/same", str(i).encode() * 100)

    etags = await asyncio.gather(*(one(i) for i in range(8)))
    async with manta.session.head(f"{manta.stor}/same") as r:
        assert r.headers["Etag"] in etags
    body = await manta.get(f"{manta.stor}/same")
    assert len(set(body)) == 1  # one whole version, never a mix
