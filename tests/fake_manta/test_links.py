"""SnapLinks: Manta v1 semantics by default, 403 SnaplinksDisabledError with snaplinks="v2"."""

from __future__ import annotations

import aiohttp

from fake_manta import FakeMantaServer

LINK_CT = "application/json; type=link"


async def _link(manta, dst: str, location: str | None) -> aiohttp.ClientResponse:
    headers = {"Content-Type": LINK_CT}
    if location is not None:
        headers["Location"] = location
    return await manta.session.put(dst, headers=headers)


async def test_link_shares_bytes_and_etag_and_outlives_source(manta) -> None:
    etag = await manta.put(f"{manta.stor}/src", b"payload", **{"m-k": "v",
                                                                "Content-Type": "text/plain"})
    r = await _link(manta, f"{manta.stor}/dst", "/bob/stor/src")
    assert r.status == 204, await r.text()
    assert r.headers["Etag"] == etag
    r.release()
    async with manta.session.delete(f"{manta.stor}/src") as d:
        assert d.status == 204
    async with manta.session.get(f"{manta.stor}/dst") as g:
        assert await g.read() == b"payload"
        assert g.headers["Etag"] == etag
        assert g.headers["m-k"] == "v"
        assert g.headers["Content-Type"] == "text/plain"


async def test_overwriting_source_keeps_link(manta) -> None:
    await manta.put(f"{manta.stor}/src", b"one")
    (await _link(manta, f"{manta.stor}/dst", "/bob/stor/src")).release()
    await manta.put(f"{manta.stor}/src", b"two")
    assert await manta.get(f"{manta.stor}/dst") == b"one"


async def test_link_percent_encoded_location(manta) -> None:
    await manta.put(f"{manta.stor}/a%20b", b"x")
    r = await _link(manta, f"{manta.stor}/l", "/bob/stor/a%20b")
    assert r.status == 204
    r.release()


async def test_link_errors(manta) -> None:
    await manta.mkdir(f"{manta.stor}/d")
    await manta.put(f"{manta.stor}/obj", b"x")
    cases = [
        (f"{manta.stor}/l", None, 400, "LocationRequired"),
        (f"{manta.stor}/l", "/bob/stor/missing", 404, "SourceObjectNotFound"),
        (f"{manta.stor}/l", "/bob/stor/d", 400, "LinkNotObject"),
        (f"{manta.stor}/l", "/bob/stor/%zz", 400, "InvalidLink"),
        (f"{manta.stor}/nodir/l", "/bob/stor/obj", 404, "DirectoryDoesNotExist"),
        (f"{manta.stor}/d", "/bob/stor/obj", 400, "OperationNotAllowedOnDirectory"),
    ]
    for dst, loc, status, code in cases:
        r = await _link(manta, dst, loc)
        assert r.status == status, (dst, loc, await r.text())
        assert (await r.json(content_type=None))["code"] == code


async def test_snaplinks_v2_disabled() -> None:
    async with FakeMantaServer(no_auth=True, snaplinks="v2") as srv, \
            aiohttp.ClientSession() as s:
        async with s.put(f"{srv.url}/bob/stor/src", data=b"x") as r:
            assert r.status == 204
        async with s.put(f"{srv.url}/bob/stor/dst", headers={
                "Content-Type": LINK_CT, "Location": "/bob/stor/src"}) as r:
            assert r.status == 403
            assert await r.json(content_type=None) == {
                "code": "SnaplinksDisabledError",
                "message": "Manta v2 does not support SnapLinks."}
