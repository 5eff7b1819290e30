"""``cloudapi-gateway export``: resolves IMAGE as triton does and prints what triton prints.

The dev setup runs in this process (``gateway.cli.dev.running``: the same fake Manta, gateway,
account and demo image as ``cloudapi-gateway dev``), once for the module; the command's
``main`` runs in a worker thread (its own ``asyncio.run``) so that the loop keeps serving. The
same command as a subprocess is covered by ``test_devmode.py``. The ssh-agent tests start a real
``ssh-agent`` and ``ssh-add`` keys to it (skipped, saying so, where it is not installed).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from gateway.cli.dev import DevEnvironment, running
from gateway.cli.export import (
    WAITING,
    ClientConfig,
    ClientError,
    CloudApiClient,
    client_timeout,
    elapsed_time,
    key_matches,
)
from gateway.cli.export import main as client_main
from gateway.server.appkeys import CATALOG

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dev(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[DevEnvironment, web.Application]]:
    data = tmp_path_factory.mktemp("dev") / "data"
    async with running(data, port=0, manta_port=0) as pair:
        yield pair


RunClient = Callable[[list[str], Mapping[str, str]], Awaitable[tuple[int, str, str]]]


def client_env(env: DevEnvironment, home: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(home),
        "SDC_URL": env.gateway_url,
        "SDC_ACCOUNT": "dev",
        "SDC_KEY_ID": env.dev_key.fingerprint,
        "SDC_KEY_PATH": str(env.dev_key.path),
        **extra,
    }


@pytest.fixture
def run_client(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[list[str], Mapping[str, str]], Awaitable[tuple[int, str, str]]]:
    """``cloudapi-gateway export ARGS`` with exactly ``env`` as its environment."""

    async def run(args: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
        for name in list(os.environ):
            if name.startswith(("SDC_", "TRITON_", "SSH_AUTH_SOCK")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = await asyncio.to_thread(client_main, args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def add_image(
    app: web.Application, env: DevEnvironment, version: str, published: str, name: str = "demo"
) -> dict[str, Any]:
    """Import another small image owned by dev; returns its manifest."""
    import uuid

    body = gzip.compress(f"{name}-{version}".encode() * 1000, mtime=0)
    manifest = {
        **env.image.manifest,
        "uuid": str(uuid.uuid4()),
        "name": name,
        "version": version,
        "published_at": published,
        "files": [
            {"sha1": hashlib.sha1(body).hexdigest(), "size": len(body), "compression": "gzip"}
        ],
    }

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    await app[CATALOG].import_image(manifest, chunks())
    return manifest


async def test_prints_triton_block_and_json(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path, run_client: RunClient
) -> None:
    env, _app = dev
    environ = client_env(env, tmp_path)
    code, out, err = await run_client(["demo@1.0.0", "/dev/stor/a"], environ)
    assert code == 0, err
    assert out == (
        "Exporting image demo@1.0.0 to /dev/stor/a\n"
        f"    Manta URL: {env.manta_url}\n"
        "Manifest path: /dev/stor/a.imgmanifest\n"
        "   Image path: /dev/stor/a.zfs.gz\n"
    )
    # -j: stdout is the JSON answer alone; the progress line goes to stderr (triton prints
    # both on stdout).
    code, out, err = await run_client(["-j", env.image.uuid, "/dev/stor/b"], environ)
    assert code == 0, err
    # (The servers run in this process: their log lines may share stderr.)
    assert f"Exporting image {env.image.uuid} to /dev/stor/b\n" in err
    (only,) = out.splitlines()
    assert only == json.dumps(
        {
            "manta_url": env.manta_url,
            "image_path": "/dev/stor/b.zfs.gz",
            "manifest_path": "/dev/stor/b.imgmanifest",
        },
        separators=(",", ":"),
    )


async def test_resolves_name_to_latest_published_short_id_and_name_at_version(
    dev: tuple[DevEnvironment, web.Application],
) -> None:
    env, app = dev
    newer = await add_image(app, env, "2.0.0", "2099-01-01T00:00:00.000Z")
    older = await add_image(app, env, "0.9.0", "2000-01-01T00:00:00.000Z")
    config = ClientConfig(env.gateway_url, "dev", env.dev_key.key, env.dev_key.fingerprint)
    import aiohttp

    async with aiohttp.ClientSession() as session:
        client = CloudApiClient(config, session)
        assert (await client.resolve_image("demo"))["id"] == newer["uuid"]
        assert (await client.resolve_image("demo@0.9.0"))["id"] == older["uuid"]
        assert (await client.resolve_image("demo@1.0.0"))["id"] == env.image.uuid
        short = older["uuid"].split("-")[0]
        assert (await client.resolve_image(short))["id"] == older["uuid"]
        with pytest.raises(ClientError) as missing:
            await client.resolve_image("nosuch")
        assert missing.value.code == "ResourceNotFound"
        assert 'short id "nosuch"' in missing.value.message
        with pytest.raises(ClientError) as absent:
            await client.resolve_image("00000000-0000-0000-0000-000000000000")
        assert absent.value.code == "ResourceNotFound"
        assert absent.value.status == 404


async def test_errors_go_to_stderr_with_the_cloudapi_code(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path, run_client: RunClient
) -> None:
    env, _app = dev
    environ = client_env(env, tmp_path)
    code, out, err = await run_client(["nosuch", "/dev/stor/x"], environ)
    assert code == 1
    assert "error (ResourceNotFound)" in err
    code, out, err = await run_client(["demo", "/someoneelse/stor/x"], environ)
    assert code == 1
    assert out.startswith("Exporting image demo to /someoneelse/stor/x")
    assert "error (NotMantaPathOwner)" in err
    code, out, err = await run_client(["--dry-run", "nosuch", "/dev/stor/x"], environ)
    assert (code, out, err) == (0, "Exporting image nosuch to /dev/stor/x\n", "")
    code, out, err = await run_client(["demo", "/dev/stor/x"], {**environ, "SDC_URL": ""})
    assert code == 2
    assert "SDC_URL" in err and out == ""


async def test_finds_the_key_in_home_ssh_by_fingerprint(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path, run_client: RunClient
) -> None:
    """No SDC_KEY_PATH: like node clients, look in ~/.ssh for the key SDC_KEY_ID names."""
    env, _app = dev
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "unrelated").write_text("not a key\n")
    shutil.copy(env.operator_key.path, ssh / "id_operator")
    shutil.copy(env.dev_key.path, ssh / "id_rsa")
    environ = client_env(env, tmp_path / "home")
    environ["SDC_KEY_PATH"] = ""
    code, out, err = await run_client(["demo", "/dev/stor/viahome"], environ)
    assert code == 0, err
    assert out.splitlines()[-1] == "   Image path: /dev/stor/viahome.zfs.gz"
    (ssh / "id_rsa").unlink()
    code, out, err = await run_client(["demo", "/dev/stor/viahome"], environ)
    assert code == 2
    assert "KeyNotFound" in err and env.dev_key.fingerprint in err


async def test_key_matches_md5_and_sha256_fingerprints(tmp_path: Path) -> None:
    import base64

    from gateway.cli.dev import ensure_key
    from gateway.httpsig import ssh_public_key_line

    key = ensure_key(tmp_path / "k").key
    blob = base64.b64decode(ssh_public_key_line(key).split()[1])
    sha256 = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    from gateway.httpsig import md5_fingerprint

    assert key_matches(key, md5_fingerprint(key))
    assert key_matches(key, "MD5:" + md5_fingerprint(key).upper())
    assert key_matches(key, sha256)
    assert not key_matches(key, "00:" * 15 + "00")


# --- --timeout and the elapsed time ---------------------------------------------------------------


async def test_timeout_bounds_the_wait_for_an_answer(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path, run_client: RunClient
) -> None:
    """A server that accepts and never answers: ``--timeout`` ends the wait with one line."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env, _app = dev
    environ = client_env(env, tmp_path, SDC_URL=f"http://127.0.0.1:{port}")
    try:
        start = time.monotonic()
        code, out, err = await run_client(["--timeout", "0.5", "demo", "/dev/stor/t"], environ)
        elapsed = time.monotonic() - start
    finally:
        server.close()
        await server.wait_closed()
    assert code == 1
    assert out == "Exporting image demo to /dev/stor/t\n"
    assert "error (Timeout)" in err and "no answer within 0.5 s" in err
    assert len(err.splitlines()) == 1
    assert elapsed < 10


