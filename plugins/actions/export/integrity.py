"""The export's image-file body, checked against the manifest before its last byte leaves.

Storage targets hold the last byte back (``gateway.storage.LocalFile``, ``LocalFileBody``): an
iterator's last chunk goes out only once the iterator has ended cleanly, and a ``sendfile``
target sends at most ``size - 1`` bytes before awaiting ``LocalFile.verified()``. This body
keeps the other half of that contract. It ends its iterator, or lets ``verified()`` return,
only once the size and sha1 of what the catalog gave agree with the manifest. Otherwise it
raises ``CorruptFile`` (``CatalogReadError`` when the catalog cannot read its own file) and
records it in ``BodyState``, so the action reports ``ImageFileCorrupt`` whatever the target
made of the exception, and nothing is stored.

Hashing policy: every byte an export checks is hashed on that export's own ``HashThread``,
never on the event loop nor on the default executor (hashing takes about a second per GiB, and
on the default executor's handful of workers a few concurrent exports would hold up every other
file open and read of the process for that long).

Memory stays bounded whatever the image size: the ``sendfile`` path hashes through one
``HASH_READ`` buffer; the streaming path holds about ``READ_AHEAD`` chunks, the batch being
gathered and the one batch being hashed (at most one is in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.catalog import CatalogError, ImageCatalog, ImageFile, LocalFileCatalog
from gateway.storage import LocalFile, ObjectInfo

if TYPE_CHECKING:
    from hashlib import _Hash

T = TypeVar("T")

#: Bytes hashed per job on the hashing thread: fewer thread hops (and GIL hand-offs) per byte.
HASH_BATCH = 4 * 1024 * 1024
#: Catalog chunks read ahead of the upload (1 MiB each from the embedded catalog). An export
#: holds at most about ``READ_AHEAD`` chunks, plus the batch being hashed and the chunk being
#: sent: about 10 MiB with the embedded catalog, whatever the image size.
READ_AHEAD = 4
#: Bytes read per call when hashing a local file while it is sent with ``sendfile``.
HASH_READ = 1024 * 1024


class CorruptFile(Exception):
    """Raised from the upload body when the catalog's bytes do not match the manifest."""


class CatalogReadError(Exception):
    """Raised from the upload body when the catalog cannot read its own file."""

    @classmethod
    def of(cls, exc: Exception) -> CatalogReadError:
        return cls(f"{type(exc).__name__}: {exc}")


@dataclass
class BodyState:
    """What the file body saw, kept apart from whatever the target makes of the exception."""

    error: Exception | None = None

    def fail(self, error: Exception) -> Exception:
        """Record ``error`` as the body's own failure and return it, to be raised."""
        self.error = error
        return error


class HashThread:
    """One export's hashing thread: runs jobs one at a time, in order, and answers on the loop.

    The thread starts with the first job and ends once ``close`` has been called and the jobs
    already given have run. It is a daemon: an interpreter shutting down does not wait for it.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> HashThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``job``; the future gets its result or exception once it has run."""
        if self._closed:
            raise RuntimeError("the hashing thread is closed")
        loop = self._loop
        future: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            deliver: Callable[[], None]
            try:
                result = job()
            except Exception as exc:
                deliver = functools.partial(future.set_exception, exc)
            else:
                deliver = functools.partial(future.set_result, result)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, deliver)

        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="export-sha1", daemon=True)
            self._thread.start()
        self._jobs.put(work)
        return future

    def close(self) -> None:
        """Let the thread end after the jobs already given."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)

    def _serve(self) -> None:
        while (work := self._jobs.get()) is not None:
            work()


def _settle(future: asyncio.Future[Any], deliver: Callable[[], None]) -> None:
    if not future.done():
        deliver()


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (whoever needs it awaits the future)."""
    if not done.cancelled():
        done.exception()


def _mismatch(expected: ImageFile, size: int, sha1: str) -> CorruptFile | None:
    """The error for a copy whose size or sha1 is not the manifest's, else ``None``."""
    if size != expected.size:
        return CorruptFile(
            f"the catalog's copy has {size} bytes, the manifest says {expected.size}"
        )
    if sha1 != expected.sha1:
        return CorruptFile(f"the catalog's copy has sha1 {sha1}, the manifest says {expected.sha1}")
    return None


# --- the streaming path: any catalog, any target ------------------------------------------------


