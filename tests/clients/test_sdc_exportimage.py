"""Conformance: the official ``sdc-exportimage`` (npm ``smartdc``) against our gateway.

sdc-exportimage sends ``manta_path`` in the query string (triton sends a JSON body) and prints
the answer as indented JSON. The key is found in ``$HOME/.ssh`` as on a workstation without an
agent; node-manta's ``mget`` reads back what was exported.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from aiohttp import web

from gateway.cli.dev import DevEnvironment
from tests.support.export_clients import MANTA, node_env
from tests.support.npm_tools import ensure_npm_package, run_cli

pytestmark = pytest.mark.clients

SMARTDC = ("smartdc", "9.0.1")


async def test_sdc_exportimage_template_and_directory_then_mget(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, _app = dev
    sdc = ensure_npm_package(*SMARTDC) / "sdc-exportimage"
    mget = ensure_npm_package(*MANTA) / "mget"
    environ = node_env(env, tmp_path / "home")

    code, out, err = await run_cli([str(sdc), "--mantaPath=/dev/stor/s", env.image.uuid], environ)
    assert code == 0, err + out
    expected = {
        "manta_url": env.manta_url,
        "image_path": "/dev/stor/s.zfs.gz",
        "manifest_path": "/dev/stor/s.imgmanifest",
    }
    assert out == json.dumps(expected, indent=2) + "\n"

    code, out, err = await run_cli([str(sdc), "--mantaPath=/dev/stor/", env.image.uuid], environ)
    assert code == 0, err + out
    assert json.loads(out)["image_path"] == "/dev/stor/demo-1.0.0.zfs.gz"

    file_meta = env.image.manifest["files"][0]
    for path in ("/dev/stor/s.zfs.gz", "/dev/stor/demo-1.0.0.zfs.gz"):
        dest = tmp_path / "got"
        code, _out, err = await run_cli([str(mget), "-q", "-o", str(dest), path], environ)
        assert code == 0, err
        assert hashlib.sha1(dest.read_bytes()).hexdigest() == file_meta["sha1"]
        assert dest.stat().st_size == file_meta["size"]
    dest = tmp_path / "manifest"
    code, _out, err = await run_cli(
        [str(mget), "-q", "-o", str(dest), "/dev/stor/s.imgmanifest"], environ
    )
    assert code == 0, err
    manifest = json.loads(dest.read_text())
    assert (manifest["uuid"], manifest["name"], manifest["version"]) == (
        env.image.uuid,
        "demo",
        "1.0.0",
    )


async def test_sdc_exportimage_errors_exit_3_with_the_code(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> None:
    env, _app = dev
    sdc = ensure_npm_package(*SMARTDC) / "sdc-exportimage"
    environ = node_env(env, tmp_path / "home")
    code, _out, err = await run_cli(
        [str(sdc), "--mantaPath=/someoneelse/stor/x", env.image.uuid], environ
    )
    assert code == 3, err
    assert "sdc-exportimage: error (NotMantaPathOwner)" in err
    code, _out, err = await run_cli(
        [str(sdc), "--mantaPath=/dev/stor/x", "00000000-0000-0000-0000-000000000000"], environ
    )
    assert code == 3, err
    assert "error (ResourceNotFound)" in err
