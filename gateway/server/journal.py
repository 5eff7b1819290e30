"""The intent journal (``gateway.journal.Journal``) in the gateway's database.

Every method is one statement, atomic on its own: an insert that the unique ``key`` refuses
while another entry holds the destination, and updates that match the owner (and, to take an
entry over, the expired lease) so two processes can never both own one entry. The same SQL
runs on SQLite (every process of one host sharing the file) and on PostgreSQL (every instance
sharing the database): exports to one destination take turns across instances, and any running
instance's sweeper repairs the export of one that died, once its lease has run out. Leases are
on each instance's own clock, so instances sharing a database need synchronized clocks (NTP);
the default 60 s lease leaves a wide margin.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.journal import JournalEntry, LeaseLost
from gateway.server.database import Database, IntegrityError
from gateway.server.database.sqlite import SQLiteDatabase

_COLUMNS = "id, action, key, state, data, owner, expires"


def process_owner() -> str:
    """A name no other running process has: host, pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    id_, action, key, state, data, owner, expires = row
    return JournalEntry(id_, action, key, state, json.loads(data), owner, float(expires))


class DatabaseJournal:
    """The journal table of a ``Database``, shared by every process that opens it."""

    def __init__(self, db: Database, *, lease_seconds: float, owner: str | None = None) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.owner = owner or process_owner()

    async def begin(
        self, action: str, key: str, state: str, data: Mapping[str, Any]
    ) -> JournalEntry | None:
        now = time.time()
        entry = JournalEntry(
            uuid.uuid4().hex, action, key, state, dict(data), self.owner, now + self.lease_seconds
        )
        try:
            await self.db.execute(
                f"INSERT INTO journal ({_COLUMNS}, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                entry.id,
                action,
                key,
                state,
                json.dumps(entry.data),
                self.owner,
                entry.expires,
                now,
            )
        except IntegrityError:
            return None
        return entry

    async def holder(self, key: str) -> JournalEntry | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM journal WHERE key = ?", key)
        return None if row is None else _entry(row)

    async def _owned_update(self, entry: JournalEntry, sql: str, args: tuple[Any, ...]) -> None:
        """Run an UPDATE/DELETE ending in ``WHERE id = ? AND owner = ?``; LeaseLost if no row."""
        if await self.db.execute(sql, *args, entry.id, self.owner) != 1:
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
        claimed = await self.db.execute(
            "UPDATE journal SET owner = ?, expires = ? WHERE id = ? AND owner = ? AND expires < ?",
            self.owner,
            expires,
            entry.id,
            entry.owner,
            now,
        )
        if claimed != 1:
            return None
        return JournalEntry(
            entry.id, entry.action, entry.key, entry.state, entry.data, self.owner, expires
        )

    async def expired(self) -> list[JournalEntry]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM journal WHERE expires < ? ORDER BY created", time.time()
        )
        return [_entry(row) for row in rows]


class SQLiteJournal(DatabaseJournal):
    """The journal in a SQLite file of its own (opened and migrated here; ``close`` closes it)."""

    def __init__(self, path: str | Path, *, lease_seconds: float, owner: str | None = None) -> None:
        self.path = Path(path)
        self._sqlite = SQLiteDatabase.open(path, ("journal",))
        super().__init__(self._sqlite, lease_seconds=lease_seconds, owner=owner)

    def close(self) -> None:
        self._sqlite.close_now()
