"""Sub-users (keyId ``/:login/:user/keys/<fp>``), over HTTP against a running FakeMantaServer.

A sub-user signs with its own key and acts as its account: it reads and writes the account's
trees, not another login's; an unknown sub-user or a key of another user is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fake_manta import ADMIN_HEADERS, FakeMantaServer, ThreadedFakeManta
from gateway.httpsig import RequestSigner, md5_fingerprint, ssh_public_key_line

ALICE_KEY = ed25519.Ed25519PrivateKey.generate()
DEV_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ed25519.Ed25519PrivateKey.generate()
DIR_CT = "application/json; type=directory"


@pytest.fixture
async def server() -> AsyncIterator[FakeMantaServer]:
    async with FakeMantaServer(port=0) as srv:
        srv.add_account("alice", public_keys=[ssh_public_key_line(ALICE_KEY)])
        srv.add_account("bob")
        srv.add_user("alice", "dev", public_keys=[ssh_public_key_line(DEV_KEY)])
        srv.add_user("alice", "ci", public_keys=[ssh_public_key_line(OTHER_KEY)])
        yield srv


def dev_signer(key: object = DEV_KEY, user: str = "dev", login: str = "alice") -> RequestSigner:
    return RequestSigner(key, f"/{login}/{user}/keys/{md5_fingerprint(key)}")  # type: ignore[arg-type]


async def call(server: FakeMantaServer, method: str, path: str, signer: RequestSigner,
               data: bytes | None = None, headers: dict[str, str] | None = None
               ) -> tuple[int, str | None, bytes]:
    hdrs = signer.sign(method, path, dict(headers or {}))
    async with aiohttp.ClientSession() as http, \
            http.request(method, server.url + path, headers=hdrs, data=data) as resp:
        body = await resp.read()
        code = json.loads(body)["code"] if resp.status >= 400 and body else None
        return resp.status, code, body


async def test_subuser_writes_and_reads_its_accounts_tree(server: FakeMantaServer) -> None:
    signer = dev_signer()
    assert (await call(server, "PUT", "/alice/stor/d", signer,
                       headers={"Content-Type": DIR_CT}))[0] == 204
    assert (await call(server, "PUT", "/alice/stor/d/o", signer, data=b"hello"))[0] == 204
    status, _, body = await call(server, "GET", "/alice/stor/d/o", signer)
    assert (status, body) == (200, b"hello")
    # the account's own key sees what the sub-user wrote
    owner = RequestSigner.for_login(ALICE_KEY, "alice")
    assert (await call(server, "GET", "/alice/stor/d/o", owner))[2] == b"hello"


async def test_subuser_may_not_touch_another_login(server: FakeMantaServer) -> None:
    status, code, _ = await call(server, "GET", "/bob/stor", dev_signer())
    assert (status, code) == (403, "AuthorizationFailed")


async def test_unknown_subuser_is_user_does_not_exist(server: FakeMantaServer) -> None:
    status, code, _ = await call(server, "GET", "/alice/stor", dev_signer(user="nobody"))
    assert (status, code) == (403, "UserDoesNotExist")


async def test_subuser_with_another_users_key_is_key_does_not_exist(
    server: FakeMantaServer,
) -> None:
    # ci's key exists, but not under dev; nor does a sub-user key work as an account key
    status, code, _ = await call(server, "GET", "/alice/stor", dev_signer(key=OTHER_KEY))
    assert (status, code) == (403, "KeyDoesNotExist")
    account_form = RequestSigner.for_login(DEV_KEY, "alice")
    status, code, _ = await call(server, "GET", "/alice/stor", account_form)
    assert (status, code) == (403, "KeyDoesNotExist")


async def test_subuser_of_unknown_account(server: FakeMantaServer) -> None:
    with pytest.raises(Exception, match="nobody"):
        server.add_user("nobody", "dev", [ssh_public_key_line(DEV_KEY)])


async def test_admin_surface_adds_subusers(server: FakeMantaServer) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/_fake/users", headers=ADMIN_HEADERS, json={
                "login": "alice", "user": "ops", "keys": [ssh_public_key_line(key)]}) as r:
            assert r.status == 201
            assert (await r.json())["keys"] == [md5_fingerprint(key)]
        async with http.post(f"{server.url}/_fake/users", headers=ADMIN_HEADERS,
                             json={"login": "ghost", "user": "x", "keys": []}) as r:
            assert r.status == 400
        async with http.get(f"{server.url}/_fake/state", headers=ADMIN_HEADERS) as r:
            state = await r.json()
    alice = next(a for a in state["accounts"] if a["login"] == "alice")
    assert set(alice["users"]) == {"ci", "dev", "ops"}
    status, _, _ = await call(server, "GET", "/alice/stor", dev_signer(key=key, user="ops"))
    assert status == 200


def test_threaded_runner_adds_subusers() -> None:
    with ThreadedFakeManta() as t:
        t.add_account("carol")
        fps = t.add_user("carol", "dev", [ssh_public_key_line(DEV_KEY)])
        assert fps == [md5_fingerprint(DEV_KEY)]
        account = t.registry.get("carol")
        assert account is not None and set(account.users["dev"]) == set(fps)


def test_cli_user_flag(tmp_path: Path) -> None:
    """``fake-manta --user LOGIN/USER=PUBKEY_FILE``: the sub-user can sign requests."""
    import urllib.request

    pub = tmp_path / "dev.pub"
    pub.write_text(ssh_public_key_line(DEV_KEY) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_manta", "--port", "0", "--account", "alice",
         "--user", f"alice/dev={pub}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.split("listening on ", 1)[1].split()[0]
        signer = dev_signer()
        req = urllib.request.Request(url + "/alice/stor",
                                     headers=signer.sign("GET", "/alice/stor", {}))
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(10)
