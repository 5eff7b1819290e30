"""The database layer on both engines: statements, transactions, migrations, ``db upgrade`` and
``db copy``, and what happens while PostgreSQL is away (503, ``/--ready``, reconnection)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway import httpsig
from gateway.catalog import ImageFile, ImageRecord
from gateway.cli.main import main
from gateway.server.accounts import AccountStore
from gateway.server.app import create_app
from gateway.server.database import (
    Databases,
    DatabaseUnavailable,
    IntegrityError,
    SchemaMismatch,
)
from gateway.server.database.postgres import PoolOptions, PostgresDatabase
from gateway.server.database.schema import AREAS, KNOWN
from gateway.server.image_records import SQLiteImageRecords
from gateway.server.journal import SQLiteJournal
from gateway.settings import Settings, SettingsError, load_settings
from tests.support.export_env import make_env
from tests.support.helpers import add_caller
from tests.support.postgres import (
    PostgresCluster,
    running_cluster,
    serving_gateway,
)
from tests.support.storage_targets import open_target

ED = ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def databases(tmp_path: Path, database: dict[str, Any]) -> AsyncIterator[Databases]:
    dbs = await Databases.open(Settings(data_dir=tmp_path, database=database))
    yield dbs
    await dbs.close()


# --- statements and transactions, the same on both engines ------------------------------------


async def test_statements_and_row_counts(databases: Databases) -> None:
    db = databases["accounts"]
    insert = "INSERT INTO accounts (uuid, login, disabled, created) VALUES (?, ?, ?, ?)"
    assert await db.execute(insert, "u1", "alice", 0, "t") == 1
    assert await db.execute(insert, "u2", "bob", 1, "t") == 1
    assert await db.fetch("SELECT login, disabled FROM accounts ORDER BY login") == [
        ("alice", 0),
        ("bob", 1),
    ]
    assert await db.fetchone("SELECT login FROM accounts WHERE uuid = ?", "u2") == ("bob",)
    assert await db.fetchone("SELECT login FROM accounts WHERE uuid = ?", "nope") is None
    assert await db.execute("UPDATE accounts SET disabled = ?", 1) == 2
    assert await db.execute("DELETE FROM accounts WHERE login = ?", "nobody") == 0
    with pytest.raises(IntegrityError):
        await db.execute(insert, "u3", "alice", 0, "t")  # login is unique


async def test_a_failed_transaction_leaves_nothing(databases: Databases) -> None:
    db = databases["journal"]
    insert = (
        "INSERT INTO journal (id, action, key, state, data, owner, expires, created)"
        " VALUES (?, 'export', ?, 's', '{}', 'me', 0, 0)"
    )
    with pytest.raises(RuntimeError, match="half-way"):
        async with db.transaction() as tx:
            await tx.execute(insert, "a", "k1")
            assert await tx.fetchone("SELECT id FROM journal WHERE key = ?", "k1") == ("a",)
            raise RuntimeError("half-way")
    with pytest.raises(IntegrityError):
        async with db.transaction() as tx:
            await tx.execute(insert, "b", "k2")
            await tx.execute(insert, "c", "k2")  # the key is unique
    assert await db.fetch("SELECT id FROM journal") == []
    async with db.transaction() as tx:
        await tx.execute(insert, "d", "k3")
    assert await db.fetch("SELECT id FROM journal") == [("d",)]


async def test_account_writes_bump_the_change_counter(databases: Databases) -> None:
    """Triggers count every write, whoever makes it: what other instances' caches watch."""
    db = databases["accounts"]

    async def serial() -> int:
        row = await db.fetchone("SELECT serial FROM account_changes WHERE id = 1")
        assert row is not None
        return int(row[0])

    before = await serial()
    store = AccountStore(db)
    await store.add_account("alice")
    await store.add_key("alice", httpsig.ssh_public_key_line(ED))
    await db.execute("UPDATE accounts SET disabled = 1")  # a writer that is not the store
    assert await serial() == before + 3


# --- migrations --------------------------------------------------------------------------------

