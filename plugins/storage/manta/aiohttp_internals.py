"""Every use the Manta target makes of aiohttp's internals, in one place.

aiohttp is pinned to ``>=3.14,<4`` (pyproject.toml). These are the parts relied on that are not
its documented API; each is pinned by tests in ``tests/plugins/test_manta.py``, which fail when
an upgrade changes them:

- ``ClientRequest._continue`` (the future that ``100 Continue``, or a final answer, resolves),
  ``ClientRequest.loop``, and ``ClientRequest.write_bytes`` awaiting ``_continue`` before it
  writes the body; the subclass is installed with ``ClientSession(request_class=...)``
  (``continue_request_class``). Pinned by
  ``test_a_server_that_never_sends_100_continue_still_gets_the_body`` and
  ``test_a_manta_that_stalls_before_100_continue_is_storage_unavailable`` (the bound), and
  ``test_a_refused_put_never_reads_the_body`` (an early final answer still ends the request
  before the body is read).
- ``Payload._value`` and ``Payload._size`` set by a subclass, and ``write_bytes`` calling the
  payload's ``write_with_length(writer, content_length)`` (``WriterPayload``). Pinned by
  ``test_a_local_file_body_arrives_byte_for_byte[sendfile]`` (Content-Length, not chunked).
- the request writer's ``send_headers()``, ``drain()`` and ``transport``, so that the body can
  go onto the socket with ``loop.sendfile`` once the headers are out (``headers_sent``).
  Pinned by ``test_a_local_file_body_arrives_byte_for_byte[sendfile]``,
  ``test_the_last_byte_waits_for_the_verdict``,
  ``test_a_local_file_upload_cut_once_is_retried_from_the_start`` and
  ``test_a_manta_that_stops_reading_mid_body_fails_the_attempt``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

#: What writes a ``WriterPayload``'s bytes on the request's connection.
WriteBody = Callable[[AbstractStreamWriter], Awaitable[None]]


def _release_waiter(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


class _ContinueRequest(aiohttp.ClientRequest):
    """A request that waits at most ``continue_timeout`` for ``100 Continue``.

    aiohttp sends the headers, then awaits the interim answer before writing the body, and only
    starts its read timeout once the body is written: a server that never answers would hold the
    upload forever. After ``continue_timeout`` the body goes out anyway (curl's behaviour, after
    1 s); a server that then still says nothing runs into ``read_timeout``. An early final
    answer (an auth error, say) ends the request as before: releasing it cancels the writer.
    """

    continue_timeout: float = 1.0

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        waiter = self._continue
        if waiter is not None and not waiter.done():
            timer = self.loop.call_later(self.continue_timeout, _release_waiter, waiter)
            waiter.add_done_callback(lambda _done: timer.cancel())
        await super().write_bytes(*args, **kwargs)


def continue_request_class(continue_timeout: float) -> type[aiohttp.ClientRequest]:
    """A request class bound to one target's ``continue_timeout``."""
    return type("ContinueRequest", (_ContinueRequest,), {"continue_timeout": continue_timeout})


class WriterPayload(Payload):
    """An aiohttp payload of ``size`` bytes that ``write_body`` writes on the connection."""

    _value: WriteBody

    def __init__(self, write_body: WriteBody, size: int) -> None:
        super().__init__(write_body, content_type="application/octet-stream")
        self._size = size

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file body has no text form")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self._value(writer)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self._value(writer)


async def headers_sent(writer: AbstractStreamWriter) -> asyncio.WriteTransport:
    """Flush the request's headers and return its socket's transport, for ``loop.sendfile``."""
    writer.send_headers()
    await writer.drain()
    transport = writer.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the connection closed before the body was sent")
    return transport
