"""ExportImage: copy an image's file, then its manifest, into the caller's Manta tree.

Order of checks follows CloudAPI + IMGAPI (MissingParameter, NotImageOwner, InvalidParameter,
StorageUnsupported, file count, NotMantaPathOwner), then the gateway's own path-tree rule, all
before any request reaches storage. Differences from Triton are in docs/compatibility.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from gateway.actions import ActionContext, RecoveryContext
from gateway.catalog import Image, ImageCatalog, ImageFile
from gateway.errors import (
    GatewayError,
    ImageHasNoFile,
    InternalError,
    MissingParameter,
    NotImageOwner,
    NotImplementedByGateway,
    StorageUnsupported,
)
from gateway.journal import Journal
from gateway.plugin_kit.javascript import as_javascript, load_json_file
from gateway.storage import StorageTarget
from gateway.telemetry import events
from plugins.actions.export.failures import stat_or_fail
from plugins.actions.export.paths import (
    EXTENSIONS,
    MantaPath,
    check_owner,
    check_tree,
    export_paths,
    file_stem,
    invalid_path,
    normalize,
)
from plugins.actions.export.replacement import ExportRecord, Fingerprint
from plugins.actions.export.report import ExportReport
from plugins.actions.export.writer import ExportWriter, recover_entry

log = logging.getLogger(__name__)


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped beside this module (package data)."""
    return load_json_file(__package__, "schema.json")


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """IMGAPI's exported manifest: ``JSON.stringify(serialize(), null, 4)``, no trailing newline.

    The catalog keeps manifests in IMGAPI key order without admin fields; what is left is
    JavaScript's number and string formatting: integral floats print without ``.0`` and
    non-ASCII characters are written as themselves (UTF-8), not as ``\\u`` escapes.
    """
    return json.dumps(as_javascript(manifest), indent=4, ensure_ascii=False).encode("utf-8")


