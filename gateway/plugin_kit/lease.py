"""Holding a journal entry while the work it records runs: renewals, and stopping on loss.

A writer that lost its lease must stop before its next write, or it races the process that took
the entry over. ``held`` renews the lease in the background every third of its length and, if
the lease is lost (or cannot be renewed before it runs out), cancels the task that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from gateway.journal import Journal, JournalEntry, LeaseLost

log = logging.getLogger(__name__)


class Lease:
    """A journal entry this process owns; ``update`` records steps, ``lost`` says if it is gone."""

    def __init__(self, journal: Journal, entry: JournalEntry) -> None:
        self.journal = journal
        self.entry = entry
        self.lost = False

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.entry.data)

    async def update(self, state: str, **changes: Any) -> None:
        """Record the next step; ``changes`` are merged into the entry's data."""
        try:
            self.entry = await self.journal.update(
                self.entry, state, {**self.entry.data, **changes}
            )
        except LeaseLost:
            self.lost = True
            raise

    async def renew(self) -> None:
        try:
            renewed = await self.journal.renew(self.entry)
        except LeaseLost:
            self.lost = True
            raise
        self.entry = replace(self.entry, expires=renewed.expires)

    async def finish(self) -> None:
        """The work is done: delete the entry."""
        await self.journal.finish(self.entry)

    async def release(self) -> None:
        """Leave the entry for the sweeper; never raises (the lease runs out anyway)."""
        try:
            await self.journal.release(self.entry)
        except Exception as exc:
            log.warning("could not release journal entry %s: %s", self.entry.id, exc)

    async def _keep_alive(self, holder: asyncio.Task[Any]) -> None:
        period = self.journal.lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew()
                continue
            except LeaseLost:
                log.error("lost the lease on journal entry %s; stopping its work", self.entry.id)
            except Exception as exc:
                if time.time() < self.entry.expires - period / 2:
                    log.warning("could not renew journal entry %s: %s", self.entry.id, exc)
                    continue
                log.error("journal entry %s could not be renewed in time: %s", self.entry.id, exc)
            self.lost = True
            holder.cancel("lease lost")
            return


@contextlib.asynccontextmanager
async def held(journal: Journal, entry: JournalEntry) -> AsyncIterator[Lease]:
    """Keep ``entry``'s lease alive while the block runs; the block is cancelled if it is lost."""
    lease = Lease(journal, entry)
    holder = asyncio.current_task()
    if holder is None:  # pragma: no cover - always inside a task under asyncio
        raise RuntimeError("held() must run inside an asyncio task")
    renewer = asyncio.create_task(lease._keep_alive(holder))
    try:
        yield lease
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
