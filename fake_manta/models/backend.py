"""The storage contract both backends implement, and the streaming ingest shared by them.

A backend is two stores behind one object: a metadata store (``Entry`` records keyed by path, with
sorted child listings) and a byte store (blobs written through a ``BlobWriter`` and read back in
chunks). Namespace rules (parents, roots, conditionals, MPU) live in ``store.py``, not here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from fake_manta.errors import ContentMD5Mismatch, MaxContentLengthExceeded
from fake_manta.models.entry import EMPTY_MD5, Entry, EntryType
from fake_manta.models.running_digest import RunningDigest
from fake_manta.models.space import is_out_of_space, not_enough_space

if TYPE_CHECKING:
    from hashlib import _Hash

#: Bytes handed to a worker thread at a time: big enough that hashing and writing release the GIL
#: for long stretches, small enough that memory stays flat.
WRITE_BUFFER = 1 << 20
#: Read size when streaming a blob back out.
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ListQuery:
    """One page of a directory listing, already validated by the handler."""

    limit: int = 256
    sort: Literal["name", "mtime"] = "name"
    #: final order: name ascending by default, mtime newest-first by default
    descending: bool = False
    #: inclusive lower bound (upper bound when descending) on the sort key
    marker_name: str | None = None
    marker_mtime: int | None = None
    kind: EntryType | None = None


class BlobWriter(Protocol):
    """Receives an object's bytes. Every method blocks and is called from a worker thread."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> str:
        """Make the bytes durable and return the blob id (nothing refers to it yet)."""
        ...

    def discard(self) -> None:
        """Throw the bytes away (failed or abandoned upload)."""
        ...


