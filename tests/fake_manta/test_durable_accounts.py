"""``--data-dir`` keeps accounts, keys, sub-users and operators across restarts.

Each test stops a server and starts a new one on the same data directory without naming any
account again, then signs real requests against it (the gateway's RequestSigner, as the other
auth tests do), in-process and through the ``fake-manta`` command.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fake_manta import AccountRegistry, FakeMantaServer
from fake_manta.account_file import ACCOUNTS_FILE, AccountFileError
from gateway.httpsig import RequestSigner, md5_fingerprint, ssh_public_key_line

ALICE = ec.generate_private_key(ec.SECP256R1())
CI = ed25519.Ed25519PrivateKey.generate()
OPS = ec.generate_private_key(ec.SECP256R1())
#: a fake-manta process answers its banner within this (node-free; generous for a loaded box)
START_TIMEOUT = 60.0


async def _put(http: aiohttp.ClientSession, url: str, path: str, signer: RequestSigner,
               body: bytes) -> int:
    headers = signer.sign("PUT", path, {"Content-Type": "application/octet-stream"})
    async with http.put(url + path, data=body, headers=headers) as resp:
        return resp.status


async def _get(http: aiohttp.ClientSession, url: str, path: str,
               signer: RequestSigner) -> tuple[int, bytes]:
    async with http.get(url + path, headers=signer.sign("GET", path)) as resp:
        return resp.status, await resp.read()


async def test_accounts_keys_subusers_and_operators_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "manta"
    async with FakeMantaServer(data_dir=data_dir) as first:
        first.add_account("alice", [ssh_public_key_line(ALICE, "alice@laptop")])
        first.add_user("alice", "ci", [ssh_public_key_line(CI)])
        first.add_account("ops", [ssh_public_key_line(OPS)], operator=True)
        first.add_account("idle")

    alice = RequestSigner.for_login(ALICE, "alice")
    ci = RequestSigner(CI, f"/alice/ci/keys/{md5_fingerprint(CI)}")
    ops = RequestSigner.for_login(OPS, "ops")
    async with FakeMantaServer(data_dir=data_dir) as second, aiohttp.ClientSession() as http:
        assert second.registry.logins() == ["alice", "idle", "ops"]
        assert await _put(http, second.url, "/alice/stor/a", alice, b"by alice") == 204
        assert await _put(http, second.url, "/alice/stor/b", ci, b"by ci") == 204
        # the operator bit survived: ops may write into alice's tree
        assert await _put(http, second.url, "/alice/stor/c", ops, b"by ops") == 204
        assert await _get(http, second.url, "/alice/stor/b", alice) == (200, b"by ci")
        # ...and alice is still no operator
        assert await _put(http, second.url, "/ops/stor/x", alice, b"no") == 403


async def test_the_file_holds_public_keys_only(tmp_path: Path) -> None:
    async with FakeMantaServer(data_dir=tmp_path) as server:
        server.add_account("alice", [ssh_public_key_line(ALICE, "alice@laptop")])
        server.add_user("alice", "ci", [ssh_public_key_line(CI)])
    doc = json.loads((tmp_path / ACCOUNTS_FILE).read_text())
    assert doc == {"version": 1, "accounts": [{
        "login": "alice", "operator": False,
        "keys": [ssh_public_key_line(ALICE, "alice@laptop")],
        "users": {"ci": [ssh_public_key_line(CI)]},
    }]}


def test_accounts_given_again_are_merged_not_duplicated(tmp_path: Path) -> None:
    line = ssh_public_key_line(ALICE)
    first = AccountRegistry(tmp_path / ACCOUNTS_FILE)
    first.add_account("alice")
    first.add_key("alice", line)
    second = AccountRegistry()
    second.add_account("alice", operator=True)  # as `--operator alice` on the next start
    second.persist_to(tmp_path / ACCOUNTS_FILE)
    account = second.get("alice")
    assert account is not None
    assert (account.operator, list(account.keys)) == (True, [md5_fingerprint(ALICE)])


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / ACCOUNTS_FILE
    registry = AccountRegistry(path)
    registry.add_account("alice")
    before = path.read_bytes()
    path.unlink()
    path.mkdir()  # the rename onto it now fails
    with pytest.raises(OSError):
        registry.add_account("bob")
    assert registry.logins() == ["alice"]
    path.rmdir()
    path.write_bytes(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ACCOUNTS_FILE]  # no temp file left


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ('{"version": 1, "accounts": [', "not a usable accounts file"),
        ('{"version": 7, "accounts": []}', "not a usable accounts file"),
        ('{"version": 1, "accounts": [{"login": "alice", "keys": ["ssh-rsa nope"]}]}',
         "account 'alice'"),
        ('{"version": 1, "accounts": [{"login": "-bad"}]}', "invalid login"),
    ],
)
def test_an_unusable_file_is_refused_by_name(tmp_path: Path, content: str, fault: str) -> None:
    (tmp_path / ACCOUNTS_FILE).write_text(content)
    with pytest.raises(AccountFileError, match=re.escape(fault)) as caught:
        FakeMantaServer(data_dir=tmp_path)
    assert str(tmp_path / ACCOUNTS_FILE) in str(caught.value)
    assert (tmp_path / ACCOUNTS_FILE).read_text() == content  # left as it was


def test_the_command_exits_cleanly_on_an_unusable_file(tmp_path: Path) -> None:
    (tmp_path / ACCOUNTS_FILE).write_text("{")
    proc = subprocess.run(
        [sys.executable, "-m", "fake_manta", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"fake-manta: {tmp_path / ACCOUNTS_FILE} is not a usable")
    assert "Traceback" not in proc.stderr


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m fake_manta``; returns the process and its banner."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_manta", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C"):
            return proc, "".join(lines)
    _, err = proc.communicate(timeout=START_TIMEOUT)
    raise AssertionError(f"fake-manta exited {proc.returncode}: {err}")


def _stop_cli(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=START_TIMEOUT) == 0


async def test_the_command_remembers_accounts_between_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "manta"
    alice_key, ops_key = tmp_path / "alice.pub", tmp_path / "ops.pub"
    alice_key.write_text(ssh_public_key_line(ALICE) + "\n")
    ops_key.write_text(ssh_public_key_line(OPS) + "\n")
    proc, _ = _start_cli("--data-dir", str(data_dir), "--account", f"alice={alice_key}",
                         "--account", f"ops={ops_key}", "--operator", "ops")
    _stop_cli(proc)

    proc, banner = _start_cli("--data-dir", str(data_dir))  # no --account this time
    try:
        assert "export MANTA_USER=alice" in banner
        assert f"export MANTA_KEY_ID={md5_fingerprint(ALICE)}" in banner
        url = re.search(r"export MANTA_URL=(\S+)", banner)
        assert url is not None
        alice = RequestSigner.for_login(ALICE, "alice")
        ops = RequestSigner.for_login(OPS, "ops")
        async with aiohttp.ClientSession() as http:
            assert await _put(http, url.group(1), "/alice/stor/kept", alice, b"x") == 204
            assert await _put(http, url.group(1), "/alice/stor/by-ops", ops, b"y") == 204
            assert await _put(http, url.group(1), "/ops/stor/by-alice", alice, b"z") == 403
    finally:
        _stop_cli(proc)
