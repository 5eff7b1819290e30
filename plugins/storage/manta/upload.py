"""One attempt's body of a Manta PUT: from a local file with ``sendfile``, else from its iterator.

A body that offers a local file (``LocalFileBody``, the export's image file) goes out with
``sendfile`` over plain HTTP: the kernel moves the bytes, the gateway neither copies nor touches
them. Its last byte waits for the producer's verdict, and every ``SENDFILE_WINDOW`` must leave
within ``read_timeout``, so a Manta that stops reading mid-body fails the attempt. Any other
body streams from its iterator, its last chunk held back until the iterator has ended cleanly.
A ``FileRange`` (one part of a multipart upload) goes out with ``sendfile`` as well, from its
offset, and with nothing held back: a part is not visible until the upload is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from gateway.plugin_kit import ExactSizeBody, exact_size_body
from gateway.storage import BodyFactory, LocalFile, LocalFileBody, StorageRequestFailed
from plugins.storage.manta.aiohttp_internals import WriterPayload, headers_sent

#: A local-file body goes out in sendfile calls of this size, each bounded by ``read_timeout``.
SENDFILE_WINDOW = 8 * 1024 * 1024
#: Read size of a ``FileRange`` that cannot go out with ``sendfile`` (over TLS).
RANGE_READ = 1024 * 1024


@dataclass(frozen=True)
class FileRange:
    """``length`` bytes of a local file from ``offset``: a body that can be sent again.

    Sent with ``sendfile`` where the connection allows it; called, it reads the range with
    positional reads in a thread (the file's offset is shared by the parts sent at once).
    """

    file: BinaryIO
    offset: int
    length: int

    async def __call__(self) -> AsyncIterator[bytes]:
        fd = self.file.fileno()
        done = 0
        while done < self.length:
            want = min(RANGE_READ, self.length - done)
            chunk = await asyncio.to_thread(os.pread, fd, want, self.offset + done)
            if not chunk:
                return  # a short file: the size check reports it
            done += len(chunk)
            yield chunk


async def _no_verdict() -> None:
    """A part has nothing to wait for: the upload's commit waits for the producer."""


class IteratorSender:
    """Sends a body from its iterator, checked to be exactly ``size`` bytes.

    aiohttp wraps what the iterator raises in a connection error: ``error`` keeps the original
    (or the size refusal), for the request to raise as it is.
    """

    def __init__(self, body: ExactSizeBody) -> None:
        self.body = body

    @property
    def error(self) -> BaseException | None:
        return self.body.error

    def payload(self) -> AsyncIterator[memoryview]:
        """What aiohttp sends."""
        return self.body.stream()


class FileSender:
    """Sends a ``LocalFile`` with ``sendfile``: no copy through Python, no per-chunk work.

    As ``IteratorSender`` does, it holds back the last byte until the producer's check
    (``verified``) has passed, and keeps the producer's own exception in ``error``.
    """

    def __init__(
        self, local: LocalFile, size: int, stall_timeout: float, *, offset: int = 0
    ) -> None:
        self.local = local
        self.size = size
        #: Where the body starts in the file (a multipart upload's part).
        self.offset = offset
        #: Longest wait for one ``SENDFILE_WINDOW`` to go out: a Manta that stops reading
        #: mid-body fails the attempt instead of holding it forever.
        self.stall_timeout = stall_timeout
        self.error: BaseException | None = None

    def _fail(self, error: BaseException) -> BaseException:
        self.error = error
        return error

    def payload(self) -> Payload:
        """What aiohttp sends."""
        return WriterPayload(self.send, self.size)

    async def send(self, writer: AbstractStreamWriter) -> None:
        """Write the body on the request's connection (headers are already out)."""
        if self.local.size != self.size:
            raise self._fail(
                StorageRequestFailed(f"the body has {self.local.size} bytes, not {self.size}")
            )
        transport = await headers_sent(writer)
        head = max(self.size - 1, 0)
        sent = await self._sendfile(transport, self.offset, head)
        try:
            await self.local.verified()  # a short file is the producer's error first
        except Exception as exc:
            raise self._fail(exc) from None
        if sent != head:
            raise self._fail(
                StorageRequestFailed(f"the body ended after {sent} of {self.size} bytes")
            )
        if self.size:
            await self._sendfile(transport, self.offset + head, 1)

    async def _sendfile(self, transport: asyncio.WriteTransport, offset: int, count: int) -> int:
        """Send ``count`` bytes from ``offset`` in windows; returns how many the file had."""
        loop = asyncio.get_running_loop()
        sent = 0
        while sent < count:
            window = min(SENDFILE_WINDOW, count - sent)
            try:
                async with asyncio.timeout(self.stall_timeout):
                    done = await loop.sendfile(transport, self.local.file, offset + sent, window)
            except TimeoutError:
                raise TimeoutError(
                    f"Manta took in no {window} bytes of the body for {self.stall_timeout} s"
                ) from None
            sent += done
            if done < window:  # the file ended early
                break
        return sent


Sender = IteratorSender | FileSender


@contextlib.asynccontextmanager
async def body_sender(
    body: BodyFactory | None, size: int, *, sendfile: bool, stall_timeout: float
) -> AsyncIterator[Sender | None]:
    """One attempt's body: sent from the local file when the body offers one and ``sendfile``
    is possible (plain TCP: it cannot go through TLS), else from its iterator."""
    if body is None:
        yield None
        return
    if sendfile and isinstance(body, FileRange):
        part = LocalFile(file=body.file, size=body.length, verified=_no_verdict)
        yield FileSender(part, size, stall_timeout, offset=body.offset)
        return
    if sendfile and isinstance(body, LocalFileBody):
        async with body.local_file() as local:
            if local is not None:
                yield FileSender(local, size, stall_timeout)
                return
    async with exact_size_body(body, size) as checked:
        yield IteratorSender(checked)
