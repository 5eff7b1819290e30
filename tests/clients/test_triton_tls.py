"""Conformance: the official ``triton`` against the gateway serving HTTPS itself.

The dev setup runs in this process; a second gateway on the same data directory listens with
TLS (``gateway.server.tls``, the context ``serve`` uses) and a certificate made now by a test
CA. ``SDC_TESTING=1`` is triton's switch for accepting a certificate it cannot verify; with
``NODE_EXTRA_CA_CERTS`` naming the test CA, triton verifies it and needs no such switch.
Without either it must refuse to talk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from gateway.cli.dev import DevEnvironment
from gateway.server.app import create_app
from gateway.server.appkeys import SETTINGS
from gateway.server.tls import server_context
from tests.support.certificates import TestCA
from tests.support.export_clients import node_env
from tests.support.npm_tools import ensure_npm_package, run_cli

pytestmark = pytest.mark.clients

TRITON = ("triton", "7.17.0")


@pytest.fixture
async def tls_gateway(
    dev: tuple[DevEnvironment, web.Application], tmp_path: Path
) -> AsyncIterator[tuple[DevEnvironment, str, TestCA]]:
    """(dev environment, https URL of a TLS gateway on the dev data, the CA that signed it)."""
    env, app = dev
    ca = TestCA.create(tmp_path / "pki")
    cert, key, _serial = ca.write_pair(tmp_path / "tls")
    settings = replace(app[SETTINGS], port=0, tls_cert=cert, tls_key=key)
    context = server_context(settings)
    assert context is not None
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        yield env, f"https://127.0.0.1:{port}", ca
    finally:
        await runner.cleanup()


async def test_triton_exports_over_tls(
    tls_gateway: tuple[DevEnvironment, str, TestCA], tmp_path: Path
) -> None:
    env, url, ca = tls_gateway
    triton = ensure_npm_package(*TRITON) / "triton"
    base = node_env(env, tmp_path / "home")

    testing = {**base, "SDC_URL": url, "SDC_TESTING": "1"}
    code, out, err = await run_cli(
        [str(triton), "image", "export", "demo@1.0.0", "/dev/stor/tls"], testing
    )
    assert code == 0, err + out
    assert "Manifest path: /dev/stor/tls.imgmanifest" in out.splitlines()

    trusted = {**base, "SDC_URL": url, "NODE_EXTRA_CA_CERTS": str(ca.ca_file)}
    code, out, err = await run_cli([str(triton), "image", "get", "demo@1.0.0"], trusted)
    assert code == 0, err + out
    assert f'"id": "{env.image.uuid}"' in out

    untrusted = {**base, "SDC_URL": url}
    code, out, err = await run_cli([str(triton), "image", "get", "demo@1.0.0"], untrusted)
    assert code != 0
    assert "certificate" in (err + out).lower()
