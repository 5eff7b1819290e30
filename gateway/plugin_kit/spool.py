"""Receiving an image file into a local temporary file, hashed on the way.

Both first-party catalogs take an import's bytes this way: the embedded one keeps the file,
the object-store one uploads it from there (restartable, with its Content-MD5 known before
the first byte is sent). File I/O and hashing run in worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gateway.catalog import ImageFileMismatch

#: Writes are batched to at least this many bytes (one thread hop per MiB, not per chunk).
WRITE_SIZE = 1024 * 1024
#: Names of spool files start with this, so a sweep can recognise a crashed import's leftovers.
SPOOL_PREFIX = ".import-"


@dataclass
class SpooledFile:
    """A received file: where it is and what it hashed to. ``discard`` removes it."""

    path: Path
    size: int = 0
    sha1: str = ""  # hex, IMGAPI's file checksum
    content_md5: str = ""  # base64, the Content-MD5 wire format
    _sha1: hashlib._Hash = field(default_factory=hashlib.sha1, repr=False)
    _md5: hashlib._Hash = field(default_factory=hashlib.md5, repr=False)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def check(self, size: int, sha1: str) -> None:
        """``ImageFileMismatch`` unless the bytes have the manifest's size and sha1."""
        if self.size != size:
            raise ImageFileMismatch(f"file size {self.size} does not match the manifest's {size}")
        if self.sha1 != sha1:
            raise ImageFileMismatch(f"file sha1 {self.sha1} does not match the manifest's {sha1}")


class _Writer:
    """The open temp file; every method runs in a worker thread."""

    def __init__(self, spooled: SpooledFile) -> None:
        self.spooled = spooled
        self.fh: IO[bytes] = open(spooled.path, "xb")  # closed by finish() or abort()

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.spooled._sha1.update(data)
        self.spooled._md5.update(data)
        self.spooled.size += len(data)

    def finish(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.spooled.sha1 = self.spooled._sha1.hexdigest()
        self.spooled.content_md5 = base64.b64encode(self.spooled._md5.digest()).decode()

    def abort(self) -> None:
        self.fh.close()
        self.spooled.discard()


async def spool(body: AsyncIterator[bytes], directory: Path, limit: int) -> SpooledFile:
    """Stream ``body`` into a new file in ``directory``; stop with ``ImageFileMismatch`` as soon
    as it passes ``limit`` bytes. On any failure the file is removed."""
    spooled = SpooledFile(directory / f"{SPOOL_PREFIX}{secrets.token_hex(8)}.tmp")
    writer = await asyncio.to_thread(_Writer, spooled)
    try:
        pending: list[bytes] = []
        pending_size = 0
        async for chunk in body:
            if not chunk:
                continue
            pending.append(bytes(chunk))
            pending_size += len(chunk)
            if spooled.size + pending_size > limit:
                raise ImageFileMismatch(f"file is larger than the manifest's size {limit}")
            if pending_size >= WRITE_SIZE:
                await asyncio.to_thread(writer.write, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await asyncio.to_thread(writer.write, b"".join(pending))
        await asyncio.to_thread(writer.finish)
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise
    return spooled
