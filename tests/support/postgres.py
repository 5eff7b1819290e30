"""A throwaway PostgreSQL 15 cluster for the tests, and the engine parameter of the suites.

``PostgresCluster`` runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package
(``pg_config --bindir``) on a free loopback port. PostgreSQL refuses to run as root, and the
tests run as root in CI: then both run as the ``postgres`` user (``runuser -u postgres --``)
in a directory of its own under the system temp dir (pytest's ``tmp_path`` sits below a
mode-0700 root directory that user cannot enter). Fsync is off: the cluster dies with the
session anyway.

The session migrates one template database; each test gets a copy of it
(``CREATE DATABASE ... TEMPLATE``, dropped after the test), which takes a few milliseconds.

Fixtures (``tests/conftest.py`` imports them for every suite):

- ``postgres_cluster``: the session's cluster; skips with a notice where the binaries are
  missing, and fails instead when ``CI=true``.
- ``postgres_url``: a fresh, migrated database for this test, as a ``postgresql://`` URL.
- ``database``: the ``[database]`` section of each engine in turn (``{}`` for SQLite,
  ``{"url": ...}`` for PostgreSQL): parametrize a suite by requesting it.

``serving_gateway(data_dir, url)`` runs ``cloudapi-gateway serve`` on that database in a child
process (several of them make several instances); ``PostgresCluster`` of one's own (its
``stop_server``/``start_server``) lets a test take the database away and bring it back.

Standalone (``python -m tests.support.postgres``) it starts a cluster, prints a migrated
database's URL and keeps running until interrupted: for ``cloudapi-gateway serve`` by hand.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
#: The engines every parametrized suite runs on.
ENGINES = ("sqlite", "postgresql")
TEMPLATE = "gateway_template"
_names = itertools.count()


def bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, else Debian's layout."""
    pg_config = shutil.which("pg_config")
    candidates: list[Path] = []
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def unavailable_reason() -> str | None:
    """Why no cluster can be started here, or ``None`` if one can."""
    if bindir() is None:
        return "PostgreSQL binaries not found (install Debian's postgresql package)"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _has_user("postgres")):
        return "running as root, but there is no 'postgres' user or no runuser to switch to it"
    return None


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own in another thread (fixtures run beside the test's
    loop, which must not be replaced)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class PostgresCluster:
    """One ``initdb``'d cluster listening on 127.0.0.1, trust authentication."""

    def __init__(self) -> None:
        found = bindir()
        if found is None:
            raise RuntimeError(unavailable_reason())
        self.bindir = found
        self.root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, user="postgres", group="postgres")

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> PostgresCluster:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        for attempt in range(5):  # a free port can be taken between the probe and the start
            self.port = _free_port()
            try:
                self.start_server()
                break
            except RuntimeError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        return self

    def start_server(self) -> None:
        """Start (again) the server of this cluster, on its port."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c fsync=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=16MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop_server(self) -> None:
        """Stop the server at once (connections dropped), keeping the cluster's files."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)

    def stop(self) -> None:
        try:
            self.stop_server()
        except (RuntimeError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def _admin(self, *statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url(), timeout=30)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def create_template(self) -> None:
        """The migrated database every test's database is copied from."""
        from gateway.server.database.postgres import PoolOptions, PostgresDatabase

        async def migrate() -> None:
            await self._admin(f"CREATE DATABASE {TEMPLATE}")
            db = await PostgresDatabase.connect(PoolOptions(url=self.url(TEMPLATE), pool_size=1))
            try:
                await db.upgrade()
            finally:
                await db.close()

        in_thread(migrate())

    def new_database(self, *, template: str | None = TEMPLATE) -> str:
        """A fresh database (a copy of the migrated template, or empty); its URL."""
        name = f"t{os.getpid()}_{next(_names)}"
        source = f" TEMPLATE {template}" if template else ""
        in_thread(self._admin(f"CREATE DATABASE {name}{source}"))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        in_thread(self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@asynccontextmanager
async def serving_gateway(
    data_dir: Path, database_url: str, **env: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``cloudapi-gateway serve`` in a child process on a free port, its ``[database] url``
    given the way operators give it (``CLOUDAPI_GATEWAY_DATABASE_URL``); yields its base URL
    once ``/--ping`` answers, and the process. Stopped (SIGTERM, then killed) afterwards."""
    import aiohttp

    port = _free_port()
    child_env = {
        **os.environ,
        "CLOUDAPI_GATEWAY_DATABASE_URL": database_url,
        "CLOUDAPI_GATEWAY_DRAIN_SECONDS": "0",
        "CLOUDAPI_GATEWAY_METRICS__LISTEN": "",  # ":0" could take the port chosen above
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        env=child_env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                if proc.returncode is not None:
                    assert proc.stderr is not None
                    err = (await proc.stderr.read()).decode(errors="replace")
                    raise RuntimeError(f"serve exited ({proc.returncode}): {err[-2000:]}")
                try:
                    async with session.get(f"{url}/--ping") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("serve did not answer /--ping within 60 s")
                await asyncio.sleep(0.1)
        yield url, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def require_postgres() -> None:
    """Skip (fail under ``CI=true``) where no cluster can run."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and PostgreSQL tests cannot run: {reason}")
    pytest.skip(f"NOTICE: PostgreSQL tests skipped: {reason}")


def report_header() -> list[str]:
    """A line for pytest's header: whether the PostgreSQL half of the suites will run."""
    reason = unavailable_reason()
    if reason is None:
        return [f"PostgreSQL: binaries in {bindir()}"]
    where = "CI=true: they will FAIL" if os.environ.get("CI") == "true" else "SKIPPED"
    return [f"NOTICE: {reason}; the PostgreSQL engine's tests are {where}"]


def running_cluster() -> Iterator[PostgresCluster]:
    """A started cluster with its template database, stopped when the generator ends: the
    body of the cluster fixtures (the session's, and modules' that stop their server)."""
    require_postgres()
    cluster = PostgresCluster().start()
    try:
        cluster.create_template()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    yield from running_cluster()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database migrated to this code's schema, dropped after the test."""
    url = postgres_cluster.new_database()
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``Settings.database`` for each engine in turn (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        return {}
    return {"url": request.getfixturevalue("postgres_url")}


def main() -> None:  # pragma: no cover - a developer's tool
    import signal

    # Stop cleanly on SIGTERM too, and on SIGINT even when started in the background.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cluster = PostgresCluster().start()
    try:
        cluster.create_template()
        print(cluster.new_database(), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
