"""Connection hygiene for ``serve``: slow or silent clients cannot use up the descriptors.

aiohttp closes a connection idle between requests after ``keepalive_timeout``, but it has no
deadline for the request head: a client that sends half a request line and then nothing holds
a descriptor until keep-alive ends, and a flood of them exhausts the descriptors (asyncio then
stops accepting for a second at a time, and even ``/--ping`` times out). ``ConnectionGuard``
tracks every connection's state:

- *head*: waiting for a complete request head, since its accept or since the first byte after
  an idle spell; closed once that is older than ``request_head_timeout``;
- *busy*: a request is being handled (never closed here: an export may take an hour);
- *idle*: between two requests (aiohttp's keep-alive timer closes it).

Before the descriptors run out, the guard sheds connections, oldest incomplete head first,
then the oldest idle ones, so that complete requests keep being served; a connection that
has sent nothing yet is spared for its first ``SILENT_GRACE`` seconds (its client had no time
to send: a ping or an export that was just accepted). asyncio accepts up to a
listening socket's backlog in one go, and again at each turn of the loop, before any of those
connections is seen here: the backlog is kept small next to the descriptor limit
(``accept_batch``), and the guard keeps three batches of descriptors, and a margin for
storage connections, databases and logs, in reserve. The kernel's queue of connections not yet
accepted is made long (``LISTEN_QUEUE``) all the same: a burst waits there, in order, instead
of having its SYNs dropped (a dropped SYN costs a client a second or more).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse

log = logging.getLogger(__name__)

#: The largest listening backlog (asyncio accepts that many connections in one go).
MAX_BACKLOG = 128
#: The kernel's queue of connections to accept (it caps it at ``net.core.somaxconn``).
LISTEN_QUEUE = 4096
#: Seconds a new connection that has sent nothing yet is spared from shedding.
SILENT_GRACE = 1.0
#: How many descriptor counts the guard remembers; it takes the smallest (see ``measure``).
MEASURES_KEPT = 8
#: Seconds between two summaries of what the guard closed (nothing logged when nothing was).
SUMMARY_INTERVAL = 10.0


def accept_batch(fd_limit: int) -> int:
    """The listening backlog: how many connections asyncio accepts at one turn of the loop."""
    return max(8, min(MAX_BACKLOG, fd_limit // 16))


def reserve_for(fd_limit: int) -> int:
    """Descriptors kept free: three accept batches (accepted before this guard sees them),
    plus a margin for storage connections, databases and logs."""
    return 3 * accept_batch(fd_limit) + max(16, fd_limit // 16)


def count_open_fds() -> int | None:
    """Descriptors this process has open (``None`` where the system does not say)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


