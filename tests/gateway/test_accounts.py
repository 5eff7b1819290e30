"""The embedded account store and the ``accounts`` / ``keys`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway import httpsig
from gateway.cli.accounts import main
from gateway.server.accounts import (
    AccountExists,
    AccountNotFound,
    AccountStore,
    InvalidKey,
    InvalidLogin,
    InvalidUUID,
    KeyExists,
)

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    s = AccountStore(tmp_path / "sub" / "accounts.sqlite")
    yield s  # type: ignore[misc]
    s.close()


# --- accounts -------------------------------------------------------------------------------


def test_add_get_list(store: AccountStore) -> None:
    alice = store.add_account("alice")
    bob = store.add_account("bob.smith@2", uuid="930896AF-BF8C-48D4-885C-6573A94B1853")
    assert bob.uuid == "930896af-bf8c-48d4-885c-6573a94b1853"  # canonical form
    assert store.get_account("alice") == alice
    assert store.get_account_by_uuid(bob.uuid) == bob
    assert store.get_account_by_uuid(bob.uuid.upper()) == bob
    assert store.get_account("nobody") is None
    assert store.get_account_by_uuid("not-a-uuid") is None
    assert [a.login for a in store.list_accounts()] == ["alice", "bob.smith@2"]
    assert not alice.disabled and alice.created.endswith("Z")


@pytest.mark.parametrize(
    "login",
    ["", "ab", "1abc", "_abc", "a" * 33, "al ice", "al/ice", "al-ice", "my", "ålice", "local"],
)
def test_invalid_logins(store: AccountStore, login: str) -> None:
    with pytest.raises(InvalidLogin, match="invalid login"):
        store.add_account(login)


@pytest.mark.parametrize("login", ["abc", "A.b_c@d", "a" * 32, "locals"])
def test_valid_logins(store: AccountStore, login: str) -> None:
    assert store.add_account(login).login == login


def test_duplicates_and_bad_uuids(store: AccountStore) -> None:
    a = store.add_account("alice")
    with pytest.raises(AccountExists, match="login 'alice'"):
        store.add_account("alice")
    with pytest.raises(AccountExists, match=f"uuid {a.uuid}"):
        store.add_account("alice2", uuid=a.uuid)
    with pytest.raises(InvalidUUID):
        store.add_account("carol", uuid="1234")
    assert [x.login for x in store.list_accounts()] == ["alice"]


def test_disable_enable(store: AccountStore) -> None:
    store.add_account("alice")
    assert store.set_disabled("alice", True).disabled
    assert store.get_account("alice").disabled  # type: ignore[union-attr]
    assert not store.set_disabled("alice", False).disabled
    with pytest.raises(AccountNotFound):
        store.set_disabled("nobody", True)


# --- keys -----------------------------------------------------------------------------------


def test_keys(store: AccountStore) -> None:
    store.add_account("alice")
    rsa_rec = store.add_key("alice", httpsig.ssh_public_key_line(RSA, "me@host"), name="laptop")
    ec_rec = store.add_key("alice", httpsig.ssh_public_key_line(P256) + "\n")
    ed_rec = store.add_key("alice", httpsig.ssh_public_key_line(ED))
    assert rsa_rec.fingerprint == httpsig.md5_fingerprint(RSA)
    assert ec_rec.name == ec_rec.fingerprint == httpsig.md5_fingerprint(P256)
    assert rsa_rec.public_key.endswith("me@host")
    assert store.list_keys("alice") == [rsa_rec, ec_rec, ed_rec]
    assert store.list_keys("nobody") == []
    assert store.find_key("alice", "laptop") == rsa_rec
    assert store.find_key("alice", rsa_rec.fingerprint) == rsa_rec
    assert store.find_key("alice", rsa_rec.fingerprint.upper()) == rsa_rec
    assert store.find_key("alice", "MD5:" + ed_rec.fingerprint) == ed_rec
    assert store.find_key("alice", "desktop") is None
    assert store.find_key("bob", "laptop") is None


def test_key_refusals(store: AccountStore) -> None:
    store.add_account("alice")
    line = httpsig.ssh_public_key_line(RSA)
    store.add_key("alice", line, name="laptop")
    with pytest.raises(KeyExists, match="already has this key"):
        store.add_key("alice", line, name="other")
    with pytest.raises(KeyExists, match="named 'laptop'"):
        store.add_key("alice", httpsig.ssh_public_key_line(ED), name="laptop")
    with pytest.raises(AccountNotFound):
        store.add_key("bob", line)
    dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAP" + "A" * 40
    for bad in ("", "ssh-rsa", "ssh-rsa AAAAnotbase64!!", "hello world", dsa, line + "\n" + line):
        with pytest.raises(InvalidKey):
            store.add_key("alice", bad)
    for bad_name in ("a/b", "", " lead", "x" * 129):
        with pytest.raises(InvalidKey, match="invalid key name"):
            store.add_key("alice", httpsig.ssh_public_key_line(P256), name=bad_name)
    assert [k.name for k in store.list_keys("alice")] == ["laptop"]


def test_the_same_key_on_two_accounts(store: AccountStore) -> None:
    line = httpsig.ssh_public_key_line(ED)
    for login in ("alice", "bob"):
        store.add_account(login)
        store.add_key(login, line)
    assert store.find_key("bob", httpsig.md5_fingerprint(ED)) is not None


def test_changes_from_another_connection_are_seen(store: AccountStore) -> None:
    """The server's cached reads notice what the CLI (another process) commits."""
    assert store.get_account("alice") is None  # cached as absent
    other = AccountStore(store.path)
    try:
        other.add_account("alice")
        assert store.get_account("alice") is not None
        assert store.list_keys("alice") == []
        other.add_key("alice", httpsig.ssh_public_key_line(ED), name="k")
        assert [k.name for k in store.list_keys("alice")] == ["k"]
        other.set_disabled("alice", True)
        assert store.get_account("alice").disabled  # type: ignore[union-attr]
    finally:
        other.close()


