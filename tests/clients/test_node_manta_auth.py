"""Conformance: node-manta's auth paths (each key type, msign, failures) against the fake Manta.

These depend on auth, not on storage, so they run on the memory backend only (the module's own
``manta_server`` overrides the two-backend fixture of conftest).
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_manta import ThreadedFakeManta
from tests.support.node_manta_tools import ClientKey, NodeManta, start_manta

pytestmark = pytest.mark.clients


@pytest.fixture(scope="module")
def manta_server(client_keys: dict[str, ClientKey]) -> Iterator[ThreadedFakeManta]:
    server = start_manta(client_keys, None)
    try:
        yield server
    finally:
        server.stop()


def payload(size: int, seed: str) -> bytes:
    return (seed.encode() * (size // len(seed) + 1))[:size]


def ls_names(output: str) -> list[str]:
    return [line for line in output.splitlines() if line]


# --- failures, as the CLI reports them ----------------------------------------------------------
def test_missing_object(node_manta: NodeManta) -> None:
    proc = node_manta.run("mget", "/alice/stor/no/such/object", check=False)
    assert proc.returncode != 0
    assert b"ResourceNotFoundError" in proc.stderr, proc.stderr
    assert b"/alice/stor/no/such/object was not found" in proc.stderr


def test_mput_without_p_into_a_missing_directory(node_manta: NodeManta) -> None:
    proc = node_manta.run("mput", "/alice/stor/absent/dir/x", input=b"x", check=False)
    assert proc.returncode != 0
    assert b"DirectoryDoesNotExistError" in proc.stderr, proc.stderr


def test_key_the_server_does_not_know(
    node_manta: NodeManta, client_keys: dict[str, ClientKey]
) -> None:
    stranger = node_manta.as_key(client_keys["stranger"])
    proc = stranger.run("mls", "/alice/stor", check=False)
    assert proc.returncode != 0
    assert b"KeyDoesNotExistError" in proc.stderr, proc.stderr


def test_another_users_key(node_manta: NodeManta, client_keys: dict[str, ClientKey]) -> None:
    """bob's key presented as alice's: the server has no such key for alice."""
    proc = node_manta.as_key(client_keys["bob"]).run("mget", "/alice/stor/x", check=False)
    assert proc.returncode != 0
    assert b"KeyDoesNotExistError" in proc.stderr, proc.stderr


def test_another_logins_tree(node_manta: NodeManta, client_keys: dict[str, ClientKey]) -> None:
    bob = node_manta.as_key(client_keys["bob"], user="bob")
    bob.run("mput", "/bob/stor/private.txt", input=b"bob's\n")
    proc = node_manta.run("mget", "/bob/stor/private.txt", check=False)
    assert proc.returncode != 0
    assert b"AuthorizationFailedError" in proc.stderr, proc.stderr
    # mput HEADs first; a HEAD error has no body, so node names it from the status.
    proc = node_manta.run("mput", "/bob/stor/intruder.txt", input=b"x", check=False)
    assert proc.returncode != 0
    assert b"ForbiddenError" in proc.stderr, proc.stderr
    assert bob.run("mget", "/bob/stor/private.txt").stdout == b"bob's\n"


@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
def test_each_key_type(node_manta: NodeManta, client_keys: dict[str, ClientKey],
                       kind: str) -> None:
    cli = node_manta.as_key(client_keys[kind])
    base = f"/alice/stor/keys-{kind}"
    cli.run("mmkdir", "-p", base)
    data = payload(50_000, kind)
    cli.run("mput", f"{base}/obj", input=data)
    assert cli.run("mget", f"{base}/obj").stdout == data
    assert ls_names(cli.out("mls", base)) == ["obj"]
    url = cli.out("msign", f"{base}/obj").strip()
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == data


def test_no_auth_mode(node_manta_bin: Path, client_home: Path,
                      client_keys: dict[str, ClientKey]) -> None:
    """``fake-manta --no-auth`` with ``MANTA_NO_AUTH=true``: no key needed at all."""
    with ThreadedFakeManta(host="127.0.0.1", port=0, no_auth=True) as server:
        server.add_account("carol")
        cli = NodeManta(node_manta_bin, client_home, server.url, "carol", client_keys["rsa"])
        env = cli.env(MANTA_NO_AUTH="true")
        env.pop("MANTA_KEY_ID")
        cli.run("mmkdir", "-p", "/carol/stor/open", env=env)
        cli.run("mput", "/carol/stor/open/x", input=b"open\n", env=env)
        assert cli.run("mget", "/carol/stor/open/x", env=env).stdout == b"open\n"
        assert os.environ.get("MANTA_NO_AUTH") is None  # the test did not leak env