#: The answer to a request aiohttp's parser refuses, by the status aiohttp chose.
PARSER_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the HTTP request could not be parsed"),
    413: ("RequestTooLarge", "the HTTP request head is too large"),
    431: ("RequestTooLarge", "the HTTP request head is too large"),
    500: ("InternalError", "an internal error occurred"),
}


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, reporting its state changes to a ``ConnectionGuard``.

    It reads ``_request_count`` (incremented by aiohttp for every complete head parsed) and
    wraps ``_handle_request``: aiohttp offers no public hook for either (pinned by
    tests/gateway/test_flood.py and its unit tests of the head deadline).
    """

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard.opened(self)

    def data_received(self, data: bytes) -> None:
        if data:
            self.guard.bytes_arrived(self)
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self.guard.head_complete(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """What aiohttp answers itself, before the app sees a request (its HTTP parser's
        refusals: a line over 8190 bytes, a bad method or header character): CloudAPI's JSON
        error envelope, never the request's bytes (aiohttp's text quotes them), one log line
        without a traceback, and the connection closed."""
        if request.writer.output_size > 0:  # part of an answer went out: nothing to add
            raise ConnectionError("an answer was already started; the connection is closed")
        code, text = PARSER_ERRORS.get(status, PARSER_ERRORS[500])
        reason = type(exc).__name__ if exc is not None else "unknown"
        log.info("refused a request the HTTP parser could not read (%s): %d", reason, status)
        body = json.dumps({"code": code, "message": text}).encode()
        response = Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response

    async def _handle_request(self, *args: Any, **kwargs: Any) -> Any:
        self.guard.head_complete(self)
        try:
            return await super()._handle_request(*args, **kwargs)
        finally:
            self.guard.request_done(self)


class ConnectionGuard:
    """The state of every open connection, the head deadline, and shedding under pressure.

    :param head_timeout: seconds a connection may wait in the *head* state.
    :param fd_limit: the process's descriptor limit (the soft ``RLIMIT_NOFILE``).
    :param clock: the loop's clock.
    :param reserve: descriptors kept free (``reserve_for(fd_limit)`` unless given).
    :param count_fds: counts the process's open descriptors (``None``: unknown).
    """

    def __init__(
        self,
        *,
        head_timeout: float,
        fd_limit: int,
        clock: Callable[[], float],
        reserve: int | None = None,
        count_fds: Callable[[], int | None] = count_open_fds,
    ) -> None:
        self.head_timeout = head_timeout
        self.fd_limit = fd_limit
        self.reserve = reserve_for(fd_limit) if reserve is None else reserve
        self.batch = accept_batch(fd_limit)
        self._measures: list[int] = []
        self._clock = clock
        self._count_fds = count_fds
        #: Connections in the head / idle state, oldest first (insertion order), and since when.
        self._heads: dict[RequestHandler, float] = {}
        self._idle: dict[RequestHandler, float] = {}
        #: Connections in the head state that have not sent a byte yet.
        self._silent: set[RequestHandler] = set()
        #: Connections closed here whose descriptor is not closed yet.
        self._closing: set[RequestHandler] = set()
        self.open = 0
        #: Descriptors that are not connections (listening sockets, databases, storage, logs).
        self.other_fds = 0
        self.timed_out = 0
        self.shed = 0

    # --- what the handlers report --------------------------------------------------------

    def opened(self, handler: RequestHandler) -> None:
        self.open += 1
        self._heads[handler] = self._clock()
        self._silent.add(handler)
        self.relieve(keep=handler)

    def bytes_arrived(self, handler: RequestHandler) -> None:
        """Bytes after an idle spell start a new head, whose deadline counts from now."""
        self._silent.discard(handler)
        if self._idle.pop(handler, None) is not None:
            self._heads[handler] = self._clock()

    def head_complete(self, handler: RequestHandler) -> None:
        self._silent.discard(handler)
        self._heads.pop(handler, None)
        self._idle.pop(handler, None)

    def request_done(self, handler: RequestHandler) -> None:
        if handler in self._closing or handler.transport is None:
            return
        self._heads.pop(handler, None)
        self._idle[handler] = self._clock()

    def closed(self, handler: RequestHandler) -> None:
        self.open -= 1
        self._heads.pop(handler, None)
        self._idle.pop(handler, None)
        self._silent.discard(handler)
        self._closing.discard(handler)

    # --- closing -------------------------------------------------------------------------

    @property
    def high_water(self) -> int:
        """Connections allowed before shedding starts."""
        return self.fd_limit - self.reserve - self.other_fds

    def _close(self, handler: RequestHandler) -> None:
        self._silent.discard(handler)
        self._heads.pop(handler, None)
        self._idle.pop(handler, None)
        self._closing.add(handler)
        handler.force_close()

    def relieve(self, *, keep: RequestHandler | None = None, at_least: int = 0) -> int:
        """Shed connections above ``high_water`` (and ``at_least`` many): oldest incomplete
        heads first, then the oldest idle ones; never ``keep`` nor a busy one."""
        excess = self.open - len(self._closing) - self.high_water
        wanted = max(excess, at_least)
        if wanted <= 0:
            return 0
        # Shed a little more than needed, so that a flood does not shed at every accept.
        wanted += max(1, self.fd_limit // 64) if excess > 0 else 0
        victims: list[RequestHandler] = []
        spared_since = self._clock() - SILENT_GRACE
        heads = list(self._heads.items())  # only under pressure

        def spared(handler: RequestHandler, since: float) -> bool:
            return handler in self._silent and since > spared_since

        stalled = (handler for handler, since in heads if not spared(handler, since))
        # When the spared are too many (a flood of silent connections), they go too, oldest
        # first, all but the newest accept batch.
        young = (handler for handler, since in heads[: -self.batch] if spared(handler, since))
        for handler in itertools.chain(stalled, self._idle, young):
            if len(victims) >= wanted:
                break
            if handler is not keep:
                victims.append(handler)
        for handler in victims:
            self._close(handler)
        self.shed += len(victims)
        return len(victims)

    def expire_heads(self) -> int:
        """Close the connections whose head is older than ``head_timeout``."""
        deadline = self._clock() - self.head_timeout
        expired: list[RequestHandler] = []
        for handler, since in self._heads.items():
            if since > deadline:
                break  # the rest are younger (insertion order)
            expired.append(handler)
        for handler in expired:
            self._close(handler)
        self.timed_out += len(expired)
        return len(expired)

    def measure(self) -> None:
        """Count the descriptors that are not connections (they change: storage, files).

        Connections just accepted, not yet seen here, look like other descriptors: the
        smallest of the last few counts is taken, so that a flood does not look like them.
        """
        total = self._count_fds()
        if total is not None:
            self._measures = [*self._measures[-(MEASURES_KEPT - 1) :], max(0, total - self.open)]
            self.other_fds = min(self._measures)

    async def watch(self) -> None:
        """Expire heads a few times a second, measure, and summarise now and then."""
        tick = min(0.5, self.head_timeout / 4)
        reported = (0, 0)
        next_summary = self._clock() + SUMMARY_INTERVAL
        failed = False
        while True:
            await asyncio.sleep(tick)
            try:
                self.expire_heads()
                self.measure()
                self.relieve()
            except Exception:  # the guard must outlive a bug of its own: logged once
                if not failed:
                    log.exception("the connection guard failed; it keeps trying")
                failed = True
            if self._clock() >= next_summary:
                next_summary = self._clock() + SUMMARY_INTERVAL
                self._summarise(self.timed_out - reported[0], self.shed - reported[1])
                reported = (self.timed_out, self.shed)

    def _summarise(self, timed_out: int, shed: int) -> None:
        """One warning for what was closed in the last interval (nothing if nothing was)."""
        if timed_out or shed:
            log.warning(
                "closed %d connections without a complete request head after %gs, "
                "and shed %d under descriptor pressure, in the last %gs "
                "(%d open, %d allowed, descriptor limit %d)",
                timed_out,
                self.head_timeout,
                shed,
                SUMMARY_INTERVAL,
                self.open,
                self.high_water,
                self.fd_limit,
            )


@contextlib.asynccontextmanager
async def watching(guard: ConnectionGuard) -> AsyncIterator[ConnectionGuard]:
    """Run ``guard.watch()`` while the block runs."""
    guard.measure()
    task = asyncio.create_task(guard.watch(), name="connection-guard")
    try:
        yield guard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections are ``GuardedRequestHandler``s of ``guard``.

    Takes TCPSite's arguments (``ssl_context`` included); ``handler_kwargs`` go to every
    handler (``keepalive_timeout``).
    """

    __slots__ = ("_guard", "_handler_kwargs")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int | None,
        *,
        guard: ConnectionGuard,
        handler_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, backlog=guard.batch, **kwargs)
        self._guard = guard
        self._handler_kwargs = handler_kwargs or {}

    async def start(self) -> None:
        """TCPSite's ``start`` with a protocol factory of guarded handlers."""
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def make_handler() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server, loop=loop, guard=self._guard, **self._handler_kwargs
            )

        # A TLS handshake is part of the head: it gets the same time (asyncio's default: 60 s).
        handshake = self._guard.head_timeout if self._ssl_context is not None else None
        self._server = await loop.create_server(
            make_handler,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=handshake,
        )
        sockets = self._server.sockets
        for listening in sockets:
            # asyncio listens with the accept batch as backlog; the queue itself may be long.
            with socket.socket(fileno=os.dup(listening.fileno())) as same:
                same.listen(LISTEN_QUEUE)
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
