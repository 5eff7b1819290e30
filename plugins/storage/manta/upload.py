"""One attempt's body of a Manta PUT: from a local file with ``sendfile``, else from its iterator.

A body that offers a local file (``LocalFileBody``, the export's image file) goes out with
``sendfile`` over plain HTTP: the kernel moves the bytes, the gateway neither copies nor touches
them. Its last byte waits for the producer's verdict, and every ``SENDFILE_WINDOW`` must leave
within ``read_timeout``, so a Manta that stops reading mid-body fails the attempt. Any other
body streams from its iterator, its last chunk held back until the iterator has ended cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from gateway.plugin_kit import ExactSizeBody, exact_size_body
from gateway.storage import BodyFactory, LocalFile, LocalFileBody, StorageRequestFailed
from plugins.storage.manta.aiohttp_internals import WriterPayload, headers_sent

#: A local-file body goes out in sendfile calls of this size, each bounded by ``read_timeout``.
SENDFILE_WINDOW = 8 * 1024 * 1024


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

    def __init__(self, local: LocalFile, size: int, stall_timeout: float) -> None:
        self.local = local
        self.size = size
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
        sent = await self._sendfile(transport, 0, head)
        try:
            await self.local.verified()  # a short file is the producer's error first
        except Exception as exc:
            raise self._fail(exc) from None
        if sent != head:
            raise self._fail(
                StorageRequestFailed(f"the body ended after {sent} of {self.size} bytes")
            )
        if self.size:
            await self._sendfile(transport, head, 1)

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
    if sendfile and isinstance(body, LocalFileBody):
        async with body.local_file() as local:
            if local is not None:
                yield FileSender(local, size, stall_timeout)
                return
    async with exact_size_body(body, size) as checked:
        yield IteratorSender(checked)
