"""Directories, listings and the path model (roots, percent-decoding)."""

from __future__ import annotations

import asyncio
import json

import pytest
from yarl import URL

from fake_manta import FakeMantaServer

LISTING_CT = "application/x-json-stream; type=directory"
DIR_CT = "application/json; type=directory"


# -- path model -----------------------------------------------------------------------------------
async def test_account_root_listing(manta) -> None:
    async with manta.session.get(f"{manta.url}/bob") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == LISTING_CT
        assert r.headers["Result-Set-Size"] == "4"
        rows = [json.loads(line) for line in (await r.text()).splitlines()]
    assert [row["name"] for row in rows] == ["public", "reports", "stor", "uploads"]
    assert rows[0] == {"name": "public", "type": "directory", "mtime": "2013-05-22T17:39:43.714Z"}
    async with manta.session.get(f"{manta.url}/bob", params={"marker": "reports"}) as r:
        names = [json.loads(line)["name"] for line in (await r.text()).splitlines()]
    assert names == ["stor", "uploads"]
    async with manta.session.head(f"{manta.url}/bob") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == LISTING_CT


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
async def test_account_root_is_read_only(manta, method: str) -> None:
    msg = await manta.error(method, f"{manta.url}/bob", 400, "OperationNotAllowedOnRootDirectory")
    assert msg == f"{method} is not allowed on /bob"


@pytest.mark.parametrize("tree", ["stor", "public", "reports", "uploads"])
async def test_trees_exist_and_are_empty(manta, tree: str) -> None:
    rows, total = await manta.ls(f"{manta.url}/bob/{tree}")
    assert rows == [] and total == 0
    async with manta.session.head(f"{manta.url}/bob/{tree}") as r:
        assert r.headers["Content-Type"] == LISTING_CT


async def test_delete_root_tree_refused(manta) -> None:
    await manta.error("DELETE", manta.stor, 400, "OperationNotAllowedOnRootDirectory")


async def test_mkdir_on_root_tree_is_a_noop(manta) -> None:
    await manta.mkdir(manta.stor)


async def test_percent_decoding_per_segment(manta) -> None:
    await manta.put(f"{manta.stor}/a%20b%C3%A9", b"x")
    rows, _ = await manta.ls(manta.stor)
    assert rows[0]["name"] == "a bé"
    assert await manta.get(f"{manta.stor}/a%20b%C3%A9") == b"x"


@pytest.mark.parametrize("segment", ["%zz", "%C3%28", "bad%"])
async def test_undecodable_path_is_invalid_resource(manta, segment: str) -> None:
    url = URL(f"{manta.stor}/{segment}", encoded=True)
    await manta.error("GET", url, 400, "InvalidResource")


