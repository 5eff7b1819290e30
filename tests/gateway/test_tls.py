"""TLS end to end, with certificates made at test time by ``cryptography``.

``cloudapi-gateway serve`` (a real child process) terminates HTTPS with the files of its
config and re-reads them on SIGHUP; the Manta plugin talks to an ``https://`` fake Manta
(``--tls-cert``/``--tls-key``), trusting the configured CA bundle, or anything when told to be
insecure, and nothing it cannot verify.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_manta import FakeMantaServer
from fake_manta.cli import tls_context
from gateway.server.app import create_app
from gateway.settings import Settings
from plugins.storage.manta import MantaTargetFactory
from tests.support.certificates import TestCA, peer_serial
from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import OPERATOR, TargetHarness, write_operator_key

#: Generous: the child imports the whole gateway on a loaded 2-core machine.
START_TIMEOUT = 60.0


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA.create(tmp_path / "pki")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A ``cloudapi-gateway serve`` child and the lines it has logged so far."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self.lines.append("<exited>")
            self._changed.notify_all()

    async def wait_for(self, text: str) -> str:
        async def found() -> str:
            async with self._changed:
                while True:
                    for line in self.lines:
                        if text in line:
                            return line
                    assert "<exited>" not in self.lines, "".join(self.lines)
                    await self._changed.wait()

        return await asyncio.wait_for(found(), START_TIMEOUT)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), START_TIMEOUT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader


def _config(tmp_path: Path, port: int, **tls: Path) -> Path:
    lines = [
        'host = "127.0.0.1"',
        f"port = {port}",
        f'data_dir = "{tmp_path / "data"}"',
        "load_entrypoints = false",
        *(f'{name} = "{path}"' for name, path in tls.items()),
    ]
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture
async def served(tmp_path: Path, ca: TestCA) -> AsyncIterator[tuple[Served, Path, Path, int]]:
    """``serve`` over HTTPS; yields (child, cert file, key file, first serial)."""
    cert, key, serial = ca.write_pair(tmp_path / "tls")
    port = _free_port()
    config = _config(tmp_path, port, tls_cert=cert, tls_key=key)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config), "--log-format", "text",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    child = Served(proc, port)
    try:
        line = await child.wait_for("Running on")
        assert f"https://127.0.0.1:{port}" in line
        yield child, cert, key, serial
    finally:
        await child.stop()


async def _handshake(port: int, ca: TestCA) -> tuple[int, str | None]:
    """A fresh TLS connection: (serial of the certificate shown, ALPN protocol chosen)."""
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    context.set_alpn_protocols(["h2", "http/1.1"])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return peer_serial(ssl_object.getpeercert(True)), ssl_object.selected_alpn_protocol()
    finally:
        writer.close()
        await writer.wait_closed()


async def _until_serial(port: int, ca: TestCA, wanted: int) -> None:
    """New connections show certificate ``wanted`` soon after the signal (bounded wait)."""
    for _ in range(int(START_TIMEOUT / 0.05)):
        serial, _alpn = await _handshake(port, ca)
        if serial == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"certificate {wanted} never shown")


async def test_serve_speaks_https_with_the_configured_certificate(
    served: tuple[Served, Path, Path, int], ca: TestCA
) -> None:
    child, _cert, _key, serial = served
    assert await _handshake(child.port, ca) == (serial, "http/1.1")  # HTTP/1.1, never h2
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    async with aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{child.port}/--ping"
        async with session.get(url, ssl=context) as response:
            assert response.status == 200
            assert await response.json() == {"ping": "pong", "cloudapi": {"versions": [
                "7.0.0", "7.1.0", "7.2.0", "7.3.0", "8.0.0", "9.0.0"]}}  # fmt: skip
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(url)  # the system's CAs do not know the test CA


async def test_sighup_rereads_the_files_and_keeps_them_if_broken(
    served: tuple[Served, Path, Path, int], ca: TestCA, tmp_path: Path
) -> None:
    child, cert, key, first = served
    cert_pem, key_pem, second = ca.issue()
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    child.proc.send_signal(signal.SIGHUP)
    await _until_serial(child.port, ca, second)
    await child.wait_for("TLS certificate re-read")
    assert second != first

    # A certificate whose key is not the one beside it: refused, the running pair stays.
    other_cert, _other_key, _third = ca.issue()
    cert.write_bytes(other_cert)
    child.proc.send_signal(signal.SIGHUP)
    await child.wait_for("kept the previous TLS certificate")
    assert (await _handshake(child.port, ca))[0] == second
    assert child.proc.returncode is None


async def test_serve_refuses_to_start_without_the_key(tmp_path: Path, ca: TestCA) -> None:
    cert, _key, _serial = ca.write_pair(tmp_path / "tls")
    config = _config(tmp_path, _free_port(), tls_cert=cert, tls_key=tmp_path / "nowhere.key")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
    assert proc.returncode == 2
    assert "nowhere.key does not exist" in err.decode()
    assert "Traceback" not in err.decode()


# --- the Manta plugin over HTTPS ---------------------------------------------------------------


@pytest.fixture
async def https_manta(tmp_path: Path, ca: TestCA) -> AsyncIterator[tuple[FakeMantaServer, Path]]:
    """A fake Manta serving HTTPS with a certificate of the test CA; yields it and its key."""
    cert, key, _serial = ca.write_pair(tmp_path / "manta-tls")
    key_file, public_line = write_operator_key(tmp_path / "keys")
    async with FakeMantaServer(ssl_context=tls_context(cert, key)) as fm:
        fm.add_account(OPERATOR, public_keys=[public_line], operator=True)
        fm.add_account("bob", public_keys=[])
        yield fm, key_file


async def _env(
    aiohttp_client: Any, tmp_path: Path, fm: FakeMantaServer, storage: dict[str, Any]
) -> ExportEnv:
    target = MantaTargetFactory().create(storage, Settings())
    await target.open()
    harness = TargetHarness(
        name="manta-https", storage=storage, target=target, login="bob", faults=fm.faults,
        has_parents=True, can_copy=True, leftovers=lambda: asyncio.sleep(0, []), server=fm,
    )  # fmt: skip
    return await make_env(aiohttp_client, harness, tmp_path / "gateway", load_entrypoints=False)


@pytest.mark.parametrize("trust", ["ca_file", "tls_insecure"])
async def test_export_to_an_https_manta(
    https_manta: tuple[FakeMantaServer, Path], ca: TestCA, tmp_path: Path, aiohttp_client: Any,
    trust: str,
) -> None:  # fmt: skip
    fm, key_file = https_manta
    assert fm.url.startswith("https://127.0.0.1:")
    extra = {"ca_file": str(ca.ca_file)} if trust == "ca_file" else {"tls_insecure": True}
    storage = {"kind": "manta", "url": fm.url, "user": OPERATOR, "key_file": str(key_file), **extra}
    env = await _env(aiohttp_client, tmp_path, fm, storage)
    try:
        image = await env.image(b"exported over https")
        answer = await env.export(image.uuid, env.path("over-tls"))
        assert answer.status == 200, answer.body
        assert await env.read(env.path("over-tls.zfs")) == b"exported over https"
    finally:
        await env.harness.target.close()


async def test_an_unverifiable_manta_certificate_is_refused(
    https_manta: tuple[FakeMantaServer, Path], tmp_path: Path, aiohttp_client: Any
) -> None:
    """Without the CA bundle (the system's CAs) the export fails cleanly, and nothing is sent."""
    fm, key_file = https_manta
    storage = {
        "kind": "manta", "url": fm.url, "user": OPERATOR, "key_file": str(key_file),
        "retries": 0,
    }  # fmt: skip
    app = create_app(Settings(data_dir=tmp_path / "g", storage=storage, load_entrypoints=False))
    client = await aiohttp_client(app)
    from tests.support.helpers import add_caller, import_image

    bob, signer = await add_caller(app, "bob")
    image = await import_image(app, bob, b"never sent")
    path = f"/bob/images/{image.uuid}?action=export&manta_path=%2Fbob%2Fstor%2Fx"
    response = await client.post(path, headers=signer.sign("POST", path, {}))
    body = await response.json()
    assert response.status in (502, 503), body
    assert body["code"] in ("StorageIsDown", "StorageError")
    assert "Traceback" not in body["message"]
    assert not [r for r in fm.requests if r.get("req", {}).get("method") == "PUT"]


def test_a_missing_ca_file_stops_the_start(tmp_path: Path) -> None:
    key_file, _public = write_operator_key(tmp_path / "keys")
    storage = {
        "kind": "manta", "url": "https://127.0.0.1:1", "user": OPERATOR,
        "key_file": str(key_file), "ca_file": str(tmp_path / "no-such-ca.pem"),
    }  # fmt: skip
    with pytest.raises(Exception, match=r"cannot load ca_file .*no-such-ca\.pem"):
        create_app(Settings(data_dir=tmp_path / "g", storage=storage, load_entrypoints=False))
