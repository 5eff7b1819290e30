"""Conformance: ``triton image export`` of an image kept in the object-store catalog.

The dev setup runs with ``catalog="objectstore"``: the demo image's file lives in the fake
Manta under ``/operator/stor/imgapi``, and the export is a SnapLink of it. node-manta's
``mget`` reads the export back, and ``mls -j`` shows the size and ``contentMD5`` the catalog
recorded at import: the store made the copy, and its own MD5 says it is the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.cli.dev import DevEnvironment, running
from gateway.server.appkeys import CATALOG
from tests.support.export_clients import MANTA, mget_sha1, node_env
from tests.support.npm_tools import ensure_npm_package, run_cli

pytestmark = pytest.mark.clients

TRITON = ("triton", "7.17.0")


@pytest.fixture
async def objectstore_dev(tmp_path: Path) -> AsyncIterator[tuple[DevEnvironment, web.Application]]:
    async with running(tmp_path / "data", port=0, manta_port=0, catalog="objectstore") as pair:
        yield pair


async def test_triton_export_of_a_stored_image_matches_its_recorded_md5(
    objectstore_dev: tuple[DevEnvironment, web.Application],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env, app = objectstore_dev
    triton = ensure_npm_package(*TRITON) / "triton"
    manta_bin = ensure_npm_package(*MANTA)
    environ = node_env(env, tmp_path / "home")
    image = await app[CATALOG].get_image(env.image.uuid)
    assert image is not None
    recorded = image.files[0]
    source = env.image.file.read_bytes()
    assert recorded.content_md5 == base64.b64encode(hashlib.md5(source).digest()).decode()

    code, out, err = await run_cli(
        [str(triton), "image", "export", "demo@1.0.0", "/dev/stor/t"], environ
    )
    assert code == 0, err + out
    assert out.splitlines()[-1] == "   Image path: /dev/stor/t.zfs.gz"
    reports = [r for r in caplog.records if getattr(r, "export", False)]
    assert [(r.outcome, r.method) for r in reports] == [("ok", "copy")]  # type: ignore[attr-defined]
    got = await mget_sha1(manta_bin, "/dev/stor/t.zfs.gz", environ, tmp_path / "file")
    assert got == recorded.sha1
    assert (tmp_path / "file").read_bytes() == source

    code, out, err = await run_cli([str(manta_bin / "mls"), "-j", "/dev/stor"], environ)
    assert code == 0, err
    entries = {e["name"]: e for e in map(json.loads, out.splitlines())}
    exported = entries["t.zfs.gz"]
    assert exported["size"] == recorded.size == len(source)
    assert exported["contentMD5"] == recorded.content_md5
    stored = await app[CATALOG].locate_file(image.uuid)  # type: ignore[attr-defined]
    assert stored.path.startswith(f"/operator/stor/imgapi/{image.uuid}/file0.")

