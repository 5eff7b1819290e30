"""The intent journal: what an action records before it writes to storage, so that a gateway
process that dies mid-write is finished or undone by another one.

An entry holds one *destination key* (e.g. the store and the manifest path of an export): at
most one entry per key exists at a time, which is how writers to one destination take turns
across processes. Each entry has a lease (``owner``, ``expires``) that its writer renews; once
it has expired, any process may take the entry over, and the host's sweeper hands it to the
action that wrote it (``RecoverableAction.recover``). Entries are deleted when their work is
done. The host keeps the journal in its database; every method is one short transaction, so
only the engine changes when several hosts share one database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class JournalEntry:
    """One recorded intent, as it was when read or last written by this process."""

    id: str
    #: The name of the action that wrote it, and will be asked to recover it.
    action: str
    #: The destination it holds; unique among entries.
    key: str
    #: The action's own step name ("prepared", "file_written", ...).
    state: str
    #: The action's own JSON-serialisable record of what it is doing.
    data: Mapping[str, Any]
    owner: str
    #: Seconds since the epoch after which the lease is free for the taking.
    expires: float


class LeaseLost(Exception):
    """The entry is gone, or another process took it over: stop writing at once."""


@runtime_checkable
class Journal(Protocol):
    """The host's journal. Writes by a process that no longer owns the entry raise LeaseLost."""

    #: This process's owner name, unique among running processes.
    owner: str
    #: Seconds a lease lasts after each ``begin``, ``update``, ``renew`` or ``take_over``.
    lease_seconds: float

    async def begin(
        self, action: str, key: str, state: str, data: Mapping[str, Any]
    ) -> JournalEntry | None:
        """Record a new entry owned by this process, or ``None`` if an entry holds ``key``."""

    async def holder(self, key: str) -> JournalEntry | None:
        """The entry holding ``key``, if any."""

    async def update(
        self, entry: JournalEntry, state: str, data: Mapping[str, Any]
    ) -> JournalEntry:
        """Record the next step (and renew the lease)."""

    async def renew(self, entry: JournalEntry) -> JournalEntry:
        """Extend the lease by ``lease_seconds`` from now."""

    async def release(self, entry: JournalEntry) -> None:
        """Give the entry up unfinished: its lease ends now, so a sweeper takes it over."""

    async def finish(self, entry: JournalEntry) -> None:
        """Delete the entry: its work is done, its key is free."""

    async def take_over(self, entry: JournalEntry) -> JournalEntry | None:
        """Claim an entry whose lease has expired; ``None`` if it was not expired or another
        process claimed it first (compare-and-swap on the owner)."""

    async def expired(self) -> list[JournalEntry]:
        """Every entry whose lease has expired, oldest first."""