def copy_mismatch(info: ObjectInfo, expected: ImageFile) -> str | None:
    """What differs between a store-side copy and the catalog's record, or ``None``.

    A copy cannot be hashed on the way, so the check is what the store reports: the size, and
    the MD5 (Manta's ``Content-MD5``; S3's single-part ETag or the MD5 the S3 target keeps in
    the object's metadata). A store that reports no MD5 is trusted on the size alone.
    """
    if info.size is not None and info.size != expected.size:
        return f"{info.size} bytes where the catalog recorded {expected.size}"
    if info.content_md5 is not None and info.content_md5 != expected.content_md5:
        return f"MD5 {info.content_md5} where the catalog recorded {expected.content_md5}"
    return None


async def verified_file(
    catalog: ImageCatalog, uuid: str, expected: ImageFile, state: BodyState
) -> AsyncIterator[bytes]:
    """Stream ``files[0]`` from the catalog, checking size and sha1 on the way.

    A reader task runs ahead of the upload (at most ``READ_AHEAD`` chunks): it reads the next
    chunks and hands them to the export's hashing thread, in batches of ``HASH_BATCH`` bytes,
    while the target sends the current ones. A mismatch is raised after the last chunk (or as
    soon as the file runs long), so the upload fails before the store commits it.
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


def _hash_all(sha1: _Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        sha1.update(chunk)


class _VerifyingReader:
    """Reads the catalog's chunks into ``ready`` and has them hashed off the loop, in order."""

    def __init__(self, stream: AsyncIterator[bytes], expected: ImageFile, state: BodyState) -> None:
        self.stream = stream
        self.expected = expected
        self.state = state
        #: Chunks read and not yet sent; ``None`` ends the file (the verdict is the task's).
        self.ready: asyncio.Queue[bytes | None] = asyncio.Queue(READ_AHEAD)

    async def run(self) -> None:
        try:
            with HashThread() as hasher:
                await self._read(hasher)
        except Exception:
            # Nothing read ahead may go out now: drop it, and wake the consumer, which then
            # awaits this task and gets the error.
            while not self.ready.empty():
                self.ready.get_nowait()
            self.ready.put_nowait(None)
            raise
        finally:
            # The protocol promises an AsyncIterator; the catalogs' generators can be closed.
            aclose = getattr(self.stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _read(self, hasher: HashThread) -> None:
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
                raise self.state.fail(CatalogReadError.of(exc)) from exc
            if not chunk:
                continue
            size += len(chunk)
            if size > expected.size:
                raise self.state.fail(
                    CorruptFile(
                        f"the catalog's copy is larger than the {expected.size} bytes of the "
                        "manifest"
                    )
                )
            batch.append(chunk)
            batched += len(chunk)
            if batched >= HASH_BATCH:
                if hashing is not None:
                    await hashing  # one batch in flight at a time bounds the memory held
                hashing = hasher.run(functools.partial(_hash_all, sha1, batch))
                batch, batched = [], 0
            await self.ready.put(chunk)
        if hashing is not None:
            await hashing
        if batch:
            await hasher.run(functools.partial(_hash_all, sha1, batch))
        corrupt = _mismatch(expected, size, sha1.hexdigest())
        if corrupt is not None:
            raise self.state.fail(corrupt)
        await self.ready.put(None)


# --- the sendfile path: a catalog with local files ----------------------------------------------


def _hash_file(fd: int, size: int, stop: threading.Event) -> tuple[int, str]:
    """Hash the first ``size`` bytes at ``fd`` (positional reads, so the file offset that
    sendfile uses is untouched). Returns the length seen (``size + 1`` when the file runs long)
    and the sha1 of the first ``size`` bytes."""
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


class ImageFileBody:
    """The image file as an export body (``LocalFileBody``).

    Called, it is the verified iterator (any target). Through ``local_file`` it is the catalog's
    open file, for targets that send with ``sendfile``; the export's hashing thread hashes the
    same file meanwhile, and ``verified`` gives its verdict before the target sends the last byte.
    """

    def __init__(
        self, catalog: ImageCatalog, uuid: str, expected: ImageFile, state: BodyState
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
            raise self.state.fail(CatalogReadError.of(exc)) from exc
        stop = threading.Event()
        with HashThread() as hasher:
            hashing = hasher.run(
                functools.partial(_hash_file, fh.fileno(), self.expected.size, stop)
            )
        hashing.add_done_callback(_retrieve)  # a failure is reported through verified()

        async def verified() -> None:
            try:
                size, sha1 = await asyncio.shield(hashing)
            except OSError as exc:
                raise self.state.fail(CatalogReadError.of(exc)) from exc
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
