"""Shared set-up for the official Node.js client conformance tests (``pytest -m clients``).

node-manta is installed from npm into ``<repo>/.cache/npm`` (``tests/support/npm_tools.py``):
without node/npm these tests skip with a notice, and fail under ``CI=true``. Keys of each type are
generated here and written in OpenSSH format to a temporary ``$HOME/.ssh``, where smartdc-auth's
``homedir`` key-ring plugin finds them by fingerprint (no ssh-agent: SSH_AUTH_SOCK is unset).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fake_manta import ThreadedFakeManta
from gateway.cli.dev import DevEnvironment, running
from tests.support.node_manta_tools import NODE_MANTA, ClientKey, NodeManta, start_manta
from tests.support.npm_tools import ensure_npm_package


@pytest.fixture(scope="session")
def node_manta_bin() -> Path:
    """``node_modules/.bin`` holding mput, mget, mls, ... (installed once per cache)."""
    return ensure_npm_package(*NODE_MANTA)


@pytest.fixture(scope="session")
def client_keys() -> dict[str, ClientKey]:
    """alice's rsa/ecdsa/ed25519 keys, bob's key, and a key registered nowhere."""
    return {
        "rsa": ClientKey("rsa", rsa.generate_private_key(65537, 2048), "id_rsa"),
        "ecdsa": ClientKey("ecdsa", ec.generate_private_key(ec.SECP256R1()), "id_ecdsa"),
        "ed25519": ClientKey("ed25519", ed25519.Ed25519PrivateKey.generate(), "id_ed25519"),
        "bob": ClientKey("bob", ec.generate_private_key(ec.SECP256R1()), "id_bob"),
        "stranger": ClientKey("stranger", ed25519.Ed25519PrivateKey.generate(), "id_stranger"),
    }


@pytest.fixture(scope="session")
def client_home(
    tmp_path_factory: pytest.TempPathFactory, client_keys: dict[str, ClientKey]
) -> Path:
    """A HOME whose ``.ssh`` holds every key, in OpenSSH private-key format."""
    home = tmp_path_factory.mktemp("node-home")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    for key in client_keys.values():
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        path = ssh / key.filename
        path.write_bytes(pem)
        path.chmod(0o600)
        (ssh / f"{key.filename}.pub").write_text(key.public_line + "\n")
    return home


@pytest.fixture(scope="module", params=["memory", "disk"])
def manta_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    client_keys: dict[str, ClientKey],
) -> Iterator[ThreadedFakeManta]:
    """One fake Manta per backend for a whole module (tests use distinct paths)."""
    data_dir = tmp_path_factory.mktemp("manta-data") if request.param == "disk" else None
    # A small MPU minimum part size keeps mmpu tests small; the CLI never checks it.
    server = start_manta(client_keys, data_dir, min_part_size=64 * 1024)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def node_manta(
    node_manta_bin: Path,
    client_home: Path,
    manta_server: ThreadedFakeManta,
    client_keys: dict[str, ClientKey],
) -> NodeManta:
    """node-manta as alice with her RSA key (what most users have)."""
    return NodeManta(node_manta_bin, client_home, manta_server.url, "alice", client_keys["rsa"])


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[tuple[DevEnvironment, web.Application]]:
    """The dev setup (fake Manta, gateway, account ``dev``, demo image) in this process."""
    async with running(tmp_path / "data", port=0, manta_port=0) as pair:
        yield pair
