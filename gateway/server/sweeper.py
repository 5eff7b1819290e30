"""The sweeper: finishes or undoes the work of gateway processes that died mid-write.

Every running gateway sweeps at start-up and then every ``sweep_interval`` seconds: each
journal entry whose lease has expired is taken over (only one process wins it) and handed to
the action that wrote it. An entry whose recovery fails is released and tried again at the
next sweep; an entry of an action this gateway does not load is left alone, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from gateway import telemetry
from gateway.actions import ImageAction, RecoverableAction, RecoveryContext
from gateway.catalog import ImageCatalog
from gateway.journal import Journal, JournalEntry
from gateway.plugin_kit.lease import held
from gateway.server.request_ids import new_request_id
from gateway.settings import Settings
from gateway.storage import StorageTarget

log = logging.getLogger(__name__)


class Sweeper:
    """Hands expired journal entries to their actions' ``recover``."""

    def __init__(
        self,
        journal: Journal,
        actions: Mapping[str, ImageAction],
        catalog: ImageCatalog,
        storage: StorageTarget | None,
        settings: Settings,
    ) -> None:
        self.journal = journal
        self.actions = actions
        self.catalog = catalog
        self.storage = storage
        self.settings = settings
        self._unknown_warned: set[str] = set()

    async def sweep(self) -> int:
        """One pass; returns how many entries were recovered (and finished)."""
        recovered = 0
        for entry in await self.journal.expired():
            action = self.actions.get(entry.action)
            if not isinstance(action, RecoverableAction):
                if entry.id not in self._unknown_warned:
                    self._unknown_warned.add(entry.id)
                    log.warning(
                        "journal entry %s of action %r cannot be recovered here (not loaded)",
                        entry.id,
                        entry.action,
                    )
                continue
            if await self.recover(action, entry):
                recovered += 1
        return recovered

    async def recover(self, action: RecoverableAction, entry: JournalEntry) -> bool:
        """Take ``entry`` over and recover it; False if another process won it or it failed."""
        claimed = await self.journal.take_over(entry)
        if claimed is None:
            return False
        # A fresh request id per repair: its records carry it as ``req_id`` and the storage
        # requests it makes send it as ``x-request-id``, as a client's request's do.
        request_id = new_request_id()
        token = telemetry.request_id.set(request_id)
        try:
            return await self._recover(action, entry, claimed, request_id)
        finally:
            telemetry.request_id.reset(token)

    async def _recover(
        self,
        action: RecoverableAction,
        entry: JournalEntry,
        claimed: JournalEntry,
        request_id: str,
    ) -> bool:
        log.info(
            "recovering journal entry %s (%s, %s) as request %s",
            entry.id,
            entry.action,
            entry.key,
            request_id,
        )
        try:
            async with held(self.journal, claimed) as lease:
                await action.recover(
                    RecoveryContext(
                        entry=lease.entry,
                        journal=self.journal,
                        catalog=self.catalog,
                        storage=self.storage,
                        settings=self.settings,
                    )
                )
        except Exception as exc:
            log.warning("recovery of journal entry %s failed; will retry: %s", entry.id, exc)
            with contextlib.suppress(Exception):
                await self.journal.release(claimed)
            return False
        return True

    async def run(self) -> None:
        """Sweep now, then every ``sweep_interval`` seconds, until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("journal sweep failed")
            await asyncio.sleep(self.settings.sweep_interval)
