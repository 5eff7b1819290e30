"""The Manta storage plugin beyond the shared contract: settings, keys, signing, wire headers,
paging and error mapping, against the fake Manta (auth on) or a loopback request recorder."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.httpsig import PrivateKey, md5_fingerprint, ssh_public_key_line
from gateway.settings import Settings
from gateway.storage import (
    AccessDenied,
    DirectoryDoesNotExist,
    LocalFile,
    LocalFileBody,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
from plugins.storage import manta
from plugins.storage.manta import MantaConfig, MantaTarget, MantaTargetFactory, encode_path
from tests.support.storage_targets import LOGIN, OPERATOR, manta_target, write_operator_key


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def body_of(data: bytes, chunk: int | None = None) -> Any:
    async def chunks() -> AsyncIterator[bytes]:
        step = chunk or max(len(data), 1)
        for start in range(0, len(data), step):
            yield data[start : start + step]

    return chunks


def write_key(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    return path


# --- registration and settings -------------------------------------------------------------


def test_the_gateway_finds_the_manta_kind_among_its_default_plugins() -> None:
    from gateway.server.plugin_manager import Hooks, build_plugin_manager

    pm = build_plugin_manager(Settings(load_entrypoints=False), env={})
    factory = Hooks(pm).provided().storage_targets["manta"]
    assert isinstance(factory, MantaTargetFactory)


def test_the_plugin_registers_the_manta_kind() -> None:
    factories = manta.gateway_register_storage_targets()
    assert [f.name for f in factories] == ["manta"]


def test_settings_defaults(tmp_path: Path) -> None:
    key_file, _ = write_operator_key(tmp_path)
    target = MantaTargetFactory().create(
        {
            "kind": "manta",
            "url": "http://manta.local/",
            "user": "operator",
            "key_file": str(key_file),
        },
        Settings(),
    )
    assert isinstance(target, MantaTarget)
    assert target.public_url == "http://manta.local"
    assert target.config.retries == 3
    key = serialization.load_ssh_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert target.signer.key_id == f"/operator/keys/{md5_fingerprint(key)}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": None}, "url is required"),
        ({"url": "manta.local"}, "http:// or https://"),
        ({"user": ""}, "user is required"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"read_timeout": "long"}, "read_timeout must be a number"),
        ({"colour": "blue"}, "unknown setting(s) colour"),
        ({"key_file": "/nonexistent/key"}, "cannot load key_file"),
        ({"key_id": "00:11:22"}, "is not the MD5 fingerprint"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    key_file, _ = write_operator_key(tmp_path)
    config: dict[str, Any] = {
        "kind": "manta",
        "url": "https://manta.local",
        "user": "operator",
        "key_file": str(key_file),
    }
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MantaTargetFactory().create(config, Settings())


def test_settings_from_the_environment_are_strings(tmp_path: Path) -> None:
    """``CLOUDAPI_GATEWAY_STORAGE__RETRIES=5`` arrives as the string "5"."""
    key_file, _ = write_operator_key(tmp_path)
    config = MantaConfig.from_mapping(
        {
            "url": "https://m",
            "user": "operator",
            "key_file": str(key_file),
            "retries": "5",
            "read_timeout": "30.5",
            "tls_insecure": "true",
        }
    )
    assert (config.retries, config.read_timeout, config.tls_insecure) == (5, 30.5, True)
    with pytest.raises(ValueError, match="retries must be an integer"):
        MantaConfig.from_mapping({"url": "https://m", "user": "o", "key_file": "k", "retries": "x"})


def test_key_id_may_be_a_full_key_id_or_the_fingerprint(tmp_path: Path) -> None:
    key_file, _ = write_operator_key(tmp_path)
    key = serialization.load_ssh_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    fp = md5_fingerprint(key)
    base = {"url": "https://m", "user": "operator", "key_file": str(key_file)}
    by_fp = MantaTargetFactory().create({**base, "key_id": f"MD5:{fp}"}, Settings())
    full = MantaTargetFactory().create({**base, "key_id": f"/admin/keys/{fp}"}, Settings())
    assert isinstance(by_fp, MantaTarget) and isinstance(full, MantaTarget)
    assert by_fp.signer.key_id == f"/operator/keys/{fp}"
    assert full.signer.key_id == f"/admin/keys/{fp}"


def test_paths_are_encoded_per_segment() -> None:
    assert encode_path("/bob/stor/a b/c%d/ü?#") == "/bob/stor/a%20b/c%25d/%C3%BC%3F%23"
    assert encode_path("/bob//stor/x/") == "/bob/stor/x"
    with pytest.raises(ValueError):
        encode_path("bob/stor")
    assert (
        MantaConfig.from_mapping({"url": "http://m", "user": "u", "key_file": "k"}).list_page_size
        == 1024
    )


# --- signing against the fake Manta (auth on) ----------------------------------------------


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["rsa", "ecdsa-p256", "ecdsa-p384", "ed25519"],
)
async def test_every_key_type_signs_requests_manta_accepts(tmp_path: Path, make_key: Any) -> None:
    from fake_manta import FakeMantaServer

    key = make_key()
    key_file = write_key(tmp_path / "key", key)
    async with FakeMantaServer(port=0) as fm:
        fm.add_account(OPERATOR, public_keys=[ssh_public_key_line(key)], operator=True)
        fm.add_account(LOGIN)
        target = MantaTargetFactory().create(
            {"url": fm.url, "user": OPERATOR, "key_file": str(key_file)}, Settings()
        )
        await target.open()
        try:
            await target.mkdir(f"/{LOGIN}/stor/signed")
            await target.put_object(
                f"/{LOGIN}/stor/signed/x",
                body_of(b"ok"),
                size=2,
                content_md5=md5_b64(b"ok"),
                content_type="text/plain",
            )
            info = await target.stat(f"/{LOGIN}/stor/signed/x")
            assert info is not None and info.size == 2
        finally:
            await target.close()


async def test_an_unknown_key_is_access_denied(tmp_path: Path) -> None:
    from fake_manta import FakeMantaServer

    key_file, _ = write_operator_key(tmp_path)
    other = ed25519.Ed25519PrivateKey.generate()
    async with FakeMantaServer(port=0) as fm:
        fm.add_account(OPERATOR, public_keys=[ssh_public_key_line(other)], operator=True)
        fm.add_account(LOGIN)
        target = MantaTargetFactory().create(
            {"url": fm.url, "user": OPERATOR, "key_file": str(key_file)}, Settings()
        )
        await target.open()
        try:
            with pytest.raises(AccessDenied):
                await target.mkdir(f"/{LOGIN}/stor/x")
        finally:
            await target.close()


async def test_a_non_operator_cannot_write_another_tree(tmp_path: Path) -> None:
    from fake_manta import FakeMantaServer

    key_file, line = write_operator_key(tmp_path)
    async with FakeMantaServer(port=0) as fm:
        fm.add_account("mallory", public_keys=[line])
        fm.add_account(LOGIN)
        target = MantaTargetFactory().create(
            {"url": fm.url, "user": "mallory", "key_file": str(key_file)}, Settings()
        )
        await target.open()
        try:
            with pytest.raises(AccessDenied):
                await target.put_object(
                    f"/{LOGIN}/stor/x",
                    body_of(b"no"),
                    size=2,
                    content_md5=None,
                    content_type="text/plain",
                )
            await target.mkdir("/mallory/stor/mine")  # its own tree is fine
        finally:
            await target.close()


# --- behaviour against the fake Manta ------------------------------------------------------


async def test_listing_pages_with_the_marker_and_loses_nothing(tmp_path: Path) -> None:
    async with manta_target(tmp_path, list_page_size=3) as harness:
        directory = harness.path("paged")
        await harness.target.mkdir(directory)
        names = [f"n{i:02d}" for i in range(10)]
        for name in names:
            await harness.target.put_object(
                f"{directory}/{name}", body_of(b"x"), size=1, content_md5=None, content_type="a/b"
            )
        listed = [e.path async for e in await harness.target.list_directory(directory)]
        assert listed == [f"{directory}/{n}" for n in names]


async def test_an_unknown_manta_error_keeps_its_code_and_is_not_retried(tmp_path: Path) -> None:
    async with manta_target(tmp_path) as harness:
        rule = harness.faults.add(
            method="PUT", path=r"full$", status=507, code="NotEnoughSpace", times=5
        )
        with pytest.raises(StorageRequestFailed) as raised:
            await harness.target.put_object(
                harness.path("full"), body_of(b"x"), size=1, content_md5=None, content_type="a/b"
            )
        assert raised.value.code == "NotEnoughSpace"
        assert rule.hits == 1


async def test_a_refused_put_never_reads_the_body(tmp_path: Path) -> None:
    """Manta answers DirectoryDoesNotExist before 100 Continue: the body is not consumed."""
    started = []

    async def chunks() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"data"

    async with manta_target(tmp_path) as harness:
        with pytest.raises(DirectoryDoesNotExist):
            await harness.target.put_object(
                harness.path("missing", "x"), chunks, size=4, content_md5=None, content_type="a/b"
            )
    assert started == []


async def test_an_unreachable_manta_is_storage_unavailable(tmp_path: Path) -> None:
    key_file, _ = write_operator_key(tmp_path)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()  # the port is now closed: connections are refused
    target = MantaTargetFactory().create(
        {
            "url": f"http://127.0.0.1:{port}",
            "user": OPERATOR,
            "key_file": str(key_file),
            "retries": 1,
            "retry_delay": 0.01,
        },
        Settings(),
    )
    await target.open()
    try:
        with pytest.raises(StorageUnavailable):
            await target.stat(f"/{LOGIN}/stor/x")
    finally:
        await target.close()


# --- what goes on the wire (a loopback recorder, not Manta) --------------------------------


async def open_against_recorder(
    tmp_path: Path, handler: Any, *, expect_handler: Any = None, **settings: Any
) -> tuple[StorageTarget, web.AppRunner]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler, expect_handler=expect_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    key_file, _ = write_operator_key(tmp_path)
    target = MantaTargetFactory().create(
        {
            "url": f"http://127.0.0.1:{runner.addresses[0][1]}",
            "user": "op",
            "key_file": str(key_file),
            **settings,
        },
        Settings(),
    )
    await target.open()
    return target, runner


async def test_the_put_request_manta_clients_send(tmp_path: Path) -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, request.raw_path, dict(request.headers), body))
        return web.Response(status=204, headers={"Etag": "abc", "Computed-MD5": md5_b64(body)})

    target, runner = await open_against_recorder(tmp_path, record)
    data = b"x" * 100_000
    try:
        info = await target.put_object(
            "/bob/stor/my dir/img.zfs",
            body_of(data),
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
    finally:
        await target.close()
        await runner.cleanup()
    method, raw_path, headers, body = seen[0]
    assert (method, raw_path, body) == ("PUT", "/bob/stor/my%20dir/img.zfs", data)
    assert headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in headers
    assert headers["Content-MD5"] == md5_b64(data)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Expect"].lower() == "100-continue"
    assert headers["Authorization"].startswith('Signature keyId="/op/keys/')
    assert 'headers="date"' in headers["Authorization"]
    assert "Date" in headers
    assert info.etag == "abc" and info.content_md5 == md5_b64(data)


async def test_a_many_chunk_body_goes_out_with_content_length_not_chunked(tmp_path: Path) -> None:
    """aiohttp sends an async-iterator body chunked unless it is told the length."""
    seen: list[tuple[dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.content.read()  # not request.read(): that stops at 1 MiB
        seen.append((dict(request.headers), body))
        return web.Response(status=204)

    target, runner = await open_against_recorder(tmp_path, record)
    data = bytes(range(256)) * 20_000  # 5 MB in 1 MB chunks
    try:
        await target.put_object(
            "/bob/stor/big",
            body_of(data, 1_000_000),
            size=len(data),
            content_md5=None,
            content_type="application/octet-stream",
        )
    finally:
        await target.close()
        await runner.cleanup()
    headers, body = seen[0]
    assert headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in headers
    assert body == data


# --- Expect: 100-continue that never comes ---------------------------------------------------


async def test_a_server_that_never_sends_100_continue_still_gets_the_body(tmp_path: Path) -> None:
    """As curl does: after ``continue_timeout`` without an answer, the body goes out anyway."""
    seen: list[bytes] = []

    async def no_continue(request: web.Request) -> None:
        return None  # neither 100 Continue nor a refusal: the handler just reads

    async def record(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(status=204)

    target, runner = await open_against_recorder(
        tmp_path, record, expect_handler=no_continue, continue_timeout=0.05
    )
    data = b"y" * 300_000
    try:
        # Without the bound this waits forever; the guard only turns a hang into a failure.
        await asyncio.wait_for(
            target.put_object(
                "/bob/stor/no-continue",
                body_of(data, 65536),
                size=len(data),
                content_md5=md5_b64(data),
                content_type="application/octet-stream",
            ),
            timeout=60,
        )
    finally:
        await target.close()
        await runner.cleanup()
    assert seen == [data]


async def test_a_manta_that_stalls_before_100_continue_is_storage_unavailable(
    tmp_path: Path,
) -> None:
    """Fake Manta stalls every PUT (before its 100 Continue) for longer than ``read_timeout``
    plus ``continue_timeout``: each attempt sends its body after ``continue_timeout``, times out
    ``read_timeout`` later and the upload fails as StorageUnavailable, instead of waiting."""
    async with manta_target(
        tmp_path, continue_timeout=0.05, read_timeout=0.2, retries=1
    ) as harness:
        rule = harness.faults.add(method="PUT", path=r"/stalled$", stall=2.0, times=None)
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(
                harness.target.put_object(
                    harness.path("stalled"),
                    body_of(b"z" * 1000),
                    size=1000,
                    content_md5=md5_b64(b"z" * 1000),
                    content_type="application/octet-stream",
                ),
                timeout=60,
            )
        assert rule.hits == 2  # the first attempt and its one retry


def test_continue_timeout_is_a_setting(tmp_path: Path) -> None:
    key_file, _ = write_operator_key(tmp_path)
    base = {"url": "https://m", "user": "operator", "key_file": str(key_file)}
    assert MantaConfig.from_mapping(base).continue_timeout == 1.0
    assert MantaConfig.from_mapping({**base, "continue_timeout": "0.25"}).continue_timeout == 0.25
    with pytest.raises(ValueError, match="continue_timeout must be a number"):
        MantaConfig.from_mapping({**base, "continue_timeout": -1})


# --- local-file bodies: sendfile, with the last byte held back ---------------------------------


class _Refused(Exception):
    """The producer's own verdict against its file."""


