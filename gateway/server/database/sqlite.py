"""The embedded engine: one SQLite file per area under ``data_dir``, as before migrations.

Statements run on one connection in one worker thread (so a writer in another process, which
SQLite makes us wait for, never blocks the event loop), one at a time in submission order; an
``asyncio.Lock`` keeps other coroutines' statements out of an open transaction. WAL mode and a
busy timeout let the CLI and several gateway processes on the host share the files. Opening a
file migrates it (the file belongs to this host), which is why ``open`` is synchronous: the
compatibility classes and the CLI can open a store without an event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from gateway.server.database.base import Queries, Row
from gateway.server.database.errors import (
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    SchemaMismatch,
)
from gateway.server.database.migrations import (
    MIGRATIONS_TABLE_SQL,
    RECORD_SQL,
    STATE_SQL,
    pending,
    problem,
    record_args,
    states,
)

T = TypeVar("T")
#: Seconds a statement waits for another process's write lock before giving up (503).
BUSY_TIMEOUT = 10.0


def _translated(exc: sqlite3.Error) -> DatabaseError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    if isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError):
        # Locked past the busy timeout, disk I/O errors, a closed connection.
        return DatabaseUnavailable(f"sqlite: {exc}")
    return DatabaseError(f"sqlite: {exc}")


def migrate(conn: sqlite3.Connection, areas: tuple[str, ...]) -> None:
    """Bring ``areas`` of this file up to date, then refuse a schema this code cannot use."""
    conn.execute(MIGRATIONS_TABLE_SQL)
    for area in areas:
        state = states(conn.execute(STATE_SQL).fetchall(), areas)[area]
        if pending(state):
            conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process
            try:  # may have migrated the file meanwhile
                state = states(conn.execute(STATE_SQL).fetchall(), areas)[area]
                for migration in pending(state):
                    for statement in migration.statements("sqlite"):
                        conn.execute(statement)
                    conn.execute(RECORD_SQL, record_args(migration))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            state = states(conn.execute(STATE_SQL).fetchall(), areas)[area]
        why = problem(state, "sqlite")
        if why is not None:
            raise SchemaMismatch(why)


class _Transaction:
    """Statements inside one open transaction (the database's lock is held meanwhile)."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._db._call(lambda c: c.execute(sql, args).fetchall())

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        return await self._db._call(lambda c: c.execute(sql, args).fetchone())

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._db._call(lambda c: c.execute(sql, args).rowcount)


class SQLiteDatabase:
    """One SQLite file (or ``:memory:``), migrated for ``areas`` when opened."""

    engine: Literal["sqlite"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path | str) -> None:
        self.path = path
        self._conn = conn
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, areas: tuple[str, ...]) -> SQLiteDatabase:
        """Connect (creating the file and its directory) and migrate; blocking, and quick."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise _translated(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:  # pragma: no cover - e.g. no shared memory
                pass
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, areas)
        except sqlite3.Error as exc:
            conn.close()
            raise _translated(exc) from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the connection in the worker thread; errors translated."""
        if self._closed:
            raise DatabaseUnavailable("sqlite: the database is closed")

        def run() -> T:
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise _translated(exc) from None

        return await asyncio.get_running_loop().run_in_executor(self._worker, run)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            return await self._call(lambda c: c.execute(sql, args).fetchall())

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        async with self._lock:
            return await self._call(lambda c: c.execute(sql, args).fetchone())

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._call(lambda c: c.execute(sql, args).rowcount)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        async with self._lock:
            try:
                await self._call(lambda c: c.execute("BEGIN IMMEDIATE"))
                yield _Transaction(self)
                await self._call(lambda c: c.execute("COMMIT"))
            except BaseException:
                # The worker runs jobs in order: this rollback precedes any later statement,
                # even if this coroutine was cancelled while its BEGIN or COMMIT was queued.
                await asyncio.shield(self._call(_rollback))
                raise

    async def check(self) -> None:
        await self.fetchone("SELECT 1")

    def close_now(self) -> None:
        """Close without an event loop (the synchronous compatibility classes)."""
        if self._closed:
            return
        self._closed = True
        self._worker.submit(self._conn.close).result()
        self._worker.shutdown(wait=True)

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            await asyncio.get_running_loop().run_in_executor(self._worker, self._conn.close)
        self._worker.shutdown(wait=False)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
