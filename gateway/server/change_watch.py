"""Change stamps of database data, known without waiting: what in-memory caches check.

A cache entry counts only while the stamp it was filled under is still the stamp now; any
write, by anyone, moves the stamp. ``SQLiteChangeWatch`` reads ``PRAGMA data_version`` of a
file inline (a few microseconds: it touches only the WAL index in shared memory, and it moves
on every commit by any other connection or process). ``PolledCounterWatch`` polls a counter
row that triggers bump (``account_changes``, ``image_record_changes``) once per interval, for
PostgreSQL, where a read on every request would be a network round trip. Users: the verified
key cache (``gateway.server.key_cache``) and the image records (``image_records``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gateway.server.database import Database, DatabaseError

log = logging.getLogger(__name__)

#: Margin (seconds) on top of the refresh interval before a PostgreSQL lookup counts as fresh.
SETTLE_MARGIN = 0.1


class ChangeWatch(Protocol):
    """The current change stamp of the account data, known without waiting."""

    def stamp(self) -> int | None:
        """The stamp now, or ``None`` when it is not known (then nothing is cached)."""

    def settled(self) -> bool:
        """Whether a store lookup started now reflects every change up to ``stamp()``."""

    async def close(self) -> None:
        """Release what the watch holds."""


#: Seconds a ``PRAGMA data_version`` read stands for (``SQLiteChangeWatch``): a busy server
#: reads it once per millisecond instead of on every request (each read is a statement).
RECHECK_AFTER = 0.001


class SQLiteChangeWatch:
    """``PRAGMA data_version`` of a SQLite file, read inline (see the module docstring).

    A read stands for ``recheck_after`` seconds, so another process's commit is seen within
    that bound. ``local``, when given, counts this process's own writes (the account store's
    ``writes``), so that the stamp moves with them at once, whatever the bound.
    """

    def __init__(
        self,
        path: Path,
        *,
        recheck_after: float = 0.0,
        local: Callable[[], int] | None = None,
    ) -> None:
        # busy_timeout 0: if the WAL index is being recovered, answer "unknown" at once
        # instead of blocking the event loop.
        self._conn = sqlite3.connect(
            str(path), timeout=0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA busy_timeout = 0")
        self.recheck_after = recheck_after
        self._local = local
        self._version: int | None = None
        self._next_check = 0.0

    def stamp(self) -> int | None:
        now = time.monotonic()
        if now >= self._next_check:
            try:
                row = self._conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                self._version = None
                return None
            self._version = int(row[0]) if row else None
            self._next_check = now + self.recheck_after
        if self._version is None or self._local is None:
            return self._version
        # Both in one int: the file's version above, this process's write count below.
        return (self._version << 32) | (self._local() & 0xFFFFFFFF)

    def settled(self) -> bool:
        return True  # the store checks its own counter on every lookup with SQLite

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """``close`` for owners that close synchronously (the image records)."""
        self._conn.close()


#: The account data's change counter (``accounts`` schema version 2).
ACCOUNT_COUNTER_SQL = "SELECT serial FROM account_changes WHERE id = 1"


class PolledCounterWatch:
    """A change counter (``account_changes`` unless told otherwise), read every ``interval``
    seconds by ``run()``."""

    def __init__(self, db: Database, interval: float, query: str = ACCOUNT_COUNTER_SQL) -> None:
        self._db = db
        self.interval = interval
        self.query = query
        self._serial: int | None = None
        self._changed_at = time.monotonic()  # until the first poll, nothing is settled
        self._valid_until = 0.0

    async def poll(self) -> None:
        """Read the counter once; a failure makes the stamp unknown until the next success."""
        try:
            row = await self._db.fetchone(self.query)
        except DatabaseError as exc:
            if self._serial is not None:
                log.warning("change counter unreadable, its cache off: %s (%s)", exc, self.query)
            self._serial = None
            return
        serial = int(row[0]) if row else 0
        now = time.monotonic()
        if serial != self._serial:
            self._serial = serial
            self._changed_at = now
        # A poll that stalls must not leave old entries trusted past two intervals.
        self._valid_until = now + 2 * self.interval + SETTLE_MARGIN

    async def run(self) -> None:
        """Poll until cancelled; a surprise is logged and makes the stamp unknown, never
        ends the loop (the cache would silently stay off)."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("polling a change counter failed (%s)", self.query)
                self._serial = None
            await asyncio.sleep(self.interval)

    def stamp(self) -> int | None:
        if self._serial is None or time.monotonic() > self._valid_until:
            return None
        return self._serial

    def settled(self) -> bool:
        return time.monotonic() >= self._changed_at + self.interval + SETTLE_MARGIN

    async def close(self) -> None:
        return None
