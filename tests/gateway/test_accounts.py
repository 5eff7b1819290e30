"""The account store (on each database engine) and the ``accounts`` / ``keys`` commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
from gateway.server.database import Databases
from gateway.settings import Settings

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()


async def open_store(settings: Settings, refresh_interval: float = 0.0) -> AccountStore:
    """A store on ``settings``' database that closes its database with itself."""
    databases = await Databases.open(settings, ("accounts",))
    store = AccountStore(databases["accounts"], refresh_interval=refresh_interval)
    store.close = databases.close  # type: ignore[method-assign]
    return store


@pytest.fixture
def settings(tmp_path: Path, database: dict[str, Any]) -> Settings:
    """Each engine in turn: SQLite under tmp_path, or a fresh PostgreSQL database."""
    return Settings(data_dir=tmp_path / "sub", database=database)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[AccountStore]:
    s = await open_store(settings)
    yield s
    await s.close()


# --- accounts -------------------------------------------------------------------------------


async def test_add_get_list(store: AccountStore) -> None:
    alice = await store.add_account("alice")
    bob = await store.add_account("bob.smith@2", uuid="930896AF-BF8C-48D4-885C-6573A94B1853")
    assert bob.uuid == "930896af-bf8c-48d4-885c-6573a94b1853"  # canonical form
    assert await store.get_account("alice") == alice
    assert await store.get_account_by_uuid(bob.uuid) == bob
    assert await store.get_account_by_uuid(bob.uuid.upper()) == bob
    assert await store.get_account("nobody") is None
    assert await store.get_account_by_uuid("not-a-uuid") is None
    assert [a.login for a in await store.list_accounts()] == ["alice", "bob.smith@2"]
    assert not alice.disabled and alice.created.endswith("Z")


@pytest.mark.parametrize(
    "login",
    ["", "ab", "1abc", "_abc", "a" * 33, "al ice", "al/ice", "al-ice", "my", "ålice", "local"],
)
async def test_invalid_logins(store: AccountStore, login: str) -> None:
    with pytest.raises(InvalidLogin, match="invalid login"):
        await store.add_account(login)


@pytest.mark.parametrize("login", ["abc", "A.b_c@d", "a" * 32, "locals"])
async def test_valid_logins(store: AccountStore, login: str) -> None:
    assert (await store.add_account(login)).login == login


async def test_duplicates_and_bad_uuids(store: AccountStore) -> None:
    a = await store.add_account("alice")
    with pytest.raises(AccountExists, match="login 'alice'"):
        await store.add_account("alice")
    with pytest.raises(AccountExists, match=f"uuid {a.uuid}"):
        await store.add_account("alice2", uuid=a.uuid)
    with pytest.raises(InvalidUUID):
        await store.add_account("carol", uuid="1234")
    assert [x.login for x in await store.list_accounts()] == ["alice"]


async def test_disable_enable(store: AccountStore) -> None:
    await store.add_account("alice")
    assert (await store.set_disabled("alice", True)).disabled
    assert (await store.get_account("alice")).disabled  # type: ignore[union-attr]
    assert not (await store.set_disabled("alice", False)).disabled
    with pytest.raises(AccountNotFound):
        await store.set_disabled("nobody", True)


# --- keys -----------------------------------------------------------------------------------


async def test_keys(store: AccountStore) -> None:
    await store.add_account("alice")
    line = httpsig.ssh_public_key_line(RSA, "me@host")
    rsa_rec = await store.add_key("alice", line, name="laptop")
    ec_rec = await store.add_key("alice", httpsig.ssh_public_key_line(P256) + "\n")
    ed_rec = await store.add_key("alice", httpsig.ssh_public_key_line(ED))
    assert rsa_rec.fingerprint == httpsig.md5_fingerprint(RSA)
    assert ec_rec.name == ec_rec.fingerprint == httpsig.md5_fingerprint(P256)
    assert rsa_rec.public_key.endswith("me@host")
    assert await store.list_keys("alice") == [rsa_rec, ec_rec, ed_rec]
    assert await store.list_keys("nobody") == []
    assert await store.find_key("alice", "laptop") == rsa_rec
    assert await store.find_key("alice", rsa_rec.fingerprint) == rsa_rec
    assert await store.find_key("alice", rsa_rec.fingerprint.upper()) == rsa_rec
    assert await store.find_key("alice", "MD5:" + ed_rec.fingerprint) == ed_rec
    assert await store.find_key("alice", "desktop") is None
    assert await store.find_key("bob", "laptop") is None


async def test_key_refusals(store: AccountStore) -> None:
    await store.add_account("alice")
    line = httpsig.ssh_public_key_line(RSA)
    await store.add_key("alice", line, name="laptop")
    with pytest.raises(KeyExists, match="already has this key"):
        await store.add_key("alice", line, name="other")
    with pytest.raises(KeyExists, match="named 'laptop'"):
        await store.add_key("alice", httpsig.ssh_public_key_line(ED), name="laptop")
    with pytest.raises(AccountNotFound):
        await store.add_key("bob", line)
    dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAP" + "A" * 40
    for bad in ("", "ssh-rsa", "ssh-rsa AAAAnotbase64!!", "hello world", dsa, line + "\n" + line):
        with pytest.raises(InvalidKey):
            await store.add_key("alice", bad)
    for bad_name in ("a/b", "", " lead", "x" * 129):
        with pytest.raises(InvalidKey, match="invalid key name"):
            await store.add_key("alice", httpsig.ssh_public_key_line(P256), name=bad_name)
    assert [k.name for k in await store.list_keys("alice")] == ["laptop"]


