"""PostgreSQL through asyncpg: one connection pool shared by every store of an instance.

The pool opens connections as statements need them (``min_size`` 0), so an instance whose
database went away reconnects by itself once it is back: a connection the server dropped is
marked closed and replaced at its next checkout. Meanwhile every statement fails fast with
``DatabaseUnavailable`` (503). Statements have a timeout on both sides (the server's
``statement_timeout``, asyncpg's ``command_timeout``), and so does waiting for a connection.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

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
    AreaState,
    pending,
    problem,
    record_args,
    states,
)
from gateway.server.database.schema import AREAS, Migration

#: ``pg_advisory_xact_lock`` key that serializes ``db upgrade`` runs across instances.
MIGRATION_LOCK = 0x636C6F7564617069  # "cloudapi"

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, reset
    TimeoutError,  # connect, checkout or command timeout
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, statement timeout
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby during failover
    asyncpg.exceptions.InvalidCatalogNameError,  # the database was dropped
    asyncpg.InternalClientError,  # a connection left mid-operation (then discarded)
)
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (*_UNAVAILABLE, asyncpg.PostgresError)


@dataclass(frozen=True)
class PoolOptions:
    """``[database]`` as the pool needs it."""

    url: str
    pool_size: int = 10
    #: Seconds a statement may run before the server cancels it (503).
    statement_timeout: float = 5.0
    #: Seconds to open a connection, or to wait for a free one in the pool (503 after).
    connect_timeout: float = 5.0


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (outside quoted text)."""
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def _rowcount(status: str) -> int:
    """The row count of a command tag: ``UPDATE 1``, ``INSERT 0 1``, ``DELETE 0``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


@contextmanager
def translated() -> Iterator[None]:
    """asyncpg's and the socket's errors as the layer's own.

    A task being cancelled gets its ``CancelledError`` whatever asyncpg raised instead: an
    operation cut short can surface as asyncpg's own error (``InternalClientError``), and a
    cancellation turned into an ordinary error would leave whoever cancelled waiting forever.
    """
    try:
        yield
    except _DRIVER_ERRORS as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError() from exc
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            raise IntegrityError(str(exc)) from None
        if isinstance(exc, _UNAVAILABLE):
            raise DatabaseUnavailable(f"postgresql: {type(exc).__name__}: {exc}") from None
        raise DatabaseError(f"postgresql: {type(exc).__name__}: {exc}") from None


class _Statements:
    """Statements on one checked-out connection (inside a transaction, or alone)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with translated():
            return [tuple(r) for r in await self._conn.fetch(numbered(sql), *args)]

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        with translated():
            row = await self._conn.fetchrow(numbered(sql), *args)
        return None if row is None else tuple(row)

    async def execute(self, sql: str, *args: Any) -> int:
        with translated():
            return _rowcount(await self._conn.execute(numbered(sql), *args))


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    engine: Literal["postgresql"] = "postgresql"

    def __init__(self, pool: asyncpg.Pool, options: PoolOptions) -> None:
        self._pool = pool
        self.options = options

    @classmethod
    async def connect(cls, options: PoolOptions) -> PostgresDatabase:
        """Create the pool (no connection yet: the first statement opens one)."""
        with translated():
            pool = await asyncpg.create_pool(
                dsn=options.url,
                min_size=0,
                max_size=options.pool_size,
                timeout=options.connect_timeout,
                command_timeout=options.statement_timeout + 1.0,  # the server's fires first
                server_settings={
                    "application_name": "cloudapi-gateway",
                    "statement_timeout": str(int(options.statement_timeout * 1000)),
                    # A stuck instance must not hold row locks (a lease, a counter) forever.
                    "idle_in_transaction_session_timeout": "60000",
                },
            )
        return cls(pool, options)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        with translated():
            async with self._pool.acquire(timeout=self.options.connect_timeout) as conn:
                yield conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._connection() as conn:
            return await _Statements(conn).fetch(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        async with self._connection() as conn:
            return await _Statements(conn).fetchone(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._connection() as conn:
            return await _Statements(conn).execute(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        async with self._connection() as conn:
            tx = conn.transaction()
            with translated():
                await tx.start()
            try:
                yield _Statements(conn)
            except BaseException:
                with translated():
                    await tx.rollback()
                raise
            with translated():
                await tx.commit()

    async def check(self) -> None:
        await self.fetchone("SELECT 1")

    def terminate(self) -> None:
        """Close every connection at once, without an event loop's help."""
        self._pool.terminate()

    async def close(self) -> None:
        try:
            await self._pool.close()
        except Exception:  # pragma: no cover - closing a pool whose server is gone
            self._pool.terminate()

    # --- schema ----------------------------------------------------------------------------

    async def schema_state(self, areas: tuple[str, ...] = AREAS) -> dict[str, AreaState]:
        """Each area's newest migration (version 0 everywhere in an empty database)."""
        try:
            rows = await self.fetch(STATE_SQL)
        except DatabaseError as exc:
            if "UndefinedTableError" not in str(exc):
                raise
            rows = []
        return states(rows, areas)

    async def verify(self, areas: tuple[str, ...] = AREAS) -> None:
        """``SchemaMismatch`` unless this code can work with every area as it stands."""
        for state in (await self.schema_state(areas)).values():
            why = problem(state, "postgresql")
            if why is not None:
                raise SchemaMismatch(why)

    async def upgrade(self, areas: tuple[str, ...] = AREAS) -> list[Migration]:
        """Apply every pending migration in one transaction, one upgrader at a time."""
        applied: list[Migration] = []
        async with self.transaction() as tx:
            await tx.fetch("SELECT pg_advisory_xact_lock(?)", MIGRATION_LOCK)
            await tx.execute(MIGRATIONS_TABLE_SQL)
            current = states(await tx.fetch(STATE_SQL), areas)
            for area in areas:
                for migration in pending(current[area]):
                    for statement in migration.statements("postgresql"):
                        await tx.execute(statement)
                    await tx.execute(RECORD_SQL, *record_args(migration))
                    applied.append(migration)
        return applied
