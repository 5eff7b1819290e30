"""Conformance: the official ``triton image export`` (npm ``triton``) against our gateway.

The dev setup (fake Manta on disk, gateway, account ``dev`` with an RSA key, demo image) runs
in this process; triton finds the key as it does on a workstation without an agent: in
``$HOME/.ssh`` (a temporary HOME). node-manta's ``mget`` then reads back what was exported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from gateway.cli.dev import DevEnvironment
from tests.support.export_clients import MANTA, mget_sha1, node_env
from tests.support.npm_tools import ensure_npm_package, run_cli

pytestmark = pytest.mark.clients

TRITON = ("triton", "7.17.0")


async def test_triton_image_export_then_mget(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, _app = dev
    triton = ensure_npm_package(*TRITON) / "triton"
    manta_bin = ensure_npm_package(*MANTA)
    environ = node_env(env, tmp_path / "home")

    code, out, err = await run_cli(
        [str(triton), "image", "export", "demo@1.0.0", "/dev/stor/t"], environ
    )
    assert code == 0, err + out
    assert out.splitlines() == [
        "Exporting image demo@1.0.0 to /dev/stor/t",
        f"    Manta URL: {env.manta_url}",
        "Manifest path: /dev/stor/t.imgmanifest",
        "   Image path: /dev/stor/t.zfs.gz",
    ]
    file_meta = env.image.manifest["files"][0]
    got = await mget_sha1(manta_bin, "/dev/stor/t.zfs.gz", environ, tmp_path / "file")
    assert got == file_meta["sha1"]
    assert (tmp_path / "file").read_bytes() == env.image.file.read_bytes()
    await mget_sha1(manta_bin, "/dev/stor/t.imgmanifest", environ, tmp_path / "manifest")
    manifest = json.loads((tmp_path / "manifest").read_text())
    assert manifest["uuid"] == env.image.uuid
    assert manifest["owner"] == env.image.manifest["owner"]
    assert manifest["files"][0]["sha1"] == file_meta["sha1"]

    # -j with a uuid, into a directory: NAME-VER names, one JSON line.
    code, out, err = await run_cli(
        [str(triton), "image", "export", "-j", env.image.uuid, "/dev/stor"], environ
    )
    assert code == 0, err + out
    lines = out.splitlines()
    assert lines[0] == f"Exporting image {env.image.uuid} to /dev/stor"
    assert json.loads(lines[1]) == {
        "manta_url": env.manta_url,
        "image_path": "/dev/stor/demo-1.0.0.zfs.gz",
        "manifest_path": "/dev/stor/demo-1.0.0.imgmanifest",
    }
    got = await mget_sha1(manta_bin, "/dev/stor/demo-1.0.0.zfs.gz", environ, tmp_path / "f2")
    assert got == file_meta["sha1"]


async def test_triton_reports_gateway_errors(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, _app = dev
    triton = ensure_npm_package(*TRITON) / "triton"
    environ = node_env(env, tmp_path / "home")
    code, _out, err = await run_cli(
        [str(triton), "image", "export", "demo", "/someoneelse/stor/x"], environ
    )
    assert code != 0
    # triton drops the code and wraps the message: "error exporting image to manta: <message>".
    assert "error exporting image to manta" in err
    assert "not the owner of Manta path /someoneelse/stor/x" in err
    code, _out, err = await run_cli(
        [str(triton), "image", "export", "00000000-0000-0000-0000-000000000000", "/dev/stor/x"],
        environ,
    )
    assert code != 0
    assert "image with id 00000000-0000-0000-0000-000000000000 was not found" in err
