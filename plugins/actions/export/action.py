"""ExportImage: copy an image's file, then its manifest, into the caller's Manta tree.

Order of checks follows CloudAPI + IMGAPI (MissingParameter, NotImageOwner, InvalidParameter,
StorageUnsupported, file count, NotMantaPathOwner), then the gateway's own path-tree rule, all
before any request reaches storage. Differences from Triton are in docs/compatibility.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import posixpath
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from gateway.actions import ActionContext
from gateway.catalog import CatalogError, Image, ImageCatalog, ImageFile, LocalFileCatalog
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
from gateway.storage import (
    AccessDenied,
    BodyFactory,
    ChecksumMismatch,
    DirectoryDoesNotExist,
    LocalFile,
    ObjectInfo,
    ParentNotDirectory,
    StorageError,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
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

#: Chunks at least this big are hashed in a worker thread (hashlib releases the GIL on them).
HASH_OFF_LOOP = 1024 * 1024
#: Bytes hashed per worker-thread call: fewer thread hops (and GIL hand-offs) per byte.
HASH_BATCH = 4 * 1024 * 1024
#: Catalog chunks read ahead of the upload (1 MiB each from the embedded catalog). An export
#: holds at most about ``READ_AHEAD`` chunks, plus the batch being hashed and the chunk being
#: sent: about 10 MiB with the embedded catalog, whatever the image size.
READ_AHEAD = 4
#: Bytes read per call by the thread that hashes a local file while it is sent with sendfile.
HASH_READ = 1024 * 1024


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped beside this module (package data)."""
    text = resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


class _CorruptFile(Exception):
    """Raised from the upload body when the catalog's bytes do not match the manifest."""


class _CatalogReadError(Exception):
    """Raised from the upload body when the catalog cannot read its own file."""

    @classmethod
    def of(cls, exc: Exception) -> _CatalogReadError:
        return cls(f"{type(exc).__name__}: {exc}")


@dataclass
class _BodyState:
    """What the file body saw, kept apart from whatever the target makes of the exception."""

    error: Exception | None = None

    def fail(self, error: Exception) -> Exception:
        """Record ``error`` as the body's own failure and return it, to be raised."""
        self.error = error
        return error


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


