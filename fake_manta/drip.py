"""The "drip" fault's response writer: N bytes every T seconds, in the response head or body.

Clients need read timeouts that fire on a server that answers, but slowly (a stalled proxy, a
saturated link). A ``stall`` only delays the first byte; a drip keeps the connection alive with
a trickle, which is what defeats a naive "total timeout per read" client. aiohttp writes the
status line and headers in one ``transport.write``, so dripping the head means taking over the
writes to the transport: every byte aiohttp would write is queued here and sent in slices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_writer import StreamWriter

DripRegion = Literal["head", "body"]


class DripWriter(StreamWriter):
    """A response writer that sends ``region`` (head or body) ``size`` bytes every ``interval``
    seconds and everything else at once."""

    def __init__(self, request: web.Request, size: int, interval: float,
                 region: DripRegion) -> None:
        super().__init__(request.protocol, asyncio.get_running_loop())
        self._size = size
        self._interval = interval
        self._region = region
        self._pending = bytearray()
        self._sent = 0  # bytes handed to the transport so far
        self._head_len: int | None = None  # known once the headers are serialised
        self._dripped = False  # whether a slice went out yet (the first one does not wait)

    # -- where a byte offset falls -----------------------------------------------------------
    def _in_region(self, offset: int) -> bool:
        head_len = self._head_len if self._head_len is not None else 1 << 62
        return (offset < head_len) == (self._region == "head")

    def _run_length(self, offset: int) -> int:
        """How many bytes from ``offset`` on stay on the same side of the head/body border."""
        head_len = self._head_len if self._head_len is not None else 1 << 62
        return head_len - offset if offset < head_len else 1 << 62

    # -- aiohttp's synchronous write paths: queue instead of writing -------------------------
    def _queue(self, data: bytes) -> None:
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        self.buffer_size += len(data)
        self.output_size += len(data)
        if not self._pending and not self._in_region(self._sent) and (
                len(data) <= self._run_length(self._sent)):
            transport.write(data)  # nothing to drip here: send at once
            self._sent += len(data)
            return
        self._pending += data

    def _write(self, chunk: Any) -> None:
        self._queue(bytes(chunk))

    def _writelines(self, chunks: Iterable[Any]) -> None:
        self._queue(b"".join(bytes(c) for c in chunks))

    async def write_headers(self, status_line: str, headers: Any) -> None:
        await super().write_headers(status_line, headers)
        self._head_len = len(self._headers_buf or b"")

    # -- asynchronous paths: send what is queued, dripping the chosen region ----------------
    async def _flush(self) -> None:
        while self._pending:
            transport = self._protocol.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("Connection lost while dripping")
            run = min(len(self._pending), self._run_length(self._sent))
            dripping = self._in_region(self._sent)
            if dripping:
                run = min(run, self._size)
                if self._dripped:
                    await asyncio.sleep(self._interval)
                self._dripped = True
            piece = bytes(self._pending[:run])
            del self._pending[:run]
            transport.write(piece)
            self._sent += len(piece)

    async def write(self, chunk: Any, *, drain: bool = True, LIMIT: int = 0x10000) -> None:
        await super().write(chunk, drain=False, LIMIT=LIMIT)
        await self._flush()
        if drain:
            await super().drain()

    async def drain(self) -> None:
        await self._flush()
        await super().drain()

    async def write_eof(self, chunk: bytes = b"") -> None:
        await super().write_eof(chunk)
        await self._flush()


def install_drip(request: web.Request, size: int, interval: float,
                 region: DripRegion) -> DripWriter:
    """Make ``request``'s response (whatever the handler or the error middleware sends) drip."""
    writer = DripWriter(request, size, interval, region)
    request._payload_writer = writer
    return writer
