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
import math
import posixpath
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any

from gateway.actions import ActionContext
from gateway.catalog import Image, ImageCatalog, ImageFile
from gateway.errors import (
    GatewayError,
    ImageFileCorrupt,
    ImageHasNoFile,
    InternalError,
    MissingParameter,
    NotImageOwner,
    NotImplementedByGateway,
    StorageFailed,
    StorageIsDown,
    StorageUnsupported,
)
from gateway.plugin_kit import content_md5
from gateway.storage import (
    AccessDenied,
    BodyFactory,
    ChecksumMismatch,
    DirectoryDoesNotExist,
    ObjectInfo,
    ParentNotDirectory,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
from plugins.actions.export.integrity import BodyState, CatalogReadError, CorruptFile, ImageFileBody
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

log = logging.getLogger(__name__)


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped beside this module (package data)."""
    text = resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """IMGAPI's exported manifest: ``JSON.stringify(serialize(), null, 4)``, no trailing newline.

    The catalog keeps manifests in IMGAPI key order without admin fields; what is left is
    JavaScript's number and string formatting: integral floats print without ``.0`` and
    non-ASCII characters are written as themselves (UTF-8), not as ``\\u`` escapes.
    """
    return json.dumps(_as_js(manifest), indent=4, ensure_ascii=False).encode("utf-8")


def _as_js(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _as_js(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_js(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _bytes_body(data: bytes) -> BodyFactory:
    async def body() -> AsyncIterator[bytes]:
        yield data

    return body


def storage_error(exc: StorageError, what: str) -> GatewayError:
    """Map a target's error to what the caller sees: the step that failed, no internals."""
    if isinstance(exc, StorageUnavailable):
        return StorageIsDown(f"storage is down at the moment ({what})")
    if isinstance(exc, DirectoryDoesNotExist):
        return invalid_path(
            f"{what}: directory {exc.path or '(unknown)'} does not exist", "DirectoryDoesNotExist"
        )
    if isinstance(exc, ParentNotDirectory):
        return invalid_path(
            f"{what}: {exc.path or 'the parent'} is an object, not a directory",
            "DirectoryDoesNotExist",
        )
    if isinstance(exc, AccessDenied):
        return StorageFailed(f"{what}: storage refused access to {exc.path or 'the path'}")
    if isinstance(exc, ChecksumMismatch):
        return StorageFailed(f"{what}: storage received bytes whose MD5 differs from the one sent")
    if isinstance(exc, StorageRequestFailed) and exc.code:
        return StorageFailed(f"{what}: storage answered {exc.code}")
    return StorageFailed(f"{what}: storage request failed")


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
    """``action=export``: see the module docstring and docs/compatibility.md."""

    name = "export"

    def __init__(self) -> None:
        self.schema: Mapping[str, Any] = load_schema()
        self._locks = _PathLocks()
        #: Exports whose client went away: kept referenced until they finish.
        self._detached: set[asyncio.Task[dict[str, str]]] = set()

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check everything that needs no storage, then export in a task the client cannot cut."""
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
        image_file = _single_file(image)
        check_owner(mpath, ctx.account.login, ctx.account.uuid)
        check_tree(mpath)
        extension = EXTENSIONS.get(image_file.compression or "none")
        if extension is None:
            raise InternalError(
                f"image {image.uuid} has an unknown file compression {image_file.compression!r}"
            )

        task = asyncio.create_task(
            self._export(ctx.catalog, storage, image, image_file, mpath, extension)
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                log.info("client left; export of %s to %s continues", image.uuid, mpath.path)
                self._detached.add(task)
                task.add_done_callback(self._detached_done)
            raise

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
        image: Image,
        image_file: ImageFile,
        mpath: MantaPath,
        extension: str,
    ) -> dict[str, str]:
        """Pick the mode, check the directory, then write under the destination's lock."""
        info = await _stat(storage, mpath.path, f"error checking manta_path {mpath.path}")
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
            pinfo = await _stat(storage, parent, f"error checking directory {parent}")
            if pinfo is None:
                raise invalid_path(f"directory {parent} does not exist", "DirectoryDoesNotExist")
            if not pinfo.is_directory:
                raise invalid_path(
                    f"{parent} is an object, not a directory", "DirectoryDoesNotExist"
                )
            base = mpath.path
        manifest_path, file_path = export_paths(base, extension)
        async with self._locks.hold(storage, manifest_path):
            await self._write(catalog, storage, image, image_file, manifest_path, file_path)
        return {
            "manta_url": storage.public_url,
            "image_path": file_path,
            "manifest_path": manifest_path,
        }

    async def _write(
        self,
        catalog: ImageCatalog,
        storage: StorageTarget,
        image: Image,
        image_file: ImageFile,
        manifest_path: str,
        file_path: str,
    ) -> None:
        """File first, then manifest; on any failure remove both destination paths.

        A manifest already at the destination is removed before the file is replaced, so a
        manifest in storage always sits beside the complete file it describes.
        """
        for path in (file_path, manifest_path):
            existing = await _stat(storage, path, f"error checking {path}")
            if existing is not None and existing.is_directory:
                raise invalid_path(f"{path} is a directory; cannot write the image there")
            if existing is not None and path == manifest_path:
                await _delete(storage, path, f"error removing the previous manifest {path}")

        state = BodyState()
        file_body = ImageFileBody(catalog, image.uuid, image_file, state)
        document = manifest_bytes(image.manifest)
        step = f"error exporting image file to {file_path}"
        try:
            await storage.put_object(
                file_path,
                file_body,
                size=image_file.size,
                content_md5=image_file.content_md5,
                content_type="application/octet-stream",
            )
            step = f"error exporting image manifest to {manifest_path}"
            await storage.put_object(
                manifest_path,
                _bytes_body(document),
                size=len(document),
                content_md5=content_md5(document),
                content_type="application/json",
            )
        except BaseException as exc:
            error = _export_error(exc, state, image.uuid, step)
            leftovers = await _remove(storage, (manifest_path, file_path))
            if error is None:
                raise
            if leftovers:
                error.message += f"; could not remove {', '.join(leftovers)}"
            raise error from exc


def _single_file(image: Image) -> ImageFile:
    """``files[0]``, or the 4xx for images with none or several (IMGAPI: 400 NotImplemented)."""
    if not image.files:
        raise ImageHasNoFile(f"image {image.uuid} has no file to export")
    if len(image.files) > 1:
        raise NotImplementedByGateway("cannot export images with multiple files")
    return image.files[0]


def _export_error(
    exc: BaseException, state: BodyState, uuid: str, step: str
) -> GatewayError | None:
    """The client's error for a failed write; ``None`` means re-raise ``exc`` as it is."""
    if isinstance(state.error, CorruptFile):
        return ImageFileCorrupt(
            f"image file of {uuid} is corrupt in the catalog ({state.error}); nothing was exported"
        )
    if isinstance(state.error, CatalogReadError):
        return InternalError(f"error reading the image file of {uuid} from the catalog")
    if isinstance(exc, StorageError):
        return storage_error(exc, step)
    if isinstance(exc, GatewayError):
        return exc
    return None


async def _stat(storage: StorageTarget, path: str, what: str) -> ObjectInfo | None:
    try:
        return await storage.stat(path)
    except StorageError as exc:
        raise storage_error(exc, what) from exc


async def _delete(storage: StorageTarget, path: str, what: str) -> None:
    try:
        await storage.delete_object(path)
    except StorageError as exc:
        raise storage_error(exc, what) from exc


async def _remove(storage: StorageTarget, paths: tuple[str, ...]) -> list[str]:
    """Best-effort cleanup, in order (manifest first); returns the paths that may remain."""
    leftovers = []
    for path in paths:
        try:
            await storage.delete_object(path)
        except StorageError as exc:
            log.warning("export cleanup: could not remove %s: %s", path, exc)
            leftovers.append(path)
    return leftovers
