"""Reading a request body that may stop arriving: abandoned after ``body_idle_timeout``.

A client that announces a body and then stalls would otherwise hold its request, its
connection and whatever the handler holds, for ever. Each chunk must arrive within the idle
timeout; when one does not, the request ends with 408 ``RequestTimeout`` (restify's code), and
the connection closes after that answer: the rest of the body may still come, and could not
be told apart from a next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.errors import GatewayError


class RequestTimeout(GatewayError):
    status, code = 408, "RequestTimeout"


async def body_chunks(
    request: web.BaseRequest, chunk_size: int, idle_timeout: float | None
) -> AsyncIterator[bytes]:
    """The body's chunks; ``RequestTimeout`` when none arrives for ``idle_timeout`` seconds
    (``None``: no limit)."""
    reader = request.content
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await reader.read(chunk_size)
        except TimeoutError:
            _close_after_answer(request)
            raise RequestTimeout(
                f"Request body stalled: no data for {idle_timeout:g} seconds",
                headers={"Connection": "close"},
            ) from None
        if not chunk:
            return
        yield chunk


def _close_after_answer(request: web.BaseRequest) -> None:
    """No more of this body is read, and the connection closes once the 408 is sent."""
    request.protocol.close()  # aiohttp: no further request on this connection
    request.content.feed_eof()  # nothing left to wait for after the answer
