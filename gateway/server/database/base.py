"""The engine-neutral interface every store of the gateway talks to.

SQL is written once, with ``?`` placeholders and the subset of SQL that SQLite and PostgreSQL
share; each engine translates the placeholders. Rows come back as plain tuples. Every
statement outside ``transaction()`` is its own transaction; inside one, statements see each
other's writes and commit together (or roll back if the block raises).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Engine = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]


class Queries(Protocol):
    """Statements on the database, or inside one open transaction."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row ``sql`` selects."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """The first row ``sql`` selects, or ``None``."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run an INSERT/UPDATE/DELETE; the number of rows it changed."""


class Database(Queries, Protocol):
    """One database (a SQLite file, or a PostgreSQL connection pool)."""

    @property
    def engine(self) -> Engine:
        """``"sqlite"`` or ``"postgresql"`` (for the few statements that differ)."""

    def transaction(self) -> AbstractAsyncContextManager[Queries]:
        """A write transaction: ``async with db.transaction() as tx: await tx.execute(...)``."""

    async def check(self) -> None:
        """One trivial query (readiness); ``DatabaseUnavailable`` if it fails."""

    async def close(self) -> None:
        """Release the connection(s); the database cannot be used afterwards."""