#: The account store's schema before migrations existed (it ran CREATE ... IF NOT EXISTS).
PRE_MIGRATION_ACCOUNTS = """
CREATE TABLE accounts (uuid TEXT PRIMARY KEY, login TEXT NOT NULL UNIQUE,
    disabled INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL);
CREATE TABLE keys (login TEXT NOT NULL REFERENCES accounts(login) ON DELETE CASCADE,
    name TEXT NOT NULL, fingerprint TEXT NOT NULL, public_key TEXT NOT NULL,
    created TEXT NOT NULL, PRIMARY KEY (login, name), UNIQUE (login, fingerprint));
INSERT INTO accounts VALUES ('11111111-2222-3333-4444-555555555555', 'alice', 0, 't');
"""


async def test_a_pre_migration_sqlite_file_is_version_1_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(PRE_MIGRATION_ACCOUNTS)
    conn.close()
    store = AccountStore(path)
    try:
        alice = await store.get_account("alice")
        assert alice is not None and alice.uuid.startswith("11111111")
        await store.add_key("alice", httpsig.ssh_public_key_line(ED), name="k")
        assert [k.name for k in await store.list_keys("alice")] == ["k"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        versions = conn.execute("SELECT area, version FROM schema_migrations").fetchall()
    conn.close()
    assert sorted(versions) == [("accounts", 1), ("accounts", 2)]


def _record_future_migration(path: Path, area: str, readers_from: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 99, ?, 'from the future', 'now')",
            (area, readers_from),
        )
    conn.close()


async def test_sqlite_refuses_only_a_schema_it_cannot_work_with(tmp_path: Path) -> None:
    """A newer release's additive migration is fine; one that dropped what we read is not."""
    expanded, contracted = tmp_path / "a" / "journal.sqlite", tmp_path / "b" / "journal.sqlite"
    for path in (expanded, contracted):
        SQLiteJournal(path, lease_seconds=1).close()
    _record_future_migration(expanded, "journal", readers_from=1)
    _record_future_migration(contracted, "journal", readers_from=99)
    journal = SQLiteJournal(expanded, lease_seconds=1)
    assert await journal.begin("export", "k", "s", {}) is not None
    journal.close()
    with pytest.raises(SchemaMismatch, match="upgrade this gateway"):
        SQLiteJournal(contracted, lease_seconds=1)