async def test_the_same_key_on_two_accounts(store: AccountStore) -> None:
    line = httpsig.ssh_public_key_line(ED)
    for login in ("alice", "bob"):
        await store.add_account(login)
        await store.add_key(login, line)
    assert await store.find_key("bob", httpsig.md5_fingerprint(ED)) is not None


async def test_changes_from_another_connection_are_seen(
    store: AccountStore, settings: Settings
) -> None:
    """The server's cached reads notice what the CLI (another process) commits."""
    assert await store.get_account("alice") is None  # cached as absent
    other = await open_store(settings)
    try:
        await other.add_account("alice")
        assert await store.get_account("alice") is not None
        assert await store.list_keys("alice") == []
        await other.add_key("alice", httpsig.ssh_public_key_line(ED), name="k")
        assert [k.name for k in await store.list_keys("alice")] == ["k"]
        await other.set_disabled("alice", True)
        alice = await store.get_account("alice")
        assert alice is not None and alice.disabled
    finally:
        await other.close()


async def test_another_instances_changes_are_seen_within_the_refresh_interval(
    settings: Settings,
) -> None:
    """Two instances' stores: a cached answer lasts at most ``refresh_interval`` seconds."""
    bound = 0.5
    server = await open_store(settings, refresh_interval=bound)
    cli = await open_store(settings)
    try:
        assert await server.credentials("alice", "k") == (None, None)  # cached as absent
        await cli.add_account("alice")
        record = await cli.add_key("alice", httpsig.ssh_public_key_line(ED), name="k")
        started = asyncio.get_running_loop().time()
        while (await server.credentials("alice", "k"))[1] != record:
            assert asyncio.get_running_loop().time() - started < bound + 5.0  # generous
            await asyncio.sleep(0.05)
        await cli.set_disabled("alice", True)
        while not (await server.credentials("alice", "k"))[0].disabled:  # type: ignore[union-attr]
            assert asyncio.get_running_loop().time() - started < 2 * bound + 10.0
            await asyncio.sleep(0.05)
    finally:
        await server.close()
        await cli.close()


async def test_concurrent_requests_share_one_store(store: AccountStore) -> None:
    async def work(i: int) -> None:
        await store.add_account(f"user{i:02d}")
        for _ in range(20):
            assert await store.get_account(f"user{i:02d}") is not None

    await asyncio.gather(*(work(i) for i in range(8)))
    assert len(await store.list_accounts()) == 8


async def test_a_store_on_its_own_sqlite_file(tmp_path: Path) -> None:
    """``AccountStore(path)``: opens (and migrates) a file of its own, closed with it."""
    own = AccountStore(tmp_path / "own" / "accounts.sqlite")
    try:
        assert (await own.add_account("alice")).login == "alice"
    finally:
        await own.close()
    reopened = AccountStore(tmp_path / "own" / "accounts.sqlite")
    try:
        assert await reopened.get_account("alice") is not None
    finally:
        await reopened.close()


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
    async def read_back() -> None:
        store = AccountStore(tmp_path / "accounts.sqlite")
        try:
            bob = await store.get_account("bob")
            assert bob is not None and bob.disabled
            assert await store.find_key("alice", "laptop") is not None
        finally:
            await store.close()

    asyncio.run(read_back())


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


def test_the_cli_writes_to_postgresql_for_every_instance(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
) -> None:
    """With CLOUDAPI_GATEWAY_DATABASE_URL, the commands write where every instance reads."""
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DATABASE_URL", postgres_url)
    pub = tmp_path / "id.pub"
    pub.write_text(httpsig.ssh_public_key_line(ED) + "\n")
    assert run(capsys, "accounts", "add", "alice", "--data-dir", str(tmp_path / "d"))[0] == 0
    assert run(capsys, "keys", "add", "alice", str(pub), "--name", "laptop")[0] == 0
    status, out, _ = run(capsys, "keys", "list", "alice", "--json")
    assert status == 0 and json.loads(out)["name"] == "laptop"
    assert not (tmp_path / "d").exists()  # nothing went to SQLite

    async def read_back() -> None:
        store = await open_store(Settings(database={"url": postgres_url}))
        try:
            assert await store.find_key("alice", "laptop") is not None
        finally:
            await store.close()

    asyncio.run(read_back())
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DATABASE_URL", postgres_url.rsplit("/", 1)[0] + "/nodb")
    status, _, err = run(capsys, "accounts", "list")
    assert status == 1 and err.startswith("cloudapi-gateway: error: cannot open the account store")


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


async def test_lookups_of_unknown_logins_do_not_grow_the_cache_forever(
    store: AccountStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of requests naming random logins must not make the server keep them all."""
    import gateway.server.accounts

    monkeypatch.setattr(gateway.server.accounts, "CACHE_LIMIT", 500)  # fast on either engine
    CACHE_LIMIT = gateway.server.accounts.CACHE_LIMIT
    await store.add_account("alice")
    for i in range(CACHE_LIMIT + 50):
        assert await store.credentials(f"nobody{i}", "k") == (None, None)
    assert len(store._by_login) <= CACHE_LIMIT + 1
    assert await store.get_account("alice") is not None
    assert await store.credentials("al\udcffice", "k") == (None, None)  # not a login: no SQL at all
