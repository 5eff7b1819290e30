"""The handler that writes the gateway's log lines: one write every few milliseconds.

A write to stderr is a system call (stderr is line-buffered, unbuffered under
``PYTHONUNBUFFERED``), and one a record cost the busy server a few microseconds a request.
``LineHandler`` queues the lines written while the event loop runs and writes them together
``DELAY`` seconds after the first of them (``loop.call_later``): a busy server writes some
thirty audit records at once instead of three, and an idle server's lines appear within
milliseconds. Lines are written immediately when no loop runs in the thread (start-up,
shutdown, worker threads) or when about ``LIMIT`` characters are waiting; the queue is
written out, in order, before them. A reader in the same process calls ``flush`` first.

A line may also be queued unwritten (``write_later``: a function and its arguments) and
rendered in its place when the queue is written. The audit record, one a request, is queued
so: its values are read and its JSON written in a batch of some thirty, where the code and
data they need stay in the processor's caches, instead of in the middle of each request
(measured by ``bench/logging_overhead.py``).

Nothing queued is lost on shutdown: ``flush`` (and so ``close``) writes the queue, the app's
cleanup flushes it, and ``logging.shutdown``, which Python runs at exit, flushes every handler.
Only a process killed outright (SIGKILL) can lose the lines of its last few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

__all__ = ["LineHandler"]

#: A line queued unwritten: the function that renders it (newline included), its arguments.
Pending = tuple[Callable[..., str], tuple[Any, ...]]


class LineHandler(logging.Handler):
    """Writes each record as one line to ``stream``, or to whatever ``sys.stderr`` is when
    no stream is given (as logging's last resort does: a handler that kept the stream of its
    first call would write to a closed one once it is replaced, by pytest's capture or a
    daemon's redirection)."""

    #: Characters queued before they are written without waiting for the loop.
    LIMIT = 64 * 1024
    #: What a line queued unwritten counts for against ``LIMIT`` (an audit line is ~450).
    PENDING_SIZE = 512
    #: Seconds from the first queued line to the write.
    DELAY = 0.002

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self._stream = stream
        #: Guards the queue and the writes (records come from worker threads too). Re-entrant:
        #: a renderer that logs queues its record from inside a write (as logging's own
        #: handlers' locks allow).
        self._queue_lock = threading.RLock()
        self._queue: list[str | Pending] = []
        self._queued = 0
        #: The loop a flush is scheduled on (None: none is).
        self._flush_on: asyncio.AbstractEventLoop | None = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line + "\n")

    def write_line(self, line: str) -> None:
        """Queue ``line`` (its newline included) for the write ``DELAY`` from now, or write
        it now when no loop runs here."""
        self._enqueue(line, len(line))

    def write_later(self, render: Callable[..., str], *args: Any) -> None:
        """Queue the line ``render(*args)`` (its newline included) as ``write_line`` does,
        rendered only when the queue is written (so ``args`` are read then, not now)."""
        self._enqueue((render, args), self.PENDING_SIZE)

    def _enqueue(self, item: str | Pending, size: int) -> None:
        with self._queue_lock:
            self._queue.append(item)
            self._queued += size
            if self._queued >= self.LIMIT:
                self._write_queue()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write_queue()
                return
            if self._flush_on is not loop:
                self._flush_on = loop
                loop.call_later(self.DELAY, self.flush)

    def flush(self) -> None:
        """Write every queued line now."""
        with self._queue_lock:
            self._flush_on = None
            self._write_queue()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_queue(self) -> None:
        queue = self._queue
        if not queue:
            return
        # Taken first: what a renderer logs goes to a fresh queue, not into this one.
        self._queue, self._queued = [], 0
        text = "".join([item if isinstance(item, str) else self._render(item) for item in queue])
        stream = self.stream
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nowhere left to tell
            pass

    def _render(self, pending: Pending) -> str:
        render, args = pending
        try:
            return render(*args)
        except Exception:  # a bug in a renderer: said as logging says a failed record
            self.handleError(logging.makeLogRecord({"msg": f"rendering {render!r}"}))
            return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({logging.getLevelName(self.level)})>"