async def test_postgresql_needs_db_upgrade_first(
    postgres_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = postgres_cluster.new_database(template=None)  # empty: never upgraded
    settings = Settings(data_dir=tmp_path, database={"url": url})
    with pytest.raises(SchemaMismatch, match="run 'cloudapi-gateway db upgrade'"):
        await Databases.open(settings)
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DATABASE_URL", url)
    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert "applied accounts 2:" in out and f"records: version {KNOWN['records']}" in out
    dbs = await Databases.open(settings)
    await dbs.close()
    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
    assert "the database was up to date" in capsys.readouterr().out
    pg = await PostgresDatabase.connect(PoolOptions(url=url))
    try:
        await pg.execute(
            "INSERT INTO schema_migrations VALUES ('records', 99, 99, 'contracted', 'now')"
        )
        with pytest.raises(SchemaMismatch, match="upgrade this gateway"):
            await pg.verify()
    finally:
        await pg.close()


async def test_concurrent_upgrades_apply_each_migration_once(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.new_database(template=None)
    instances = [await PostgresDatabase.connect(PoolOptions(url=url)) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(pg.upgrade() for pg in instances))
        assert sorted(len(a) for a in applied) == [0, 0, sum(KNOWN.values())]
        rows = await instances[0].fetch("SELECT area, version FROM schema_migrations")
        assert len(rows) == len(set(rows)) == sum(KNOWN.values())
    finally:
        for pg in instances:
            await pg.close()


def test_the_engine_comes_from_settings_or_the_environment() -> None:
    url = "postgresql://gw@127.0.0.1:5432/gateway"
    env = {"CLOUDAPI_GATEWAY_DATABASE_URL": url, "CLOUDAPI_GATEWAY_DATABASE__POOL_SIZE": "3"}
    assert load_settings(env=env).database == {"url": url, "pool_size": 3}
    with pytest.raises(SettingsError, match=r"database: url must be a \"postgresql://"):
        load_settings(env={"CLOUDAPI_GATEWAY_DATABASE_URL": "mysql://x"})
    with pytest.raises(SettingsError, match="pool_size"):
        load_settings(env={"CLOUDAPI_GATEWAY_DATABASE__POOL_SIZE": "0"})


# --- db copy -----------------------------------------------------------------------------------


async def test_db_copy_moves_a_data_dir_into_postgresql(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = AccountStore(tmp_path / "accounts.sqlite")
    await store.add_account("alice")
    await store.add_key("alice", httpsig.ssh_public_key_line(ED), name="laptop")
    await store.close()
    journal = SQLiteJournal(tmp_path / "journal.sqlite", lease_seconds=60, owner="dead")
    assert await journal.begin("export", "dest", "file_written", {"n": 1}) is not None
    journal.close()
    records = SQLiteImageRecords(tmp_path / "records.sqlite")
    records.open()
    files = (ImageFile(sha1="a" * 40, size=1, compression="none", content_md5="x"),)
    for name in ("older", "newer"):
        await records.insert_record(ImageRecord({"uuid": name}, files, (f"/loc/{name}",)))
    records.close()

    argv = ["db", "copy", "--data-dir", str(tmp_path), "--to", postgres_url]
    assert await asyncio.to_thread(main, argv) == 0
    assert "keys: 1 rows" in capsys.readouterr().out
    dbs = await Databases.open(Settings(database={"url": postgres_url}))
    try:
        copied = AccountStore(dbs["accounts"])
        assert await copied.find_key("alice", "laptop") is not None
        holder = await dbs["journal"].fetchone("SELECT owner, data FROM journal")
        assert holder is not None and holder[0] == "dead" and json.loads(holder[1]) == {"n": 1}
        rows = await dbs["journal"].fetch("SELECT manifest FROM image_records ORDER BY rowid")
        assert [json.loads(r[0])["uuid"] for r in rows] == ["older", "newer"]
    finally:
        await dbs.close()
    # A second copy would mix two data dirs: refused, and nothing changes.
    assert await asyncio.to_thread(main, argv) == 1
    assert "already holds rows in accounts" in capsys.readouterr().err


# --- the database goes away --------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: its tests stop and start the server."""
    yield from running_cluster()


async def test_statements_time_out_as_unavailable(own_cluster: PostgresCluster) -> None:
    url = own_cluster.new_database()
    pg = await PostgresDatabase.connect(PoolOptions(url=url, statement_timeout=0.2))
    try:
        with pytest.raises(DatabaseUnavailable):
            await pg.fetch("SELECT pg_sleep(5)")
        assert await pg.fetchone("SELECT 1") == (1,)  # the pool goes on
    finally:
        await pg.close()


async def test_a_cancelled_statement_is_cancelled_and_the_pool_goes_on(postgres_url: str) -> None:
    """Cancelling a task mid-statement (a poller stopped at shutdown, a readiness timeout)
    ends it with CancelledError, never a database error, and leaves the pool usable."""
    pg = await PostgresDatabase.connect(PoolOptions(url=postgres_url, pool_size=1))
    try:
        for delay in (0.0, 0.01, 0.05, 0.2):  # cut short at different steps of the exchange
            task = asyncio.create_task(pg.fetch("SELECT pg_sleep(2)"))
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await pg.fetchone("SELECT 1") == (1,)
    finally:
        await pg.close()


async def test_an_outage_is_503_and_not_ready_then_heals_without_restart(
    own_cluster: PostgresCluster, tmp_path: Path, aiohttp_client: Any
) -> None:
    url = own_cluster.new_database()
    # refresh_interval 0: every request asks the database (with the default 1 s, a request
    # whose caller is cached needs no database and is served through a short outage).
    database = {
        "url": url,
        "connect_timeout": 1,
        "statement_timeout": 1,
        "pool_size": 3,
        "refresh_interval": 0,
    }
    app = create_app(Settings(data_dir=tmp_path, database=database))
    client = await aiohttp_client(app)
    _, signer = await add_caller(app, "alice")

    async def images() -> aiohttp.ClientResponse:
        return await client.get("/my/images", headers=signer.sign("GET", "/my/images", {}))

    assert (await images()).status == 200
    own_cluster.stop_server()
    try:
        response = await images()
        assert response.status == 503
        body = await response.json()
        assert body["code"] == "ServiceUnavailable" and url not in json.dumps(body)
        ready = await client.get("/--ready")
        assert ready.status == 503
        assert (await ready.json())["checks"]["database"] != "ok"
    finally:
        own_cluster.start_server()
    for _ in range(100):  # the pool reconnects by itself
        if (await images()).status == 200:
            break
        await asyncio.sleep(0.2)
    assert (await images()).status == 200
    assert (await client.get("/--ready")).status == 200


async def test_an_export_during_an_outage_is_503_and_writes_nothing(
    own_cluster: PostgresCluster, tmp_path: Path, aiohttp_client: Any, moto_s3: Any
) -> None:
    """The export's journal is in the database: without it no export starts (503), the
    destination stays untouched, and exports work again once the database is back."""
    url = own_cluster.new_database()
    database = {"url": url, "connect_timeout": 1, "statement_timeout": 1}
    async with open_target("s3", tmp_path / "target", moto_s3) as harness:
        env = await make_env(aiohttp_client, harness, tmp_path / "gateway", database=database)
        data = b"exported while the database is away" * 100
        image = await env.image(data)
        own_cluster.stop_server()
        try:
            answer = await env.export(image.uuid, env.path("img"))
            assert (answer.status, answer.body["code"]) == (503, "ServiceUnavailable")
            assert not await env.exists(env.path("img.zfs"))
            assert not await env.exists(env.path("img.imgmanifest"))
        finally:
            own_cluster.start_server()
        for _ in range(100):
            answer = await env.export(image.uuid, env.path("img"))
            if answer.status != 503:
                break
            await asyncio.sleep(0.2)
        assert answer.status == 200, answer.body
        assert await env.read(env.path("img.zfs")) == data


async def test_serve_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:9/none"  # discard port: nothing listens
    env = {"CLOUDAPI_GATEWAY_DATABASE__CONNECT_TIMEOUT": "2", "CLOUDAPI_GATEWAY_PORT": "0"}
    status = await asyncio.to_thread(_serve_status, tmp_path, url, env)
    assert status[0] == 1, status
    assert "cloudapi-gateway: error: database unavailable" in status[1]
    assert "Traceback" not in status[1]


def _serve_status(tmp_path: Path, url: str, env: dict[str, str]) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--data-dir", str(tmp_path)],
        env={**os.environ, "CLOUDAPI_GATEWAY_DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr


async def test_two_served_instances_share_accounts(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``serve`` with CLOUDAPI_GATEWAY_DATABASE_URL, twice: a key added with the CLI is
    accepted by both instances within the refresh interval, without a restart."""
    pub = tmp_path / "k.pub"
    pub.write_text(httpsig.ssh_public_key_line(ED))
    signer = httpsig.RequestSigner.for_login(ED, "alice")
    refresh = {"CLOUDAPI_GATEWAY_DATABASE__REFRESH_INTERVAL": "0.5"}
    async with (
        serving_gateway(tmp_path / "one", postgres_url, **refresh) as (one, _),
        serving_gateway(tmp_path / "two", postgres_url, **refresh) as (two, _),
        aiohttp.ClientSession() as session,
    ):

        async def status(base: str) -> int:
            headers = signer.sign("GET", "/my/images", {})
            async with session.get(f"{base}/my/images", headers=headers) as response:
                return response.status

        assert await status(one) == 401 and await status(two) == 401
        env = {"CLOUDAPI_GATEWAY_DATABASE_URL": postgres_url}
        for argv in (["accounts", "add", "alice"], ["keys", "add", "alice", str(pub)]):
            assert await asyncio.to_thread(_cli, argv, env) == 0
        for base in (one, two):
            for _ in range(100):  # bound: 0.5 s; generous for a loaded machine
                if await status(base) == 200:
                    break
                await asyncio.sleep(0.1)
            assert await status(base) == 200
            async with session.get(f"{base}/--ready") as response:
                assert (await response.json())["checks"]["database"] == "ok"


def _cli(argv: list[str], env: dict[str, str]) -> int:
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *argv],
        env={**os.environ, **env},
        capture_output=True,
        timeout=120,
        check=False,
    ).returncode


def test_every_area_has_a_schema() -> None:
    assert set(KNOWN) == set(AREAS)
