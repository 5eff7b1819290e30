"""Bad request bodies and paths: always a 4xx JSON error with a code, never a 500 or a 502,
and nothing reaches storage (hardening items 6-9).

Bodies as restify 4's ``bodyReader`` reads them: ``Content-Encoding: gzip`` inflated (and a
body that is not gzip refused), ``Content-MD5`` checked over the bytes as sent. Control
characters and lone surrogates in ``manta_path`` are refused before the fake Manta behind the
gateway sees a single request. Errors of aiohttp's own HTTP parser are pinned as documented.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from yarl import URL

from tests.support.export_env import ExportEnv, make_env
from tests.support.helpers import EchoPlugin, import_image
from tests.support.storage_targets import manta_target

ECHO_BODY = b'{"action":"echo","word":"hi"}'


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
async def echo(app_client: Any, caller_factory: Any) -> Any:
    """alice on an app with the echo action (64 KiB body cap) and one image of hers."""
    client = await app_client(plugins=(EchoPlugin(),), max_body_size=64 * 1024)
    alice = await caller_factory(client, "alice")
    alice.image = await import_image(client.server.app, alice.account, b"bad input")
    return alice


async def _post(caller: Any, body: bytes, **headers: str) -> tuple[int, Any]:
    path = f"/my/images/{caller.image.uuid}"
    sent = {"Content-Type": "application/json", **headers}
    response = await caller.request("POST", path, headers=sent, data=body)
    raw = await response.read()
    assert response.content_type == "application/json", raw[:200]
    return response.status, json.loads(raw)


# --- item 6: Content-Encoding ------------------------------------------------------------------


async def test_a_gzip_body_is_inflated(echo: Any) -> None:
    status, body = await _post(echo, gzip.compress(ECHO_BODY), **{"Content-Encoding": "gzip"})
    assert status == 200, body
    assert body["params"] == {"action": "echo", "word": "hi"}


@pytest.mark.parametrize(
    "sent",
    [
        b"this is not gzip",
        gzip.compress(ECHO_BODY)[:-12],  # truncated: no end of stream
        b"\x1f\x8b\x08\x00" + b"\xff" * 40,  # a gzip header over garbage
    ],
    ids=["plain", "truncated", "garbage"],
)
async def test_a_body_that_is_not_gzip_is_400(echo: Any, sent: bytes) -> None:
    status, body = await _post(echo, sent, **{"Content-Encoding": "gzip"})
    assert status == 400
    assert body["code"] == "InvalidContent"
    assert "gzip" in body["message"]


async def test_a_gzip_bomb_stops_at_the_body_cap(echo: Any) -> None:
    """Inflated bytes count against ``max_body_size`` too (restify has no such bound)."""
    bomb = gzip.compress(b'{"action":"echo","word":"' + b"x" * (4 * 1024 * 1024) + b'"}')
    assert len(bomb) < 64 * 1024
    status, body = await _post(echo, bomb, **{"Content-Encoding": "gzip"})
    assert status == 413
    assert body["code"] == "RequestTooLarge"


@pytest.mark.parametrize("coding", ["deflate", "br", "gzip, gzip", "compress"])
async def test_other_content_encodings_are_415(echo: Any, coding: str) -> None:
    sent = zlib.compress(ECHO_BODY) if coding == "deflate" else ECHO_BODY
    status, body = await _post(echo, sent, **{"Content-Encoding": coding})
    assert status == 415
    assert body["code"] == "UnsupportedMediaType"
    assert "only gzip" in body["message"]


async def test_identity_is_no_encoding(echo: Any) -> None:
    status, body = await _post(echo, ECHO_BODY, **{"Content-Encoding": "identity"})
    assert status == 200, body


# --- item 8: Content-MD5 -------------------------------------------------------------------------


async def test_a_wrong_content_md5_is_bad_digest(echo: Any) -> None:
    wrong = md5_b64(b"something else")
    status, body = await _post(echo, ECHO_BODY, **{"Content-MD5": wrong})
    assert status == 400
    assert body == {
        "code": "BadDigest",
        "message": f"Content-MD5 '{wrong}' didn't match '{md5_b64(ECHO_BODY)}'",
    }


async def test_the_right_content_md5_passes(echo: Any) -> None:
    status, body = await _post(echo, ECHO_BODY, **{"Content-MD5": md5_b64(ECHO_BODY)})
    assert status == 200, body


async def test_content_md5_is_over_the_bytes_as_sent(echo: Any) -> None:
    """With gzip, the digest is of the compressed bytes, as restify hashes them."""
    packed = gzip.compress(ECHO_BODY)
    ok = {"Content-Encoding": "gzip", "Content-MD5": md5_b64(packed)}
    assert (await _post(echo, packed, **ok))[0] == 200
    inflated = {"Content-Encoding": "gzip", "Content-MD5": md5_b64(ECHO_BODY)}
    status, body = await _post(echo, packed, **inflated)
    assert (status, body["code"]) == (400, "BadDigest")


async def test_a_garbage_content_md5_is_not_echoed_whole(echo: Any) -> None:
    status, body = await _post(echo, ECHO_BODY, **{"Content-MD5": "A" * 5000})
    assert (status, body["code"]) == (400, "BadDigest")
    assert len(body["message"]) < 200


async def test_an_empty_body_is_not_digested(echo: Any) -> None:
    """restify checks Content-MD5 only when there is a body; the query string is used."""
    path = f"/my/images/{echo.image.uuid}?action=echo&word=q"
    response = await echo.request("POST", path, headers={"Content-MD5": md5_b64(b"x")}, data=b"")
    assert response.status == 200
    assert (await response.json())["params"]["word"] == "q"


# --- items 6-8 on a real export: nothing reaches storage --------------------------------------


@pytest.fixture
async def manta_env(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[ExportEnv]:
    async with manta_target(tmp_path) as harness:
        yield await make_env(aiohttp_client, harness, tmp_path / "gateway")


def _storage_requests(env: ExportEnv) -> list[dict[str, Any]]:
    return [r for r in env.harness.server.requests if "/stor" in r.get("req", {}).get("url", "")]


async def _post_export(env: ExportEnv, uuid: str, body: bytes, **headers: str) -> tuple[int, Any]:
    path = f"/bob/images/{uuid}"
    sent = env.signers["bob"].sign("POST", path, {"Content-Type": "application/json", **headers})
    response = await env.client.request("POST", URL(path, encoded=True), headers=sent, data=body)
    raw = await response.read()
    assert response.content_type == "application/json", raw[:200]
    return response.status, json.loads(raw)


async def test_a_wrong_content_md5_exports_nothing(manta_env: ExportEnv) -> None:
    image = await manta_env.image(b"digest")
    body = json.dumps({"action": "export", "manta_path": manta_env.path("md5")}).encode()
    before = len(_storage_requests(manta_env))
    status, answer = await _post_export(
        manta_env, image.uuid, body, **{"Content-MD5": md5_b64(b"not the body")}
    )
    assert (status, answer["code"]) == (400, "BadDigest")
    assert len(_storage_requests(manta_env)) == before
    assert not await manta_env.exists(manta_env.path("md5.imgmanifest"))
    # The same body with its own digest does export.
    own = {"Content-MD5": md5_b64(body)}
    status, answer = await _post_export(manta_env, image.uuid, body, **own)
    assert status == 200, answer
    assert await manta_env.exists(manta_env.path("md5.imgmanifest"))


async def test_a_gzip_export_body_works(manta_env: ExportEnv) -> None:
    image = await manta_env.image(b"gzip body")
    body = json.dumps({"action": "export", "manta_path": manta_env.path("gz")}).encode()
    status, answer = await _post_export(
        manta_env, image.uuid, gzip.compress(body), **{"Content-Encoding": "gzip"}
    )
    assert status == 200, answer
    assert await manta_env.read(manta_env.path("gz.zfs")) == b"gzip body"


# --- item 7: manta_path characters --------------------------------------------------------------

#: Raw JSON text of ``manta_path`` values (escapes as a client would send them).
BAD_JSON_PATHS = {
    "lone-surrogate": r"/bob/stor/a\ud800b",
    "low-surrogate": r"/bob/stor/\udc00",
    "newline": r"/bob/stor/a\nb",
    "carriage-return": r"/bob/stor/a\r",
    "tab": r"/bob/stor/a\tb",
    "escape": r"/bob/stor/\u001b[31m",
    "delete": r"/bob/stor/a\u007f",
    "c1-next-line": r"/bob/stor/a\u0085",
    "nul": r"/bob/stor/a\u0000",
}


@pytest.mark.parametrize("raw", BAD_JSON_PATHS.values(), ids=BAD_JSON_PATHS.keys())
async def test_control_characters_in_a_json_manta_path_are_422(
    manta_env: ExportEnv, raw: str
) -> None:
    image = await manta_env.image(b"ctl")
    body = b'{"action":"export","manta_path":"' + raw.encode() + b'"}'
    before = len(_storage_requests(manta_env))
    status, answer = await _post_export(manta_env, image.uuid, body)
    assert status == 422, answer
    assert answer["code"] == "InvalidParameter"
    assert answer["errors"] == [{"field": "manta_path", "code": "Invalid"}]
    assert "not a valid manta path" in answer["message"]
    assert len(_storage_requests(manta_env)) == before  # storage never touched


@pytest.mark.parametrize("char", ["\n", "\r\n", "\x01", "\x7f", "\x9b"])
async def test_control_characters_in_a_query_manta_path_are_422(
    manta_env: ExportEnv, char: str
) -> None:
    image = await manta_env.image(b"ctl-q")
    encoded = quote(f"/bob/stor/q{char}x", safe="")
    path = f"/bob/images/{image.uuid}?action=export&manta_path={encoded}"
    before = len(_storage_requests(manta_env))
    response = await manta_env.client.request(
        "POST", URL(path, encoded=True), headers=manta_env.signers["bob"].sign("POST", path, {})
    )
    answer = await response.json()
    assert response.status == 422, answer
    assert answer["code"] == "InvalidParameter"
    assert len(_storage_requests(manta_env)) == before


async def test_printable_unicode_in_manta_path_still_exports(manta_env: ExportEnv) -> None:
    image = await manta_env.image(b"unicode")
    answer = await manta_env.export(image.uuid, manta_env.path("d\u00e9j\u00e0-\u2603"))
    assert answer.status == 200, answer.body


# --- item 9: errors of aiohttp's HTTP parser (documented limit) -------------------------------


async def _raw_exchange(client: Any, request: bytes) -> bytes:
    """Send raw bytes on a fresh connection and return everything the server answers."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