class Backend(Protocol):
    """Metadata + bytes. Methods are coroutines so an on-disk backend can stay off the loop."""

    kind: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, path: str) -> Entry | None: ...

    async def apply(self, put: Sequence[Entry] = (), delete: Sequence[str] = ()) -> None:
        """Insert/replace ``put`` and remove ``delete`` in one atomic step."""
        ...

    async def count_children(self, parent: str) -> int: ...

    async def list_children(self, parent: str, query: ListQuery) -> list[Entry]: ...

    async def new_writer(self, *, read_once: bool = False) -> BlobWriter:
        """A writer for a new blob; ``read_once``: its bytes will be read back once at most
        (a multipart part), so they need not be cached on the way."""
        ...

    def read_blob(self, blob: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of ``blob`` (``end=None``: to the end), in chunks."""
        ...

    async def open_blob_file(self, blob: str) -> BinaryIO | None:
        """An open file holding ``blob``'s bytes (for ``sendfile``), or None if not file-backed.

        Raises FileNotFoundError / KeyError when the blob is gone. The caller closes the file.
        """
        ...

    async def link_blob(self, blob: str) -> str:
        """A new blob id sharing ``blob``'s bytes (SnapLinks): dropping one keeps the other."""
        ...

    async def hash_blob(self, blob: str, md5: _Hash, stop: threading.Event) -> int:
        """See :class:`~fake_manta.models.running_digest.BlobHasher`."""
        ...

    async def concat(self, blobs: Sequence[str], md5: bytes, size: int) -> Ingested:
        """One new blob holding ``blobs`` (none None) back to back, whose MD5 digest and
        length the caller worked out (``RunningDigest``), without copying their bytes;
        raises if the length differs. A failed or cancelled join leaves no new blob and
        every blob as it was."""
        ...

    async def drop_blobs(self, blobs: Sequence[str]) -> None: ...

    async def stats(self) -> dict[str, int]:
        """Counts of objects and directories, for ``GET /_fake/state``."""
        ...

    async def reset(self) -> None:
        """Forget every entry and blob."""
        ...


@dataclass(frozen=True)
class Ingested:
    """What a finished upload produced. ``blob`` is None for a zero-byte object."""

    blob: str | None
    size: int
    md5: str


def b64md5(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class _Stage(threading.Thread):
    """One worker thread applying ``fn`` to batches in order (hashing, or writing).

    Dedicated threads, fed through a queue, keep working without a round trip through the
    event loop per batch; the loop only waits when more than ``IN_FLIGHT`` bytes are queued.
    """

    def __init__(self, name: str, fn: Callable[[list[bytes]], None], pipe: _Pipeline) -> None:
        super().__init__(name=name, daemon=True)
        self.fn = fn
        self.pipe = pipe
        self.queue: queue.SimpleQueue[tuple[list[bytes], int] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.pending = 0  # bytes queued, guarded by pipe.lock

    def run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                batch, size = item
                if self.error is None:
                    try:
                        self.fn(batch)
                    except BaseException as exc:  # reported to the loop by finish()
                        self.error = exc
                self.pipe.done_with(self, size)
        finally:
            self.pipe.stage_finished()


class _Pipeline:
    """Hash and write batches in two threads at once; bounded memory; errors surface at the end."""

    IN_FLIGHT = 8 * WRITE_BUFFER

    def __init__(self, loop: asyncio.AbstractEventLoop, hash_fn: Callable[[list[bytes]], None],
                 write_fn: Callable[[list[bytes]], None]) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.room = asyncio.Event()
        self.finished = loop.create_future()
        self.waiting = False
        self.running = 2
        self.stages = [_Stage("fake-manta-md5", hash_fn, self),
                       _Stage("fake-manta-write", write_fn, self)]
        for stage in self.stages:
            stage.start()

    def done_with(self, stage: _Stage, size: int) -> None:
        with self.lock:
            stage.pending -= size
            wake = self.waiting and max(s.pending for s in self.stages) <= self.IN_FLIGHT
            if wake:
                self.waiting = False
        if wake:
            self.loop.call_soon_threadsafe(self.room.set)

    def stage_finished(self) -> None:
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self.loop.call_soon_threadsafe(self._set_finished)

    def _set_finished(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    async def submit(self, batch: list[bytes], size: int) -> None:
        with self.lock:
            for stage in self.stages:
                stage.pending += size
                stage.queue.put((batch, size))
            full = max(s.pending for s in self.stages) > self.IN_FLIGHT
            if full:
                self.waiting = True
                self.room.clear()
        if full:
            await self.room.wait()

    async def finish(self) -> None:
        """Wait until both threads are done; re-raise the first error either hit."""
        for stage in self.stages:
            stage.queue.put(None)
        await asyncio.shield(self.finished)
        for stage in self.stages:
            if stage.error is not None:
                raise stage.error


async def ingest(
    backend: Backend,
    chunks: AsyncIterable[bytes],
    *,
    limit: int,
    expected_md5: str | None = None,
    size_hint: int | None = None,
    read_once: bool = False,
) -> Ingested:
    """Stream ``chunks`` into a new blob, hashing on the way, never blocking the loop.

    Bodies under ``WRITE_BUFFER`` are hashed and written in one executor call. Larger ones go
    through a _Pipeline: one thread hashes while another writes, both consuming the socket's
    own buffers in ~1 MiB batches (no copy on the loop), while the loop keeps reading. Over
    ``limit`` bytes raises MaxContentLengthExceeded; a Content-MD5 mismatch raises
    ContentMD5Mismatch (an empty body too: pass None where none is to be checked). On any
    failure the partial blob is discarded; a full disk is 507 NotEnoughSpace (muskie's message
    names ``size_hint``, the declared length, in MB). ``read_once`` goes to ``new_writer``.
    """
    loop = asyncio.get_running_loop()
    md5 = hashlib.md5()  # Manta's checksum
    writer = await backend.new_writer(read_once=read_once)
    pipeline: _Pipeline | None = None
    buf: list[bytes] = []
    buffered = 0
    size = 0

    def hash_batch(batch: list[bytes]) -> None:
        for piece in batch:
            md5.update(piece)

    def write_batch(batch: list[bytes]) -> None:
        for piece in batch:
            writer.write(piece)

    def both(batch: list[bytes]) -> None:
        hash_batch(batch)
        write_batch(batch)

    try:
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise MaxContentLengthExceeded(f"request has exceeded {limit} bytes")
                buf.append(chunk)
                buffered += len(chunk)
                if buffered >= WRITE_BUFFER:
                    if pipeline is None:
                        pipeline = _Pipeline(loop, hash_batch, write_batch)
                    batch, batch_size, buf, buffered = buf, buffered, [], 0
                    await pipeline.submit(batch, batch_size)
            if buf:
                if pipeline is not None:
                    await pipeline.submit(buf, buffered)
                else:
                    await loop.run_in_executor(None, both, buf)
        finally:
            if pipeline is not None:
                await pipeline.finish()
        computed = b64md5(md5.digest())
        if expected_md5 is not None and expected_md5 != computed:
            raise ContentMD5Mismatch(f"Content-MD5 expected {computed}, but was {expected_md5}")
        if size == 0:
            await loop.run_in_executor(None, writer.discard)
            return Ingested(None, 0, EMPTY_MD5)
        blob = await loop.run_in_executor(None, writer.commit)
        return Ingested(blob, size, computed)
    except BaseException as exc:
        await asyncio.shield(loop.run_in_executor(None, writer.discard))
        if is_out_of_space(exc):
            raise not_enough_space(size_hint if size_hint is not None else size) from exc
        raise


async def concat_blobs(
    backend: Backend, blobs: Sequence[str | None], running: RunningDigest | None = None
) -> Ingested:
    """One new blob holding ``blobs`` back to back, with its true MD5 (MPU commit).

    The digest comes from ``running`` (which may have hashed most parts while they were
    uploaded) or from a new one; the backend joins the blobs without copying them.
    """
    digest, size = await (running or RunningDigest(backend)).finish(blobs)
    if size == 0:
        return Ingested(None, 0, EMPTY_MD5)
    return await backend.concat([blob for blob in blobs if blob is not None], digest, size)
