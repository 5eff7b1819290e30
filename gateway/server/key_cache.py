"""Verified keys of recent callers, so a signed request needs no database round trip.

Signature auth has to check every request, but the account and public key behind a keyId
rarely change (and a signature that verified once verifies again: see ``VerifiedKey``).
``KeyCache`` keeps, per keyId that verified a signature, the account and the parsed key,
stamped with the account data's *change stamp*; an entry counts only while the stamp is
unchanged, and any write to accounts or keys, by anyone, moves the stamp. Where the stamp
comes from depends on the engine (``ChangeWatch``):

- SQLite: ``PRAGMA data_version`` on a connection of the cache's own. It changes on every
  commit by any other connection (the store's, the CLI's, another process's), and reading
  it touches only the WAL index in shared memory (a few microseconds), so it runs on the
  event loop, at most once per millisecond (``RECHECK_AFTER``): another process's change
  is seen within a millisecond, and this process's own (the store's ``writes``) at once.
- PostgreSQL: the ``account_changes`` counter (bumped by triggers on every account or key
  write), polled in the background once per ``[database] refresh_interval`` (1 s by
  default), the account store's own bound. The store caches too, for the same interval, so
  an entry is only filled once the store's answers are sure to postdate the last change the
  poll saw (``settled``); otherwise a stale answer could be cached under a newer stamp.

Unknown keyIds and failed signatures are never cached: they go to the store every time (which
bounds and caches lookups itself). Without a usable stamp (the poll failing, ``:memory:``
databases, a ``refresh_interval`` of 0 on PostgreSQL) every request takes the store path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gateway import httpsig
from gateway.actions import Account
from gateway.server.accounts import AccountStore
from gateway.server.appkeys import ACCOUNTS, DATABASES
from gateway.server.change_watch import (
    RECHECK_AFTER,
    SETTLE_MARGIN,
    ChangeWatch,
    PolledCounterWatch,
    SQLiteChangeWatch,
)
from gateway.server.database.sqlite import SQLiteDatabase

__all__ = [
    "ENTRY_LIMIT",
    "KEY_CACHE",
    "SETTLE_MARGIN",
    "SIGNATURE_LIMIT",
    "ChangeWatch",
    "KeyCache",
    "PolledCounterWatch",
    "SQLiteChangeWatch",
    "VerifiedKey",
    "key_cache_ctx",
]

log = logging.getLogger(__name__)

#: Verified keyIds kept before the cache starts over (each one is a real, working key).
ENTRY_LIMIT = 10_000


#: Verified signatures remembered per key before that key's memory starts over.
SIGNATURE_LIMIT = 256


@dataclass(frozen=True)
class VerifiedKey:
    """What a keyId resolved to when a signature made with it last verified, and the
    signatures it has verified since.

    A client signs the Date, so every request it sends within one second carries the same
    signing string and (RSA and Ed25519 signatures being deterministic) the same signature.
    Verifying is a pure function of key, algorithm, signing string and signature, so a
    triple that verified once verifies again: it is remembered and not checked a second
    time. The clock-skew check still runs on every request, and the memory goes with the
    entry whenever the account data changes.
    """

    account: Account
    public_key: httpsig.PublicKey
    stamp: int
    signatures: set[tuple[str, str, str]] = field(default_factory=set, compare=False)

    def verified(self, algorithm: str, signing_string: str, signature: str) -> bool:
        """Whether this exact signature of this exact string verified with this key."""
        return (algorithm, signing_string, signature) in self.signatures

    def remember(self, algorithm: str, signing_string: str, signature: str) -> None:
        """Note a signature that just verified with this key."""
        if len(self.signatures) >= SIGNATURE_LIMIT:
            self.signatures.clear()
        self.signatures.add((algorithm, signing_string, signature))


class KeyCache:
    """keyId -> ``VerifiedKey``, valid while the watch's stamp stays the same."""

    def __init__(self, watch: ChangeWatch, *, limit: int = ENTRY_LIMIT) -> None:
        self.watch = watch
        self.limit = limit
        self._entries: dict[str, VerifiedKey] = {}
        self._stamp: int | None = None
        #: Requests answered from the cache, and lookups that went to the store.
        self.hits = 0
        self.misses = 0

    def get(self, key_id: str) -> VerifiedKey | None:
        """The cached key, if the account data has not changed since it was cached."""
        stamp = self.watch.stamp()
        if stamp != self._stamp:
            self._entries.clear()
            self._stamp = stamp
        entry = self._entries.get(key_id) if stamp is not None else None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def fill_stamp(self) -> int | None:
        """Taken before a store lookup: the stamp its answer may be cached under, if any."""
        if not self.watch.settled():
            return None
        return self.watch.stamp()

    def put(
        self, key_id: str, account: Account, public_key: httpsig.PublicKey, stamp: int | None
    ) -> None:
        """Remember a key that just verified a signature (``stamp`` from ``fill_stamp``)."""
        if stamp is None or stamp != self._stamp:
            return  # a change happened meanwhile: the next request asks the store again
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key_id] = VerifiedKey(account, public_key, stamp)

    def __len__(self) -> int:
        return len(self._entries)


KEY_CACHE = web.AppKey("key_cache", KeyCache)


def _watch_for(store: AccountStore, refresh: float) -> ChangeWatch | None:
    db = store.db
    if isinstance(db, SQLiteDatabase):
        if str(db.path) == ":memory:":
            return None
        try:
            return SQLiteChangeWatch(
                Path(db.path), recheck_after=RECHECK_AFTER, local=lambda: store.writes
            )
        except sqlite3.Error as exc:
            log.warning("key cache off: cannot watch %s: %s", db.path, exc)
            return None
    if refresh <= 0:
        return None  # the operator asked for a counter read on every request
    return PolledCounterWatch(db, refresh)


async def key_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the cache of this app (after the account store), and its poller."""
    watch = _watch_for(app[ACCOUNTS], app[DATABASES].options.refresh())
    if watch is None:
        yield
        return
    app[KEY_CACHE] = KeyCache(watch)
    task: asyncio.Task[None] | None = None
    if isinstance(watch, PolledCounterWatch):
        await watch.poll()
        task = asyncio.create_task(watch.run(), name="key-cache-poll")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await watch.close()
