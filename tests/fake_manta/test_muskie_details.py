"""Details where the fake was more lenient than muskie (issue 15 items 6, 7, 9 and 10): deeply
nested JSON, ``..`` and odd part numbers in multipart uploads, an empty body with a wrong
Content-MD5, ``Connection: close`` for curl, the request id, ``RequestExpired`` and HEAD on a
part."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from email.utils import formatdate
from urllib.parse import quote, urlsplit

import pytest

from tests.fake_manta.test_uploads import create, upload_part

NESTED = b"[" * 20_000 + b"]" * 20_000  # under the 100 kB body limit
JSON = {"Content-Type": "application/json"}
WRONG_MD5 = base64.b64encode(hashlib.md5(b"not empty").digest()).decode()


# -- item 6: deeply nested JSON ------------------------------------------------------------------
async def test_nested_json_in_mpu_create_and_commit_is_400(manta) -> None:
    msg = await manta.error("POST", f"{manta.url}/bob/uploads", 400, "InvalidContent",
                            data=NESTED, headers=JSON)
    assert msg.startswith("Invalid JSON: ")
    upload = await create(manta)
    await manta.error("POST", f"{manta.url}{upload['partsDirectory']}/commit", 400,
                      "InvalidContent", data=NESTED, headers=JSON)
    await manta.error("POST", f"{manta.url}/bob/uploads", 400, "InvalidContent",
                      data=b"{not json", headers=JSON)


# -- item 7: leniency real Manta refuses -----------------------------------------------------
@pytest.mark.parametrize("object_path", [
    "/bob/stor/../x", "/bob/stor/../../alice/stor/x", "/bob/stor/./x", "/bob/stor/d/..",
])
async def test_dot_segments_in_mpu_object_path_are_refused(manta, object_path: str) -> None:
    msg = await manta.error("POST", f"{manta.url}/bob/uploads", 409,
                            "MultipartUploadInvalidArgument", json={"objectPath": object_path})
    assert msg == f"cannot create upload: Invalid objectPath{object_path}"


@pytest.mark.parametrize("part", [
    "01", "\u0966\u0966", "\u096e", "0x1", "1e2", "+1", " 1", "800",  # (Devanagari 00, 8)
])
async def test_part_numbers_are_plain_ascii_digits(manta, part: str) -> None:
    upload = await create(manta)
    url = f"{manta.url}{upload['partsDirectory']}/{quote(part)}"
    msg = await manta.error("PUT", url, 409, "MultipartUploadInvalidArgument", data=b"x")
    assert msg.endswith(f"{part} is not a valid part number")


async def _chunked_empty() -> object:
    if False:  # an async generator that yields nothing: aiohttp sends an empty chunked body
        yield b""


async def test_empty_streamed_put_with_a_wrong_md5_is_refused(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"before")
    msg = await manta.error("PUT", f"{manta.stor}/o", 400, "ContentMD5Mismatch",
                            data=_chunked_empty(), headers={"Content-MD5": WRONG_MD5})
    assert msg == f"Content-MD5 expected 1B2M2Y8AsgTpgAmY7PhCfg==, but was {WRONG_MD5}"
    assert await manta.get(f"{manta.stor}/o") == b"before"  # untouched
    upload = await create(manta)
    await manta.error("PUT", f"{manta.url}{upload['partsDirectory']}/0", 400,
                      "ContentMD5Mismatch", data=_chunked_empty(),
                      headers={"Content-MD5": WRONG_MD5})


async def test_declared_zero_length_put_skips_the_md5_check_as_muskie_does(manta) -> None:
    """``Content-Length: 0`` makes muskie store a zero-byte object without streaming it
    (``obj.js`` ``req._zero``), so its Content-MD5 is never compared."""
    async with manta.session.put(f"{manta.stor}/z", data=b"",
                                 headers={"Content-MD5": WRONG_MD5}) as r:
        assert r.status == 204
        assert r.headers["Computed-MD5"] == "1B2M2Y8AsgTpgAmY7PhCfg=="


# -- item 9: Connection: close for curl --------------------------------------------------------
async def _raw_get(url: str, user_agent: str) -> tuple[bytes, bytes]:
    """One keep-alive GET on a raw socket: (response head, what follows until EOF or 2 s)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"User-Agent: {user_agent}\r\nConnection: keep-alive\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    try:
        rest = await asyncio.wait_for(reader.read(), timeout=2)
    except TimeoutError:
        rest = b"<still open>"
    writer.close()
    return head, rest


async def test_curl_gets_connection_close_and_a_closed_socket(manta) -> None:
    await manta.put(f"{manta.stor}/o", b"abc")
    head, rest = await _raw_get(f"{manta.stor}/o", "curl/8.5.0")
    assert b"\r\nConnection: close\r\n" in head
    assert rest == b"abc"  # the body, then EOF: the server closed
    head, rest = await _raw_get(f"{manta.stor}/o", "node-manta/5")
    assert b"Connection: close" not in head
    assert rest.endswith(b"<still open>")


# -- item 10: request id, request age, HEAD on a part ----------------------------------------
async def test_client_request_id_is_logged_not_echoed(manta) -> None:
    async with manta.session.get(manta.stor, headers={"x-request-id": "mine"}) as r:
        answered = r.headers["x-request-id"]
    assert answered != "mine" and len(answered) == 36
    (record,) = [r for r in manta.server.requests if r["req_id"] == answered]
    assert record["req"]["headers"]["x-request-id"] == "mine"


async def test_old_date_is_request_expired(manta) -> None:
    old = formatdate(time.time() - 700, usegmt=True)
    msg = await manta.error("GET", manta.stor, 400, "RequestExpired", headers={"Date": old})
    assert msg == f"Date header {old} is too old"
    await manta.error("PUT", f"{manta.stor}/o", 400, "RequestExpired", headers={"Date": old},
                      data=b"x")
    # within muskie's 600 s, in the future, or unparsable (NaN in restify): not refused here
    for date in (formatdate(time.time() - 500, usegmt=True),
                 formatdate(time.time() + 3600, usegmt=True), "not a date"):
        async with manta.session.get(manta.stor, headers={"Date": date}) as r:
            assert r.status == 200, date
    await manta.error("GET", f"{manta.stor}/o", 404, "ResourceNotFound")


async def test_head_on_an_uploaded_part(manta) -> None:
    upload = await create(manta)
    etag = await upload_part(manta, upload, 0, b"part zero")
    url = f"{manta.url}{upload['partsDirectory']}"
    async with manta.session.head(f"{url}/0") as r:
        assert r.status == 200
        assert r.headers["Etag"] == etag
        assert r.headers["Content-Length"] == str(len(b"part zero"))
        answered = r.headers["x-request-id"]
    (record,) = [r for r in manta.server.requests if r["req_id"] == answered]
    assert record["route"] == "HeadUploadsStorage"
    await manta.error("HEAD", f"{url}/1", 404, "ResourceNotFound")
    await manta.error("GET", f"{url}/0", 405, "MethodNotAllowed")