def content_md5(data: bytes) -> str:
    """Base64 MD5, the Content-MD5 header's form."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def verified_file(
    catalog: ImageCatalog, uuid: str, expected: ImageFile, state: _BodyState
) -> AsyncIterator[bytes]:
    """Stream ``files[0]`` from the catalog, checking size and sha1 on the way.

    A reader task runs ahead of the upload (at most ``READ_AHEAD`` chunks): it reads the next
    chunks and hashes them in a worker thread, in batches of ``HASH_BATCH`` bytes, while the
    target sends the current ones. A mismatch is raised after the last chunk (or as soon as the
    file runs long), so the upload fails before the store commits it.
    """
    reader = _VerifyingReader(catalog.open_file(uuid, 0), expected, state)
    task = asyncio.create_task(reader.run())
    try:
        while (chunk := await reader.ready.get()) is not None:
            yield chunk
        await task  # the reader's verdict: raises on a size or sha1 mismatch
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _hash_all(sha1: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        sha1.update(chunk)


class _VerifyingReader:
    """Reads the catalog's chunks into ``ready`` and hashes them off the loop, in order."""

    def __init__(self, stream: AsyncIterator[bytes], expected: ImageFile, state: _BodyState):
        self.stream = stream
        self.expected = expected
        self.state = state
        #: Chunks read and not yet sent; ``None`` ends the file (the verdict is the task's).
        self.ready: asyncio.Queue[bytes | None] = asyncio.Queue(READ_AHEAD)

    async def run(self) -> None:
        try:
            await self._read()
        except Exception:
            # Nothing read ahead may go out now: drop it, and wake the consumer, which then
            # awaits this task and gets the error.
            while not self.ready.empty():
                self.ready.get_nowait()
            self.ready.put_nowait(None)
            raise
        finally:
            aclose = getattr(self.stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        expected = self.expected
        sha1 = hashlib.sha1()
        hashing: asyncio.Future[None] | None = None
        batch: list[bytes] = []
        batched = 0
        size = 0
        while True:
            try:
                chunk = await anext(self.stream)
            except StopAsyncIteration:
                break
            except (OSError, CatalogError) as exc:
                raise self.state.fail(_CatalogReadError.of(exc)) from exc
            if not chunk:
                continue
            size += len(chunk)
            if size > expected.size:
                raise self.state.fail(
                    _CorruptFile(
                        f"the catalog's copy is larger than the {expected.size} bytes of the "
                        "manifest"
                    )
                )
            batch.append(chunk)
            batched += len(chunk)
            if batched >= HASH_BATCH:
                if hashing is not None:
                    await hashing  # one batch in flight at a time keeps the updates in order
                hashing = loop.run_in_executor(None, _hash_all, sha1, batch)
                batch, batched = [], 0
            await self.ready.put(chunk)
        if hashing is not None:
            await hashing
        if batched >= HASH_OFF_LOOP:
            await loop.run_in_executor(None, _hash_all, sha1, batch)
        else:
            _hash_all(sha1, batch)
        corrupt = _mismatch(expected, size, sha1.hexdigest())
        if corrupt is not None:
            raise self.state.fail(corrupt)
        await self.ready.put(None)


def _mismatch(expected: ImageFile, size: int, sha1: str) -> _CorruptFile | None:
    """The error for a copy whose size or sha1 is not the manifest's, else ``None``."""
    if size != expected.size:
        return _CorruptFile(
            f"the catalog's copy has {size} bytes, the manifest says {expected.size}"
        )
    if sha1 != expected.sha1:
        return _CorruptFile(
            f"the catalog's copy has sha1 {sha1}, the manifest says {expected.sha1}"
        )
    return None


def _hash_file(fd: int, size: int, stop: threading.Event) -> tuple[int, str]:
    """Hash the first ``size`` bytes at ``fd`` (runs in a worker thread; positional reads, so
    the file offset that sendfile uses is untouched). Returns the length seen (``size + 1``
    when the file runs long) and the sha1 of the first ``size`` bytes."""
    sha1 = hashlib.sha1()
    view = memoryview(bytearray(HASH_READ))
    offset = 0
    while offset < size and not stop.is_set():
        got = os.preadv(fd, [view[: min(HASH_READ, size - offset)]], offset)
        if not got:
            break
        sha1.update(view[:got])
        offset += got
    if offset == size and os.pread(fd, 1, offset):
        offset += 1
    return offset, sha1.hexdigest()


def _hash_in_thread(fd: int, size: int, stop: threading.Event) -> asyncio.Future[tuple[int, str]]:
    """Run ``_hash_file`` on a thread of its own. It takes about a second per GiB: on the
    default executor (a handful of workers) a few concurrent exports would hold up every
    other file open and read of the process for that long."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[int, str]] = loop.create_future()

    def run() -> None:
        deliver: Callable[[], None]
        try:
            result = _hash_file(fd, size, stop)
        except Exception as exc:
            deliver = functools.partial(future.set_exception, exc)
        else:
            deliver = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, deliver)

    threading.Thread(target=run, name="export-sha1", daemon=True).start()
    return future


def _settle(future: asyncio.Future[Any], deliver: Callable[[], None]) -> None:
    if not future.done():
        deliver()


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (whoever needs it awaits the future)."""
    if not done.cancelled():
        done.exception()


class _ImageFileBody:
    """The image file as an export body (``LocalFileBody``).

    Called, it is the verified iterator (any target). Through ``local_file`` it is the catalog's
    open file, for targets that send with ``sendfile``; a worker thread hashes the same file
    meanwhile, and ``verified`` gives its verdict before the target sends the last byte.
    """

    def __init__(
        self, catalog: ImageCatalog, uuid: str, expected: ImageFile, state: _BodyState
    ) -> None:
        self.catalog = catalog
        self.uuid = uuid
        self.expected = expected
        self.state = state

    def __call__(self) -> AsyncIterator[bytes]:
        return verified_file(self.catalog, self.uuid, self.expected, self.state)

    @contextlib.asynccontextmanager
    async def local_file(self) -> AsyncIterator[LocalFile | None]:
        """The open file and its verdict; ``None`` when the catalog has no local files."""
        if not isinstance(self.catalog, LocalFileCatalog):
            yield None
            return
        try:
            fh = await self.catalog.open_local_file(self.uuid, 0)
        except (OSError, CatalogError) as exc:
            raise self.state.fail(_CatalogReadError.of(exc)) from exc
        stop = threading.Event()
        hashing = _hash_in_thread(fh.fileno(), self.expected.size, stop)
        hashing.add_done_callback(_retrieve)  # a failure is reported through verified()

        async def verified() -> None:
            try:
                size, sha1 = await asyncio.shield(hashing)
            except OSError as exc:
                raise self.state.fail(_CatalogReadError.of(exc)) from exc
            corrupt = _mismatch(self.expected, size, sha1)
            if corrupt is not None:
                raise self.state.fail(corrupt)

        try:
            yield LocalFile(file=fh, size=self.expected.size, verified=verified)
        finally:
            stop.set()
            try:
                await asyncio.wait([hashing])
            finally:
                # The thread reads through the descriptor: close it only once the thread ends.
                if hashing.done():
                    fh.close()
                else:
                    hashing.add_done_callback(lambda _done: fh.close())


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
        if not isinstance(raw, str):
            raise invalid_path("invalid manta_path prefix, not a valid manta path")
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

        state = _BodyState()
        file_body = _ImageFileBody(catalog, image.uuid, image_file, state)
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
    exc: BaseException, state: _BodyState, uuid: str, step: str
) -> GatewayError | None:
    """The client's error for a failed write; ``None`` means re-raise ``exc`` as it is."""
    if isinstance(state.error, _CorruptFile):
        return ImageFileCorrupt(
            f"image file of {uuid} is corrupt in the catalog ({state.error}); nothing was exported"
        )
    if isinstance(state.error, _CatalogReadError):
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
