"""In-memory backend: dicts for metadata, lists of ~1 MiB chunks for bytes (no big buffers)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

from fake_manta.models.backend import WRITE_BUFFER, Ingested, ListQuery, b64md5
from fake_manta.models.entry import Entry

if TYPE_CHECKING:
    from hashlib import _Hash


class _MemoryWriter:
    """Coalesces the socket's small buffers into ~1 MiB chunks (in the worker thread)."""

    def __init__(self, blobs: dict[str, list[bytes]]) -> None:
        self._blobs = blobs
        self._chunks: list[bytes] = []
        self._pending: list[bytes] = []
        self._pending_size = 0

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(b"".join(self._pending))
            self._pending, self._pending_size = [], 0

    def write(self, data: bytes) -> None:
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= WRITE_BUFFER:
            self._flush()

    def commit(self) -> str:
        self._flush()
        blob = uuid.uuid4().hex
        self._blobs[blob] = self._chunks
        return blob

    def discard(self) -> None:
        self._chunks = []


def sort_and_page(children: list[Entry], query: ListQuery) -> list[Entry]:
    """Apply a ListQuery to a plain list of children (shared by tests of the disk backend's SQL)."""
    rows = children
    if query.kind is not None:
        rows = [e for e in rows if e.type == query.kind]
    if query.sort == "mtime":
        rows.sort(key=lambda e: (e.mtime, e.name), reverse=query.descending)
        if query.marker_mtime is not None:
            m = query.marker_mtime
            rows = [e for e in rows if (e.mtime <= m if query.descending else e.mtime >= m)]
    else:
        rows.sort(key=lambda e: e.name, reverse=query.descending)
        if query.marker_name is not None:
            n = query.marker_name
            rows = [e for e in rows if (e.name <= n if query.descending else e.name >= n)]
    return rows[: query.limit]


class MemoryBackend:
    """Everything lives in this process; ``reset`` or exit forgets it."""

    kind = "memory"

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._children: dict[str, dict[str, Entry]] = {}
        self._blobs: dict[str, list[bytes]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, path: str) -> Entry | None:
        return self._entries.get(path)

    async def apply(self, put: Sequence[Entry] = (), delete: Sequence[str] = ()) -> None:
        for path in delete:
            old = self._entries.pop(path, None)
            if old is not None:
                siblings = self._children.get(old.parent)
                if siblings is not None:
                    siblings.pop(old.name, None)
                    if not siblings:
                        del self._children[old.parent]
        for entry in put:
            self._entries[entry.path] = entry
            self._children.setdefault(entry.parent, {})[entry.name] = entry

    async def count_children(self, parent: str) -> int:
        return len(self._children.get(parent, ()))

    async def list_children(self, parent: str, query: ListQuery) -> list[Entry]:
        return sort_and_page(list(self._children.get(parent, {}).values()), query)

    async def new_writer(self, *, read_once: bool = False) -> _MemoryWriter:
        return _MemoryWriter(self._blobs)

    async def open_blob_file(self, blob: str) -> BinaryIO | None:
        return None

    async def read_blob(
        self, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        chunks = self._blobs[blob]
        offset = 0
        for chunk in chunks:
            lo, hi = offset, offset + len(chunk)
            offset = hi
            if hi <= start:
                continue
            if end is not None and lo >= end:
                break
            a = max(start - lo, 0)
            b = len(chunk) if end is None else min(end - lo, len(chunk))
            yield chunk if (a == 0 and b == len(chunk)) else chunk[a:b]

    async def hash_blob(self, blob: str, md5: _Hash, stop: threading.Event) -> int:
        chunks = self._blobs[blob]

        def run() -> int:
            fed = 0
            for chunk in chunks:
                if stop.is_set():
                    break
                md5.update(chunk)
                fed += len(chunk)
            return fed

        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def concat(self, blobs: Sequence[str], md5: bytes, size: int) -> Ingested:
        """The parts' chunks (immutable) shared by the new blob: nothing is copied."""
        chunks = [chunk for blob in blobs for chunk in self._blobs[blob]]
        joined = sum(len(chunk) for chunk in chunks)
        if joined != size:
            raise RuntimeError(f"blobs changed while being joined ({joined} != {size})")
        new = uuid.uuid4().hex
        self._blobs[new] = chunks
        return Ingested(new, size, b64md5(md5))

    async def link_blob(self, blob: str) -> str:
        new = uuid.uuid4().hex
        self._blobs[new] = self._blobs[blob]  # shared, immutable chunks
        return new

    async def drop_blobs(self, blobs: Sequence[str]) -> None:
        for blob in blobs:
            self._blobs.pop(blob, None)

    async def stats(self) -> dict[str, int]:
        objects = sum(1 for e in self._entries.values() if not e.is_dir)
        return {"objects": objects, "directories": len(self._entries) - objects,
                "blobs": len(self._blobs)}

    async def reset(self) -> None:
        self._entries.clear()
        self._children.clear()
        self._blobs.clear()
