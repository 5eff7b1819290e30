"""The process's file descriptors: the limit raised at start, accept errors counted, not spewed.

When descriptors run out, asyncio reports every failed ``accept()`` (and every connection it
could not set up) to the loop's exception handler, which by default logs a traceback each
time: a flood of connections became megabytes of tracebacks a second. ``AcceptErrorLog``
counts those reports and logs one line per interval instead, and asks the connection guard
to shed connections at once.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: What asyncio's accept path reports (``selector_events``); anything else goes on as before.
ACCEPT_MESSAGES = (
    "socket.accept() out of system resource",
    "Error on transport creation for incoming connection",
)
#: Seconds between two log lines about accept errors.
ACCEPT_LOG_INTERVAL = 10.0


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # some systems cap it below the hard limit
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


class AcceptErrorLog:
    """A loop exception handler: accept errors counted and logged once per interval.

    :param on_error: called at each accept error (the guard's ``relieve``).
    :param clock: the loop's clock.
    """

    def __init__(self, on_error: Callable[[], object], clock: Callable[[], float]) -> None:
        self.on_error = on_error
        self.clock = clock
        self.count = 0
        self._unreported = 0
        self._last: str = ""
        self._next_log = 0.0
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flush()
        loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") not in ACCEPT_MESSAGES:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.count += 1
        self._unreported += 1
        exc = context.get("exception")
        self._last = f"{context['message']}: {exc}" if exc else str(context["message"])
        self.on_error()
        if self.clock() >= self._next_log:
            self.flush()

    def flush(self) -> None:
        """Log what was counted since the last line (nothing if nothing was)."""
        if self._unreported:
            log.warning(
                "accepting connections failed %d times since the last report (latest: %s)",
                self._unreported,
                self._last,
            )
            self._unreported = 0
        self._next_log = self.clock() + ACCEPT_LOG_INTERVAL