class _PathLocks:
    """One lock per destination, so exports to the same objects in this process take turns."""

    def __init__(self) -> None:
        self._locks: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, target: StorageTarget, path: str) -> AsyncIterator[None]:
        key = (id(target), path)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class ExportAction:
    """``action=export``: see the module docstring and docs/compatibility.md.

    A recoverable action: each export is journaled, and ``recover`` repairs one whose gateway
    process died (see ``replacement`` for the rules).
    """

    name = "export"

    def __init__(self) -> None:
        self.schema: Mapping[str, Any] = load_schema()
        self._locks = _PathLocks()
        #: Exports whose client went away: kept referenced until they finish.
        self._detached: set[asyncio.Task[dict[str, str]]] = set()

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check everything that needs no storage, then export in a task the client cannot cut.

        Every export ends in one log record (``ExportReport``), a warning when it failed.
        """
        storage = ctx.storage
        report = ExportReport(
            image=ctx.image.uuid,
            manta_path=params.get("manta_path"),
            storage=ctx.settings.storage.get("kind") if storage is not None else None,
            storage_url=storage.public_url if storage is not None else None,
        )
        try:
            return await self._run(ctx, params, report)
        except Exception as exc:  # refused before writing (the export's task reports itself)
            report.failed(exc)
            raise

    async def _run(
        self, ctx: ActionContext, params: Mapping[str, Any], report: ExportReport
    ) -> Mapping[str, Any]:
        raw = params.get("manta_path")
        if not raw:
            raise MissingParameter("Image destination manta_path is a required argument")
        image = ctx.image
        if image.owner != ctx.account.uuid:
            raise NotImageOwner(
                f"account {ctx.account.uuid} is not the owner of image {image.uuid}"
            )
        mpath = normalize(raw)
        storage = ctx.storage
        if storage is None:
            raise StorageUnsupported("storage type is unsupported")
        journal = ctx.journal
        if journal is None:
            raise InternalError("this gateway keeps no journal; exports need one")
        image_file = _single_file(image)
        check_owner(mpath, ctx.account.login, ctx.account.uuid)
        check_tree(mpath)
        extension = EXTENSIONS.get(image_file.compression or "none")
        if extension is None:
            raise InternalError(
                f"image {image.uuid} has an unknown file compression {image_file.compression!r}"
            )

        task = asyncio.create_task(
            _reported(
                image_file.size,
                report.logged(
                    image_file.size,
                    self._export(
                        ctx.catalog, storage, journal, image, image_file, mpath, extension, report
                    ),
                ),
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                log.info("client left; export of %s to %s continues", image.uuid, mpath.path)
                self._detached.add(task)
                task.add_done_callback(self._detached_done)
            raise

    async def recover(self, ctx: RecoveryContext) -> None:
        """Finish or undo an export whose gateway process died (the sweeper calls this)."""
        await recover_entry(ctx.storage, ctx.journal, ctx.entry)

    def _detached_done(self, task: asyncio.Task[dict[str, str]]) -> None:
        """Log how an export whose client left ended (and retrieve its exception)."""
        self._detached.discard(task)
        if task.cancelled():
            log.warning("detached export was cancelled")
        elif (exc := task.exception()) is not None:
            log.warning("detached export failed: %s", exc)
        else:
            log.info("detached export finished: %s", task.result())

    async def _export(
        self,
        catalog: ImageCatalog,
        storage: StorageTarget,
        journal: Journal,
        image: Image,
        image_file: ImageFile,
        mpath: MantaPath,
        extension: str,
        report: ExportReport,
    ) -> dict[str, str]:
        """Pick the mode, check the directory, then write under the destination's lock."""
        info = await stat_or_fail(storage, mpath.path, f"error checking manta_path {mpath.path}")
        if info is not None and info.is_directory:
            base = posixpath.join(mpath.path, file_stem(image.name, image.version))
        elif mpath.wants_directory or mpath.depth < 3:
            what = "missing" if info is None else "an object"
            raise invalid_path(
                f"manta_path {mpath.path}/ names a directory, but {mpath.path} is {what}",
                "DirectoryDoesNotExist",
            )
        else:
            parent = mpath.parent
            pinfo = await stat_or_fail(storage, parent, f"error checking directory {parent}")
            if pinfo is None:
                raise invalid_path(f"directory {parent} does not exist", "DirectoryDoesNotExist")
            if not pinfo.is_directory:
                raise invalid_path(
                    f"{parent} is an object, not a directory", "DirectoryDoesNotExist"
                )
            base = mpath.path
        manifest_path, file_path = export_paths(base, extension)
        report.manifest_path, report.image_path = manifest_path, file_path
        record = ExportRecord(
            store=storage.public_url,
            manifest_path=manifest_path,
            file_path=file_path,
            image=image.uuid,
            new_file=Fingerprint(size=image_file.size, md5=image_file.content_md5),
            new_manifest=manifest_bytes(image.manifest),
        )
        writer = ExportWriter(catalog, storage, journal, image, image_file, record)
        async with self._locks.hold(storage, manifest_path):
            try:
                await writer.write()
            finally:
                report.method = "copy" if writer.copied else "stream"
        return {
            "manta_url": storage.public_url,
            "image_path": file_path,
            "manifest_path": manifest_path,
        }


async def _reported(size: int, export: Awaitable[dict[str, str]]) -> dict[str, str]:
    """Await ``export``, telling ``events()`` that it started and how it ended: ``ok`` (and
    ``size`` bytes written), or the code of the error the caller is answered."""
    listener = events()
    listener.export_started()
    started = time.monotonic()
    outcome = InternalError.code  # what an exception that is no GatewayError becomes
    try:
        result = await export
        outcome = "ok"
        return result
    except GatewayError as err:
        outcome = err.code
        raise
    finally:
        written = size if outcome == "ok" else 0
        listener.export_finished(outcome, written, time.monotonic() - started)


def _single_file(image: Image) -> ImageFile:
    """``files[0]``, or the 4xx for images with none or several (IMGAPI: 400 NotImplemented)."""
    if not image.files:
        raise ImageHasNoFile(f"image {image.uuid} has no file to export")
    if len(image.files) > 1:
        raise NotImplementedByGateway("cannot export images with multiple files")
    return image.files[0]