async def _accept() -> None:
    return None


class FileBody:
    """A ``LocalFileBody`` over a file on disk whose verdict the test decides.

    ``calls`` counts the iterator's uses: zero means every byte went out through sendfile.
    """

    def __init__(
        self, path: Path, verdict: Callable[[], Awaitable[None]] = _accept, *, local: bool = True
    ) -> None:
        self.path = path
        self.verdict = verdict
        self.local = local
        self.calls = 0

    def __call__(self) -> AsyncIterator[bytes]:
        self.calls += 1
        data = self.path.read_bytes()
        return body_of(data, 65536)()

    @contextlib.asynccontextmanager
    async def local_file(self) -> AsyncIterator[LocalFile | None]:
        if not self.local:
            yield None
            return
        with self.path.open("rb") as fh:
            yield LocalFile(file=fh, size=self.path.stat().st_size, verified=self.verdict)


def _file_of(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    return path, data


def test_the_test_body_is_a_local_file_body(tmp_path: Path) -> None:
    assert isinstance(FileBody(tmp_path / "x"), LocalFileBody)


@pytest.mark.parametrize("local", [True, False], ids=["sendfile", "iterator"])
async def test_a_local_file_body_arrives_byte_for_byte(tmp_path: Path, local: bool) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.content.read()))
        return web.Response(status=204)

    target, runner = await open_against_recorder(tmp_path, record)
    path, data = _file_of(tmp_path, 3 * 1024 * 1024 + 17)
    body = FileBody(path, local=local)
    try:
        await target.put_object(
            "/bob/stor/sent",
            body,
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
    finally:
        await target.close()
        await runner.cleanup()
    headers, received = seen[0]
    assert received == data
    assert headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in headers
    assert headers["Expect"].lower() == "100-continue"
    assert body.calls == (0 if local else 1)


async def test_the_last_byte_waits_for_the_verdict(tmp_path: Path) -> None:
    """Manta commits an object only once it has Content-Length bytes: while the producer is
    still checking its file, exactly one byte is missing."""
    size = 2 * 1024 * 1024
    received = 0
    got_head = asyncio.Event()
    seen: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        nonlocal received
        parts = []
        while chunk := await request.content.readany():
            parts.append(chunk)
            received += len(chunk)
            if received >= size - 1:
                got_head.set()
        seen.append(b"".join(parts))
        return web.Response(status=204)

    checked: list[int] = []

    async def slow_verdict() -> None:
        await asyncio.wait_for(got_head.wait(), 30)
        await asyncio.sleep(0.2)  # time for a wrongly sent last byte to arrive
        checked.append(received)

    target, runner = await open_against_recorder(tmp_path, record)
    path, data = _file_of(tmp_path, size)
    try:
        await target.put_object(
            "/bob/stor/held",
            FileBody(path, slow_verdict),
            size=size,
            content_md5=None,
            content_type="application/octet-stream",
        )
    finally:
        await target.close()
        await runner.cleanup()
    assert checked == [size - 1]
    assert seen == [data]


async def test_a_refused_verdict_is_raised_as_it_is_and_manta_keeps_nothing(
    tmp_path: Path,
) -> None:
    verdicts = 0

    async def refuse() -> None:
        nonlocal verdicts
        verdicts += 1
        raise _Refused("the file is not what its manifest says")

    async with manta_target(tmp_path) as harness:
        path, data = _file_of(tmp_path, 1024 * 1024)
        with pytest.raises(_Refused):
            await harness.target.put_object(
                harness.path("refused"),
                FileBody(path, refuse),
                size=len(data),
                content_md5=md5_b64(data),
                content_type="application/octet-stream",
            )
        await asyncio.sleep(0.2)  # a commit in flight would land by now
        assert await harness.target.stat(harness.path("refused")) is None
    assert verdicts == 1  # the producer's error is final: no retry


async def test_a_file_shorter_than_its_size_is_refused_before_sending(tmp_path: Path) -> None:
    async with manta_target(tmp_path) as harness:
        path, _ = _file_of(tmp_path, 4096)
        with pytest.raises(StorageRequestFailed, match="4096 bytes, not 5000"):
            await harness.target.put_object(
                harness.path("short"),
                FileBody(path),
                size=5000,
                content_md5=None,
                content_type="application/octet-stream",
            )
        assert await harness.target.stat(harness.path("short")) is None


async def test_a_local_file_upload_cut_once_is_retried_from_the_start(tmp_path: Path) -> None:
    async with manta_target(tmp_path, backend="disk") as harness:
        path, data = _file_of(tmp_path, 3 * 1024 * 1024)
        rule = harness.faults.add(method="PUT", path=r"/cut$", cut_after=1024 * 1024, times=1)
        body = FileBody(path)
        await harness.target.put_object(
            harness.path("cut"),
            body,
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
        assert rule.hits == 1
        assert body.calls == 0
        stored = b"".join([c async for c in await harness.target.get_object(harness.path("cut"))])
        assert stored == data


async def test_a_manta_that_stops_reading_mid_body_fails_the_attempt(tmp_path: Path) -> None:
    """Each sendfile window must leave within ``read_timeout``: a server that stops reading
    after 1 MiB (the socket buffers then fill up) makes the upload StorageUnavailable,
    attempt after attempt, instead of hanging."""
    attempts = 0
    hang_up = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await reader.readexactly(1024 * 1024)
        await hang_up.wait()
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    key_file, _ = write_operator_key(tmp_path)
    port = server.sockets[0].getsockname()[1]
    target = MantaTargetFactory().create(
        {
            "url": f"http://127.0.0.1:{port}",
            "user": "op",
            "key_file": str(key_file),
            "read_timeout": 0.5,
            "retries": 1,
            "retry_delay": 0.01,
        },
        Settings(),
    )
    await target.open()
    path, data = _file_of(tmp_path, 64 * 1024 * 1024)
    try:
        with pytest.raises(StorageUnavailable, match="took in no"):
            await asyncio.wait_for(
                target.put_object(
                    "/bob/stor/stalled",
                    FileBody(path),
                    size=len(data),
                    content_md5=None,
                    content_type="application/octet-stream",
                ),
                timeout=60,
            )
    finally:
        hang_up.set()
        await target.close()
        server.close()
        await server.wait_closed()
    assert attempts == 2