async def test_trailing_and_double_slashes(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    await manta.put(f"{manta.stor}//d//x", b"abc")
    assert await manta.get(f"{manta.stor}/d/x/") == b"abc"


# -- mkdir ---------------------------------------------------------------------------------------
async def test_mkdir_is_idempotent(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    await manta.put(f"{manta.stor}/d/x", b"abc")
    await manta.mkdir(f"{manta.stor}/d")
    assert await manta.get(f"{manta.stor}/d/x") == b"abc"


async def test_mkdir_without_parent(manta) -> None:
    await manta.error("PUT", f"{manta.stor}/a/b", 404, "DirectoryDoesNotExist",
                      headers={"Content-Type": DIR_CT})


async def test_mkdir_replaces_object(manta) -> None:
    await manta.put(f"{manta.stor}/x", b"abc")
    await manta.mkdir(f"{manta.stor}/x")
    rows, total = await manta.ls(f"{manta.stor}/x")
    assert (rows, total) == ([], 0)


async def test_directory_headers_stored(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d", **{"m-owner": "team"})
    async with manta.session.head(f"{manta.stor}/d") as r:
        assert r.headers["m-owner"] == "team"
        assert "Etag" not in r.headers


# -- listings -----------------------------------------------------------------------------------
async def test_listing_rows_in_muskie_field_order(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    await manta.mkdir(f"{manta.stor}/d/sub")
    etag = await manta.put(f"{manta.stor}/d/a.txt", b"hello", **{
        "Content-Type": "text/plain", "Content-Disposition": "inline"})
    async with manta.session.get(f"{manta.stor}/d") as r:
        assert r.headers["Content-Type"] == LISTING_CT
        assert "Content-Length" not in r.headers
        lines = (await r.text()).splitlines()
    obj = json.loads(lines[0])
    assert list(obj) == ["name", "etag", "size", "type", "contentType", "contentDisposition",
                         "contentMD5", "mtime", "durability"]
    assert obj["etag"] == etag and obj["size"] == 5 and obj["durability"] == 2
    assert obj["mtime"].endswith("Z") and len(obj["mtime"]) == 24
    assert list(json.loads(lines[1])) == ["name", "type", "mtime"]


async def _fill(manta, n: int) -> list[str]:
    await manta.mkdir(f"{manta.stor}/many")
    names = [f"f{i:03d}" for i in range(n)]
    await asyncio.gather(*(manta.put(f"{manta.stor}/many/{name}", b"x") for name in names))
    return names


async def test_paging_with_inclusive_marker(manta) -> None:
    names = await _fill(manta, 30)
    rows, total = await manta.ls(f"{manta.stor}/many", limit="10")
    assert total == 30
    assert [r["name"] for r in rows] == names[:10]
    rows, total = await manta.ls(f"{manta.stor}/many", limit="10", marker=names[9])
    assert total == 30  # the whole directory, not the page
    assert [r["name"] for r in rows] == names[9:19]  # the marker row is repeated
    rows, _ = await manta.ls(f"{manta.stor}/many", marker="")
    assert len(rows) == 30


async def test_default_limit_is_256(manta) -> None:
    await _fill(manta, 260)
    rows, total = await manta.ls(f"{manta.stor}/many")
    assert (len(rows), total) == (256, 260)


@pytest.mark.parametrize("limit", ["0", "1025", "abc"])
async def test_invalid_limit(manta, limit: str) -> None:
    msg = await manta.error("GET", manta.stor, 400, "InvalidArgumentError",
                            params={"limit": limit})
    assert msg == f"limit={limit} is invalid: must be between [1, 1024]"


async def test_sort_orders_and_type_filters(manta) -> None:
    await manta.mkdir(f"{manta.stor}/s")
    for name in ("b", "a", "c"):
        await manta.put(f"{manta.stor}/s/{name}", b"x")
        await asyncio.sleep(0.002)  # distinct mtimes (ms resolution), not a timing assertion
    await manta.mkdir(f"{manta.stor}/s/dir")
    names = lambda rows: [r["name"] for r in rows]  # noqa: E731
    rows, _ = await manta.ls(f"{manta.stor}/s", sort_order="reverse")
    assert names(rows) == ["dir", "c", "b", "a"]
    rows, _ = await manta.ls(f"{manta.stor}/s", sort="mtime")
    assert names(rows) == ["dir", "c", "a", "b"]  # newest first
    rows, _ = await manta.ls(f"{manta.stor}/s", sort="mtime", sort_order="reverse")
    assert names(rows) == ["b", "a", "c", "dir"]
    marker = rows[1]["mtime"]
    rows, _ = await manta.ls(f"{manta.stor}/s", sort="mtime", marker=marker)
    assert names(rows) == ["a", "b"]  # newest first, from the marker's mtime (inclusive)
    rows, total = await manta.ls(f"{manta.stor}/s", dir="true")
    assert names(rows) == ["dir"] and total == 4
    rows, _ = await manta.ls(f"{manta.stor}/s", obj="true")
    assert names(rows) == ["a", "b", "c"]
    await manta.error("GET", f"{manta.stor}/s", 400, "InvalidParameter",
                      params={"sort": "mtime", "marker": "not-a-date"})


async def test_listing_ignores_conditionals(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    async with manta.session.get(f"{manta.stor}/d", headers={
            "If-None-Match": "*", "If-Modified-Since": "Tue, 01 Jan 2999 00:00:00 GMT"}) as r:
        assert r.status == 200


async def test_delete_directory(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    await manta.put(f"{manta.stor}/d/x", b"a")
    msg = await manta.error("DELETE", f"{manta.stor}/d", 400, "DirectoryNotEmpty")
    assert msg == "/bob/stor/d is not empty"
    async with manta.session.delete(f"{manta.stor}/d/x") as r:
        assert r.status == 204
    async with manta.session.delete(f"{manta.stor}/d") as r:
        assert r.status == 204
    await manta.error("HEAD", f"{manta.stor}/d", 404, "ResourceNotFound")


async def test_get_on_object_path_returns_object(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"body")
    async with manta.session.get(f"{manta.stor}/o", headers={
            "Accept": "application/x-json-stream, */*"}) as r:
        assert await r.read() == b"body"


async def test_public_tree_readable_anonymously() -> None:
    """With auth on (no_auth=False), an unsigned GET works under /public only."""
    import aiohttp

    async with FakeMantaServer(port=0) as srv, aiohttp.ClientSession() as s:
        srv.add_account("bob")
        async with s.get(f"{srv.url}/bob/public") as r:
            assert r.status == 200
        async with s.get(f"{srv.url}/bob/stor") as r:
            assert r.status == 403
        async with s.put(f"{srv.url}/bob/public/x", data=b"x") as r:
            assert r.status in (401, 403)