PARSER_ERRORS = {
    "header-over-8190": b"GET /--ping HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "invalid-method": b"G<T /--ping HTTP/1.1\r\nHost: x\r\n\r\n",
    "invalid-header-character": b"GET /--ping HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n",
}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Any]:
    """The app behind ``serve``'s own connection handler (``GuardedSite``), on loopback: the
    handler that answers what aiohttp's parser refuses."""
    from aiohttp import web

    from gateway.server.app import create_app
    from gateway.server.connections import ConnectionGuard, GuardedSite
    from gateway.settings import Settings

    app = create_app(Settings(data_dir=tmp_path, metrics={"listen": ""}))
    runner = web.AppRunner(app)
    await runner.setup()
    guard = ConnectionGuard(
        head_timeout=5, fd_limit=1024, clock=asyncio.get_running_loop().time
    )
    site = GuardedSite(runner, "127.0.0.1", 0, guard=guard)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield type("Served", (), {"host": host, "port": port})()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("raw", PARSER_ERRORS.values(), ids=PARSER_ERRORS.keys())
async def test_serve_answers_parser_errors_as_json_without_echoing_them(
    served: Any, raw: bytes
) -> None:
    """``serve``'s handler: CloudAPI's JSON envelope, ``BadRequest``, none of the request's
    bytes in the answer, and the connection closed (``_raw_exchange`` reads to its end)."""
    answer = await _raw_exchange(served, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {
        "code": "BadRequest",
        "message": "the HTTP request could not be parsed",
    }
    for echoed in (b"aaaaaaaa", b"G<T", b"Bad\x01Name"):
        assert echoed not in answer
    ping = b"GET /--ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    again = await _raw_exchange(served, ping)
    assert again.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("raw", PARSER_ERRORS.values(), ids=PARSER_ERRORS.keys())
async def test_http_parser_errors_are_400_and_close(client: Any, raw: bytes) -> None:
    """An in-process server without ``serve``'s handler (aiohttp's own, as in tests and
    embedders): a plain-text 400 on a connection it then closes, never a 500; the server
    keeps serving."""
    answer = await _raw_exchange(client, raw)
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.split(b"\r\n", 1)[0] in (b"HTTP/1.0 400 Bad Request", b"HTTP/1.1 400 Bad Request")
    assert b"Content-Type: text/plain" in head
    assert (await client.get("/--ping")).status == 200
