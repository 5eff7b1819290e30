"""The intent journal (``gateway.journal.Journal``) in the gateway's SQLite database.

Every method is one statement, atomic on its own: an insert that the unique ``key`` refuses
while another entry holds the destination, and updates that match the owner (and, to take an
entry over, the expired lease) so two processes can never both own one entry. WAL mode and a
busy timeout let several gateway processes on one host share the file. The SQL is plain enough
that moving to PostgreSQL changes the driver and the placeholders, not the logic.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from gateway.journal import JournalEntry, LeaseLost

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_expires ON journal (expires);
"""
_COLUMNS = "id, action, key, state, data, owner, expires"


def process_owner() -> str:
    """A name no other running process has: host, pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    id_, action, key, state, data, owner, expires = row
    return JournalEntry(id_, action, key, state, json.loads(data), owner, float(expires))


class SQLiteJournal:
    """The journal in one SQLite file, shared by every gateway process on the host."""

    def __init__(self, path: str | Path, *, lease_seconds: float, owner: str | None = None) -> None:
        self.path = Path(path)
        self.lease_seconds = lease_seconds
        self.owner = owner or process_owner()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), timeout=10.0, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._db)

        return await asyncio.to_thread(locked)

    async def begin(
        self, action: str, key: str, state: str, data: Mapping[str, Any]
    ) -> JournalEntry | None:
        now = time.time()
        entry = JournalEntry(
            uuid.uuid4().hex, action, key, state, dict(data), self.owner, now + self.lease_seconds
        )

        def insert(db: sqlite3.Connection) -> bool:
            try:
                db.execute(
                    f"INSERT INTO journal ({_COLUMNS}, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.id,
                        action,
                        key,
                        state,
                        json.dumps(entry.data),
                        self.owner,
                        entry.expires,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                return False
            return True

        return entry if await self._run(insert) else None

    async def holder(self, key: str) -> JournalEntry | None:
        def select(db: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = db.execute(
                f"SELECT {_COLUMNS} FROM journal WHERE key = ?", (key,)
            ).fetchone()
            return row

        row = await self._run(select)
        return None if row is None else _entry(row)

    async def _owned_update(self, entry: JournalEntry, sql: str, args: tuple[Any, ...]) -> None:
        """Run an UPDATE/DELETE ending in ``WHERE id = ? AND owner = ?``; LeaseLost if no row."""

        def change(db: sqlite3.Connection) -> int:
            return db.execute(sql, (*args, entry.id, self.owner)).rowcount

        if await self._run(change) != 1:
            raise LeaseLost(f"journal entry {entry.id} is no longer owned by {self.owner}")

    async def update(
        self, entry: JournalEntry, state: str, data: Mapping[str, Any]
    ) -> JournalEntry:
        expires = time.time() + self.lease_seconds
        await self._owned_update(
            entry,
            "UPDATE journal SET state = ?, data = ?, expires = ? WHERE id = ? AND owner = ?",
            (state, json.dumps(dict(data)), expires),
        )
        return JournalEntry(
            entry.id, entry.action, entry.key, state, dict(data), self.owner, expires
        )

    async def renew(self, entry: JournalEntry) -> JournalEntry:
        expires = time.time() + self.lease_seconds
        await self._owned_update(
            entry, "UPDATE journal SET expires = ? WHERE id = ? AND owner = ?", (expires,)
        )
        return JournalEntry(
            entry.id, entry.action, entry.key, entry.state, entry.data, self.owner, expires
        )

    async def release(self, entry: JournalEntry) -> None:
        await self._owned_update(
            entry, "UPDATE journal SET expires = 0 WHERE id = ? AND owner = ?", ()
        )

    async def finish(self, entry: JournalEntry) -> None:
        await self._owned_update(entry, "DELETE FROM journal WHERE id = ? AND owner = ?", ())

    async def take_over(self, entry: JournalEntry) -> JournalEntry | None:
        now = time.time()
        expires = now + self.lease_seconds

        def claim(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE journal SET owner = ?, expires = ?"
                " WHERE id = ? AND owner = ? AND expires < ?",
                (self.owner, expires, entry.id, entry.owner, now),
            ).rowcount

        if await self._run(claim) != 1:
            return None
        return JournalEntry(
            entry.id, entry.action, entry.key, entry.state, entry.data, self.owner, expires
        )

    async def expired(self) -> list[JournalEntry]:
        now = time.time()

        def select(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(
                f"SELECT {_COLUMNS} FROM journal WHERE expires < ? ORDER BY created", (now,)
            ).fetchall()

        return [_entry(row) for row in await self._run(select)]