def test_threads_share_one_store(store: AccountStore) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            store.add_account(f"user{i:02d}")
            for _ in range(20):
                assert store.get_account(f"user{i:02d}") is not None
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list_accounts()) == 8


# --- CLI --------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_accounts_and_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(tmp_path)]
    pub = tmp_path / "id.pub"
    pub.write_text("# my key\n" + httpsig.ssh_public_key_line(ED, "me@host") + "\n")

    status, out, _ = run(capsys, "accounts", "add", "alice", *d)
    assert status == 0 and out.startswith("Created account alice (")
    uuid = "930896af-bf8c-48d4-885c-6573a94b1853"
    assert run(capsys, "accounts", "add", "bob", "--uuid", uuid, *d)[0] == 0
    status, out, _ = run(capsys, "keys", "add", "alice", str(pub), "--name", "laptop", *d)
    assert status == 0
    assert f"/alice/keys/{httpsig.md5_fingerprint(ED)}" in out
    assert run(capsys, "accounts", "disable", "bob", *d)[0] == 0

    status, out, _ = run(capsys, "accounts", "list", "--json", *d)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["login"], r["disabled"]) for r in rows] == [("alice", False), ("bob", True)]
    assert rows[1]["uuid"] == uuid
    status, out, _ = run(capsys, "accounts", "list", *d)
    assert "disabled" in out and "alice" in out
    status, out, _ = run(capsys, "keys", "list", "alice", "-j", *d)
    assert json.loads(out) == {
        "login": "alice",
        "name": "laptop",
        "fingerprint": httpsig.md5_fingerprint(ED),
        "type": "ssh-ed25519",
    }
    # What was written is what a server opening the same data dir sees.
    store = AccountStore(tmp_path / "accounts.sqlite")
    try:
        assert store.get_account("bob").disabled  # type: ignore[union-attr]
        assert store.find_key("alice", "laptop") is not None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["accounts", "add", "9lives"], "invalid login '9lives'"),
        (["accounts", "add", "alice"], "already exists"),
        (["accounts", "add", "zed", "--uuid", "nope"], "invalid uuid 'nope'"),
        (["accounts", "disable", "nobody"], "no account with login 'nobody'"),
        (["keys", "add", "nobody", "KEY"], "no account with login 'nobody'"),
        (["keys", "add", "alice", "MISSING"], "does not exist"),
        (["keys", "add", "alice", "PRIVATE"], "is a private key"),
        (["keys", "add", "alice", "GARBAGE"], "cannot parse the public key"),
        (["keys", "add", "alice", "EMPTY"], "holds no public key"),
        (["keys", "list", "nobody"], "no account with login 'nobody'"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    files = {
        "KEY": httpsig.ssh_public_key_line(ED),
        "PRIVATE": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
        "GARBAGE": "ssh-ed25519 not-base64!!",
        "EMPTY": "\n# nothing\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [str(tmp_path / a) if a in files or a == "MISSING" else a for a in argv]
    assert run(capsys, "accounts", "add", "alice", "--data-dir", str(tmp_path))[0] == 0
    status, _, err = run(capsys, *argv, "--data-dir", str(tmp_path))
    assert status == 1
    assert err.startswith("cloudapi-gateway: error: ") and message in err, err


def test_cli_config_file_and_env(tmp_path: Path) -> None:
    """``--config`` and CLOUDAPI_GATEWAY_DATA_DIR pick the data dir, in a real subprocess."""
    data = tmp_path / "from-config"
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{data}"\n')
    cmd = [sys.executable, "-m", "gateway.cli.accounts"]
    done = subprocess.run(
        [*cmd, "accounts", "add", "alice", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (data / "accounts.sqlite").exists()
    bad = subprocess.run(
        [*cmd, "accounts", "list", "--config", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    piped = subprocess.run(
        [*cmd, "keys", "add", "alice", "-", "--name", "piped", "--config", str(config)],
        input=httpsig.ssh_public_key_line(RSA) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert "Added key piped (" in piped.stdout


def test_through_the_main_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cloudapi-gateway accounts/keys ...`` as the installed entry point parses them."""
    from gateway.cli.main import main as gateway_main

    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    pub = tmp_path / "k.pub"
    pub.write_text(httpsig.ssh_public_key_line(P256))
    assert gateway_main(["accounts", "add", "alice", "-c", str(config)]) == 0
    assert gateway_main(["keys", "add", "alice", str(pub), "-c", str(config)]) == 0
    assert gateway_main(["keys", "list", "alice", "-c", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1])["fingerprint"] == httpsig.md5_fingerprint(P256)
    assert gateway_main(["accounts", "enable", "nobody", "-c", str(config)]) == 1
    assert "no account with login 'nobody'" in capsys.readouterr().err


def test_lookups_of_unknown_logins_do_not_grow_the_cache_forever(store: AccountStore) -> None:
    """A flood of requests naming random logins must not make the server keep them all."""
    from gateway.server.accounts import CACHE_LIMIT

    store.add_account("alice")
    for i in range(CACHE_LIMIT + 50):
        assert store.credentials(f"nobody{i}", "k") == (None, None)
    assert len(store._by_login) <= CACHE_LIMIT + 1
    assert store.get_account("alice") is not None
    assert store.credentials("al\udcffice", "k") == (None, None)  # not a login: no SQL at all
