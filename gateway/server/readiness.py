"""Readiness: whether this gateway should be sent requests (``GET /--ready``).

Ready means the databases answer a trivial query, the storage target answers its probe
(``gateway.storage.ProbedTarget``; cached for ``cache_seconds``, so load balancers polling
many times a second send the store one request every few seconds), and the server is not
draining: ``cloudapi-gateway serve`` marks it draining on SIGTERM, keeps serving for
``drain_seconds`` while readiness answers 503, and only then stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.journal import Journal
from gateway.server.accounts import AccountStore
from gateway.storage import ProbedTarget, StorageError, StorageTarget

log = logging.getLogger(__name__)

#: A journal key nothing uses: looking it up is the journal's trivial query.
_PROBE_KEY = "readiness-probe"
#: The answers of a check that does not stop the gateway being ready.
_READY = frozenset({"ok", "not configured", "not probed"})


@dataclass(frozen=True)
class Report:
    """One answer: ``checks`` maps ``database``/``storage`` to ``ok`` or what went wrong."""

    ready: bool
    checks: dict[str, str]
    draining: bool = False


class Readiness:
    """The checks behind ``GET /--ready``, and the draining switch."""

    def __init__(self, *, cache_seconds: float = 5.0, timeout: float = 2.0) -> None:
        #: How long a storage probe's answer (good or bad) is reused.
        self.cache_seconds = cache_seconds
        #: Longest wait for each check.
        self.timeout = timeout
        #: The clock of the cache (tests replace it).
        self.clock: Callable[[], float] = time.monotonic
        self.draining = False
        self._storage: tuple[float, str] | None = None
        self._probing: asyncio.Lock | None = None

    def drain(self) -> None:
        """From now on, answer 503: the server is about to stop."""
        if not self.draining:
            log.info("draining: /--ready answers 503 from now on")
        self.draining = True

    async def check(
        self, accounts: AccountStore, journal: Journal, storage: StorageTarget | None
    ) -> Report:
        if self.draining:
            return Report(ready=False, checks={}, draining=True)
        checks = {
            "database": await self._database(accounts, journal),
            "storage": await self._cached_storage(storage),
        }
        ready = all(value in _READY for value in checks.values())
        return Report(ready=ready, checks=checks)

    async def _timed(self, what: str, work: Awaitable[object]) -> str:
        """``ok``, or a short reason (details go to the log, not to the unauthenticated caller)."""
        try:
            await asyncio.wait_for(work, self.timeout)
        except TimeoutError:
            log.warning("readiness: %s did not answer within %ss", what, self.timeout)
            return "timed out"
        except StorageError as exc:
            log.warning("readiness: %s failed: %s", what, exc)
            return f"failed ({type(exc).__name__})"
        except Exception as exc:
            log.warning("readiness: %s failed: %r", what, exc)
            return "failed"
        return "ok"

    async def _database(self, accounts: AccountStore, journal: Journal) -> str:
        answer = await self._timed("the accounts database", accounts.check())
        if answer != "ok":
            return answer
        return await self._timed("the journal", journal.holder(_PROBE_KEY))

    async def _cached_storage(self, storage: StorageTarget | None) -> str:
        if storage is None:
            return "not configured"
        if not isinstance(storage, ProbedTarget):
            return "not probed"  # the target has nothing cheap to ask: taken to be ready
        if self._probing is None:
            self._probing = asyncio.Lock()
        async with self._probing:  # one probe at a time; the others take its answer
            cached = self._storage
            if cached is not None and self.clock() - cached[0] < self.cache_seconds:
                return cached[1]
            answer = await self._timed("the storage probe", storage.probe())
            self._storage = (self.clock(), answer)
            return answer
