"""One export's writes, recorded in the journal step by step (rules in ``replacement``).

The writer holds the destination's journal entry for the whole write: an export to the same
destination in another process waits for it, and one whose lease ran out is repaired before
the next export starts. On a failure the writer undoes its own work at once; what it cannot
undo (storage refusing the rollback too) it leaves to the sweeper, journal entry and all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from gateway.catalog import Image, ImageCatalog, ImageFile, StoredFileCatalog
from gateway.errors import GatewayError, InternalError
from gateway.journal import Journal, JournalEntry
from gateway.plugin_kit.lease import Lease, held
from gateway.storage import (
    CopyingTarget,
    CopyUnsupported,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageTarget,
)
from plugins.actions.export.failures import export_error, stat_or_fail, storage_error
from plugins.actions.export.integrity import (
    BodyState,
    CatalogReadError,
    CorruptFile,
    ImageFileBody,
    copy_mismatch,
)
from plugins.actions.export.paths import invalid_path
from plugins.actions.export.replacement import (
    BEGUN,
    COPYING,
    DONE,
    MAX_PREVIOUS_MANIFEST,
    PREPARED,
    REPLACING,
    ROLLING_BACK,
    ExportRecord,
    make_safety_copy,
    observed,
    put_manifest,
    read_small,
    remove_safety_copy,
    repair,
    rollback,
    safety_path_for,
)

log = logging.getLogger(__name__)

#: Seconds between two looks at a destination another process is exporting to.
HOLDER_POLL_SECONDS = 0.2


def journal_key(store: str, manifest_path: str) -> str:
    """One key per destination: exports to it take turns, in every process."""
    return f"export:{store}{manifest_path}"


async def recover_entry(
    storage: StorageTarget | None, journal: Journal, entry: JournalEntry
) -> str:
    """Repair an export whose process died; the entry must be ours (taken over). Returns what
    was done; raises a StorageError (entry kept) when the store refuses."""
    if entry.state == BEGUN:  # nothing was written yet
        await journal.finish(entry)
        return "nothing to do"
    record = ExportRecord.from_data(entry.data)
    if storage is None or storage.public_url != record.store:
        raise RuntimeError(f"export entry {entry.id} was written to {record.store}, not here")
    outcome = await repair(storage, entry.state, record)
    log.info("export to %s %s after its process stopped", record.manifest_path, outcome)
    await journal.finish(entry)
    return outcome


class ExportWriter:
    """Writes one image's file and manifest to their destination paths."""

    def __init__(
        self,
        catalog: ImageCatalog,
        storage: StorageTarget,
        journal: Journal,
        image: Image,
        image_file: ImageFile,
        record: ExportRecord,
    ) -> None:
        self.catalog = catalog
        self.storage = storage
        self.journal = journal
        self.image = image
        self.image_file = image_file
        self.record = record
        #: What the client is told failed, should the next request fail.
        self.step = "error starting the export"
        self.body_state = BodyState()
        #: The store copied the file (no byte passed through the gateway).
        self.copied = False

    async def write(self) -> None:
        """Hold the destination, replace what it holds; on failure, undo and raise."""
        entry = await self._acquire()
        async with held(self.journal, entry) as lease:
            try:
                await self._replace(lease)
            except BaseException as exc:
                if lease.lost:
                    raise InternalError(
                        f"export to {self.record.manifest_path} lost its journal lease and "
                        "stopped; the gateway repairs the destination"
                    ) from exc
                error = await self._undo(lease, exc)
                if error is None:
                    raise
                raise error from exc

    async def _acquire(self) -> JournalEntry:
        """A journal entry holding the destination: wait while a live export holds it, and
        repair first what a dead one left (its lease expired)."""
        key = journal_key(self.record.store, self.record.manifest_path)
        while True:
            entry = await self.journal.begin("export", key, BEGUN, self.record.to_data())
            if entry is not None:
                return entry
            holder = await self.journal.holder(key)
            if holder is None or holder.expires >= time.time():
                await asyncio.sleep(HOLDER_POLL_SECONDS)
                continue
            claimed = await self.journal.take_over(holder)
            if claimed is None:
                continue
            try:
                async with held(self.journal, claimed):
                    await recover_entry(self.storage, self.journal, claimed)
            except StorageError as exc:
                await self.journal.release(claimed)
                raise storage_error(exc, "error repairing an earlier export") from exc

    async def _replace(self, lease: Lease) -> None:
        """Look, safety-copy, remove the manifest, file, manifest, drop the copy; journaled."""
        storage, record = self.storage, self.record
        manifest_path, file_path = record.manifest_path, record.file_path
        # Both looked up at once (a round trip each on a long link); the file's error first.
        previous_file, previous_manifest = await asyncio.gather(
            self._existing(file_path), self._existing(manifest_path), return_exceptions=True
        )
        if isinstance(previous_file, BaseException):
            raise previous_file
        if isinstance(previous_manifest, BaseException):
            raise previous_manifest
        record = replace(
            record,
            previous_manifest=(
                await self._read_manifest(previous_manifest) if previous_manifest else None
            ),
            previous_file=observed(previous_file),
            safety_path=(
                safety_path_for(file_path, lease.entry.id)
                if previous_file is not None and not record.new_file.matches(previous_file)
                else None
            ),
        )
        self.record = record
        await lease.update(PREPARED, **record.to_data())
        if record.safety_path is not None:
            self.step = f"error keeping a copy of the previous image file {file_path}"
            await lease.update(COPYING)
            copied = await make_safety_copy(storage, record)
            record = replace(
                record, safety_path=record.safety_path if copied else None, safety_copied=copied
            )
            self.record = record
        await lease.update(REPLACING, **record.to_data())
        if record.previous_manifest is not None:
            self.step = f"error removing the previous manifest {manifest_path}"
            await storage.delete_object(manifest_path)
        self.step = f"error exporting image file to {file_path}"
        if not await self._copy_file(file_path):
            await storage.put_object(
                file_path,
                ImageFileBody(self.catalog, self.image.uuid, self.image_file, self.body_state),
                size=self.image_file.size,
                content_md5=self.image_file.content_md5,
                content_type="application/octet-stream",
            )
        self.step = f"error exporting image manifest to {manifest_path}"
        await put_manifest(storage, manifest_path, record.new_manifest)
        await lease.update(DONE)
        try:
            await remove_safety_copy(storage, record)
        except StorageError as exc:
            log.warning("export done; its safety copy is left to the sweeper: %s", exc)
            await lease.release()
            return
        await lease.finish()

    async def _copy_file(self, file_path: str) -> bool:
        """Have the store copy the catalog's file to ``file_path`` when both are in it; ``False``
        when it cannot (different stores, no copy, Manta v2): then the caller streams it."""
        catalog, storage = self.catalog, self.storage
        if not isinstance(catalog, StoredFileCatalog) or not isinstance(storage, CopyingTarget):
            return False
        stored = await catalog.locate_file(self.image.uuid)
        if not storage.can_copy_from(stored.target):
            return False
        try:
            info = await storage.copy_object(stored.path, file_path)
        except CopyUnsupported as exc:
            log.info("export of %s streams the file: %s", self.image.uuid, exc)
            return False
        except ObjectNotFound as exc:
            raise self.body_state.fail(
                CatalogReadError(f"the catalog's file {stored.path} is missing from the store")
            ) from exc
        problem = copy_mismatch(info, self.image_file)
        if problem:
            raise self.body_state.fail(CorruptFile(f"the store copied {problem}"))
        self.copied = True
        return True

    async def _existing(self, path: str) -> ObjectInfo | None:
        existing = await stat_or_fail(self.storage, path, f"error checking {path}")
        if existing is not None and existing.is_directory:
            raise invalid_path(f"{path} is a directory; cannot write the image there")
        return existing

    async def _read_manifest(self, info: ObjectInfo) -> bytes:
        """The previous manifest's bytes, kept to put back; a huge object there is refused."""
        path = info.path
        what = f"error reading the previous manifest {path}"
        try:
            document = await read_small(self.storage, path, MAX_PREVIOUS_MANIFEST)
        except StorageError as exc:
            raise storage_error(exc, what) from exc
        if document is None:
            raise invalid_path(
                f"{path} holds more than {MAX_PREVIOUS_MANIFEST} bytes, which is no image "
                "manifest; the export does not replace it"
            )
        return document

    async def _undo(self, lease: Lease, exc: BaseException) -> GatewayError | None:
        """Put the destination back; the error for the client (None: re-raise ``exc``)."""
        error = export_error(exc, self.body_state, self.image.uuid, self.step)
        state = lease.entry.state
        try:
            if state in (BEGUN, PREPARED, COPYING):  # the destination is untouched
                await remove_safety_copy(self.storage, self.record)
            else:
                await lease.update(ROLLING_BACK)
                await rollback(self.storage, self.record)
        except Exception as undo_exc:
            log.warning("export rollback of %s failed: %s", self.record.manifest_path, undo_exc)
            await lease.release()
            if error is not None:
                error.message += "; the gateway finishes undoing it once storage allows"
            return error
        await lease.finish()
        return error
