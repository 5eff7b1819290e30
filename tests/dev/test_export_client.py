"""``cloudapi-gateway export``: resolves IMAGE as triton does and prints what triton prints.

The dev setup runs in this process (``gateway.cli.dev.running``: the same fake Manta, gateway,
account and demo image as ``cloudapi-gateway dev``), once for the module; the command's
``main`` runs in a worker thread (its own ``asyncio.run``) so that the loop keeps serving. The
same command as a subprocess is covered by ``test_devmode.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from gateway.cli.dev import DevEnvironment, running
from gateway.cli.export import ClientConfig, ClientError, CloudApiClient, key_matches
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
            if name.startswith(("SDC_", "TRITON_")):
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
    code, out, err = await run_client(["-j", env.image.uuid, "/dev/stor/b"], environ)
    assert code == 0, err
    first, second = out.splitlines()
    assert first == f"Exporting image {env.image.uuid} to /dev/stor/b"
    assert second == json.dumps(
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