async def test_timeout_flag_sets_connect_and_read_timeouts() -> None:
    default = client_timeout(None)
    assert (default.total, default.sock_connect, default.sock_read) == (None, 30.0, None)
    given = client_timeout(5.0)
    assert (given.total, given.sock_connect, given.sock_read) == (None, 5.0, 5.0)


async def test_a_timeout_of_zero_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        client_main(["--timeout", "0", "demo", "/dev/stor/x"])
    assert exit_info.value.code == 2
    assert "must be a number of seconds above 0" in capsys.readouterr().err


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def test_elapsed_time_is_shown_on_a_terminal_only() -> None:
    tty = Terminal()
    async with elapsed_time(tty, interval=0.05):
        await asyncio.sleep(0.3)
    text = tty.getvalue()
    assert f"\r{WAITING} 0s" in text
    lines = text.split("\r")
    assert lines[-1] == "" and lines[-2].strip() == ""  # erased at the end
    assert len(lines[-2]) == len(f"{WAITING} 0s")

    plain = io.StringIO()
    async with elapsed_time(plain, interval=0.05):
        await asyncio.sleep(0.2)
    assert plain.getvalue() == ""


# --- keys from ssh-agent --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_agent() -> Iterator[str]:
    """A real ``ssh-agent`` on a socket of its own (``ssh-agent -D -a SOCKET``)."""
    agent, add = shutil.which("ssh-agent"), shutil.which("ssh-add")
    if agent is None or add is None:
        pytest.skip("ssh-agent/ssh-add are not installed: export's ssh-agent path is not tested")
    # A short directory: a unix socket's path must stay under 108 bytes.
    directory = tempfile.mkdtemp(prefix="agent-", dir="/tmp")
    socket = os.path.join(directory, "agent.sock")
    proc = subprocess.Popen(
        [agent, "-D", "-a", socket], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ssh-agent did not start (exit status {proc.poll()})")
            time.sleep(0.05)
        yield socket
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def ssh_add(socket: str, key_file: Path) -> None:
    result = subprocess.run(
        ["ssh-add", str(key_file)],
        env={**os.environ, "SSH_AUTH_SOCK": socket},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def new_key_file(path: Path, kind: str) -> Path:
    """An unencrypted OpenSSH private key of ``kind`` (``ecdsa`` P-256 or ``ed25519``), 0600."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ecdsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


async def test_uses_the_key_ssh_agent_holds(
    dev: tuple[DevEnvironment, web.Application],
    tmp_path: Path,
    run_client: RunClient,
    ssh_agent: str,
) -> None:
    """No key file, an empty ~/.ssh: the key SDC_KEY_ID names comes from ssh-agent, as with
    triton; named by its MD5 or its SHA256 fingerprint."""
    env, _app = dev
    ssh_add(ssh_agent, env.dev_key.path)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    environ = client_env(env, home, SDC_KEY_PATH="", SSH_AUTH_SOCK=ssh_agent)
    code, out, err = await run_client(["-j", "demo", "/dev/stor/viaagent"], environ)
    assert code == 0, err
    assert json.loads(out)["image_path"] == "/dev/stor/viaagent.zfs.gz"

    from gateway.cli.agent import AgentKey, list_keys

    held_keys = await list_keys(ssh_agent)
    (held,) = [k for k in held_keys if k.md5_fingerprint == env.dev_key.fingerprint]
    assert isinstance(held, AgentKey)
    environ["SDC_KEY_ID"] = held.sha256_fingerprint
    code, out, err = await run_client(["demo", "/dev/stor/viasha256"], environ)
    assert code == 0, err


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
async def test_agent_keys_of_every_kind_sign(
    dev: tuple[DevEnvironment, web.Application],
    tmp_path: Path,
    run_client: RunClient,
    ssh_agent: str,
    kind: str,
) -> None:
    """ECDSA signatures come from the agent as (r, s) and go out as DER; Ed25519 as they are."""
    from gateway.httpsig import load_private_key, md5_fingerprint, ssh_public_key_line
    from gateway.server.accounts import AccountStore

    env, _app = dev
    key_file = new_key_file(tmp_path / f"id_{kind}", kind)
    key = load_private_key(key_file)
    store = AccountStore(env.data_dir / "gateway" / "accounts.sqlite")
    try:
        await store.add_key("dev", ssh_public_key_line(key, kind))
    finally:
        await store.close()
    ssh_add(ssh_agent, key_file)
    environ = client_env(
        env, tmp_path, SDC_KEY_PATH="", SDC_KEY_ID=md5_fingerprint(key), SSH_AUTH_SOCK=ssh_agent
    )
    code, out, err = await run_client(["-j", "demo", f"/dev/stor/{kind}"], environ)
    assert code == 0, err
    assert json.loads(out)["manifest_path"] == f"/dev/stor/{kind}.imgmanifest"


async def test_a_key_in_neither_home_nor_the_agent_is_one_line(
    dev: tuple[DevEnvironment, web.Application],
    tmp_path: Path,
    run_client: RunClient,
    ssh_agent: str,
) -> None:
    env, _app = dev
    environ = client_env(
        env, tmp_path, SDC_KEY_PATH="", SDC_KEY_ID="00:" * 15 + "00", SSH_AUTH_SOCK=ssh_agent
    )
    code, out, err = await run_client(["demo", "/dev/stor/x"], environ)
    assert (code, out) == (2, "")
    assert "error (KeyNotFound)" in err and "ssh-agent" in err
    assert len(err.splitlines()) == 1
    # An agent that is not there is said so, in one line too.
    environ["SSH_AUTH_SOCK"] = str(tmp_path / "no-agent.sock")
    code, out, err = await run_client(["demo", "/dev/stor/x"], environ)
    assert code == 2 and "error (AgentError)" in err and len(err.splitlines()) == 1
