"""CORS as muskie answers it (``lib/common.js`` ``addCustomHeaders``, ``lib/other.js``
``corsHandler``): stored headers filtered by the request's Origin, and OPTIONS preflights
granted only from the stored metadata (the parent directory's for a PUT)."""

from __future__ import annotations

CORS = {
    "access-control-allow-origin": "https://a.example, https://b.example",
    "access-control-allow-methods": "GET, PUT",
    "access-control-allow-headers": "content-type, x-custom",
    "access-control-expose-headers": "etag",
    "access-control-max-age": "600",
}


def cors_of(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("access-control-")}


async def test_get_without_origin_returns_stored_headers_verbatim(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"x", **CORS)
    async with manta.session.get(f"{manta.stor}/o") as r:
        assert r.status == 200
        assert cors_of(r.headers) == CORS


async def test_matching_origin_is_echoed_and_preflight_only_headers_withheld(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"x", **CORS)
    for method in ("GET", "HEAD"):
        async with manta.session.request(method, f"{manta.stor}/o",
                                         headers={"Origin": "https://b.example"}) as r:
            assert r.status == 200
            got = cors_of(r.headers)
            if method == "GET":
                assert got == {"access-control-allow-origin": "https://b.example",
                               "access-control-allow-methods": "GET, PUT",
                               "access-control-expose-headers": "etag"}
            else:  # HEAD is not in the stored methods, which come last: every CORS header goes
                assert got == {}


async def test_foreign_origin_gets_no_allow_origin(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"x", **{
        "access-control-allow-origin": "https://a.example",
        "access-control-expose-headers": "etag"})
    async with manta.session.get(f"{manta.stor}/o",
                                 headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 200
        # muskie drops the CORS headers set so far; expose-headers comes after allow-origin
        # in its order and still goes out (harmless: no browser reads it without the grant)
        assert cors_of(r.headers) == {"access-control-expose-headers": "etag"}
    await manta.put(f"{manta.stor}/o", b"x", **CORS)
    async with manta.session.get(f"{manta.stor}/o",
                                 headers={"Origin": "https://evil.example"}) as r:
        assert "access-control-allow-origin" not in cors_of(r.headers)


async def test_star_grants_any_origin_and_public_puts_default_to_star(manta) -> None:
    await manta.put(f"{manta.url}/bob/public/p", b"x")
    async with manta.session.get(f"{manta.url}/bob/public/p",
                                 headers={"Origin": "https://c.example"}) as r:
        assert cors_of(r.headers) == {"access-control-allow-origin": "https://c.example"}
    async with manta.session.get(f"{manta.url}/bob/public/p") as r:
        assert cors_of(r.headers) == {"access-control-allow-origin": "*"}


async def test_only_muskies_five_cors_headers_are_stored(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"x", **{"access-control-allow-credentials": "true"})
    async with manta.session.get(f"{manta.stor}/o") as r:
        assert cors_of(r.headers) == {}


async def test_put_echoes_the_origin(manta) -> None:
    async with manta.session.put(f"{manta.stor}/o", data=b"x",
                                 headers={"Origin": "https://a.example"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://a.example"
    async with manta.session.put(f"{manta.stor}/d", headers={
            "Content-Type": "application/json; type=directory",
            "Origin": "https://a.example"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://a.example"


async def test_preflight_grants_what_the_object_allows(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"x", **CORS)
    ask = {"Origin": "https://a.example", "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "x-custom"}
    async with manta.session.options(f"{manta.stor}/o", headers=ask) as r:
        assert r.status == 200
        assert cors_of(r.headers) == {
            "access-control-allow-origin": "https://a.example",
            "access-control-allow-methods": "GET, PUT",
            "access-control-allow-headers": "content-type, x-custom",
            "access-control-max-age": "600"}
    refused = [
        {**ask, "Origin": "https://evil.example"},
        {**ask, "Access-Control-Request-Method": "DELETE"},
        {**ask, "Access-Control-Request-Headers": "authorization"},
        {"Access-Control-Request-Method": "GET"},  # no Origin
    ]
    for headers in refused:
        async with manta.session.options(f"{manta.stor}/o", headers=headers) as r:
            assert r.status == 200
            assert cors_of(r.headers) == {}, headers


async def test_preflight_without_stored_cors_grants_nothing(manta) -> None:
    await manta.put(f"{manta.stor}/plain", b"x")
    async with manta.session.options(f"{manta.stor}/plain", headers={
            "Origin": "https://a.example", "Access-Control-Request-Method": "GET"}) as r:
        assert r.status == 200
        assert cors_of(r.headers) == {}


async def test_put_preflight_uses_the_parent_directory(manta) -> None:
    await manta.mkdir(f"{manta.stor}/up", **{
        "access-control-allow-origin": "*", "access-control-allow-methods": "PUT"})
    ask = {"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"}
    async with manta.session.options(f"{manta.stor}/up/new-object", headers=ask) as r:
        assert r.status == 200  # the target does not exist: the directory decides
        assert cors_of(r.headers) == {"access-control-allow-origin": "https://a.example",
                                      "access-control-allow-methods": "PUT"}
    async with manta.session.options(f"{manta.stor}/new-object", headers=ask) as r:
        assert r.status == 200  # /bob/stor allows nothing
        assert cors_of(r.headers) == {}


async def test_preflight_of_a_missing_target_is_404(manta) -> None:
    ask = {"Origin": "https://a.example", "Access-Control-Request-Method": "GET"}
    await manta.error("OPTIONS", f"{manta.stor}/missing", 404, "ResourceNotFound", headers=ask)
    await manta.error("OPTIONS", f"{manta.stor}/no/such/dir", 404, "DirectoryDoesNotExist",
                      headers={**ask, "Access-Control-Request-Method": "PUT"})
