"""The storage contract both backends implement, and the streaming ingest shared by them.

A backend is two stores behind one object: a metadata store (``Entry`` records keyed by path, with
sorted child listings) and a byte store (blobs written through a ``BlobWriter`` and read back in
chunks). Namespace rules (parents, roots, conditionals, MPU) live in ``store.py``, not here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from fake_manta.errors import ContentMD5Mismatch, MaxContentLengthExceeded
from fake_manta.models.entry import EMPTY_MD5, Entry, EntryType

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

    async def new_writer(self) -> BlobWriter: ...

    def read_blob(self, blob: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of ``blob`` (``end=None``: to the end), in chunks."""
        ...

    async def link_blob(self, blob: str) -> str:
        """A new blob id sharing ``blob``'s bytes (SnapLinks): dropping one keeps the other."""
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


async def ingest(
    backend: Backend,
    chunks: AsyncIterable[bytes],
    *,
    limit: int,
    expected_md5: str | None = None,
) -> Ingested:
    """Stream ``chunks`` into a new blob, hashing on the way, in ~1 MiB steps run off the loop.

    One step is in flight while the next buffer fills, so reading the socket overlaps with
    hashing and writing. Over ``limit`` bytes raises MaxContentLengthExceeded; a Content-MD5
    mismatch raises ContentMD5Mismatch. On any failure the partial blob is discarded.
    """
    loop = asyncio.get_running_loop()
    md5 = hashlib.md5()  # Manta's checksum
    writer = await backend.new_writer()
    pending: asyncio.Future[None] | None = None
    buf: list[bytes] = []
    buffered = 0
    size = 0

    def step(data: bytes) -> None:
        md5.update(data)
        writer.write(data)

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
                data = b"".join(buf) if len(buf) > 1 else buf[0]
                buf, buffered = [], 0
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, step, data)
        if pending is not None:
            await pending
            pending = None
        if buf:
            await loop.run_in_executor(None, step, b"".join(buf))
        computed = b64md5(md5.digest())
        if size and expected_md5 is not None and expected_md5 != computed:
            raise ContentMD5Mismatch(f"Content-MD5 expected {computed}, but was {expected_md5}")
        if size == 0:
            await loop.run_in_executor(None, writer.discard)
            return Ingested(None, 0, EMPTY_MD5)
        blob = await loop.run_in_executor(None, writer.commit)
        return Ingested(blob, size, computed)
    except BaseException:
        if pending is not None:
            # let the in-flight step finish before the file goes away
            await asyncio.shield(asyncio.wait([pending]))
        await asyncio.shield(loop.run_in_executor(None, writer.discard))
        raise


async def concat_blobs(backend: Backend, blobs: Sequence[str | None]) -> Ingested:
    """One new blob holding ``blobs`` back to back, with its true MD5 (MPU commit)."""

    async def chunks() -> AsyncIterator[bytes]:
        for blob in blobs:
            if blob is None:
                continue
            async for chunk in backend.read_blob(blob):
                yield chunk

    return await ingest(backend, chunks(), limit=1 << 62)
