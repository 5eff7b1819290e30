"""The handler that writes the gateway's log lines: one write per event-loop iteration.

A write to stderr is a system call (stderr is line-buffered, unbuffered under
``PYTHONUNBUFFERED``), and one a record cost the busy server a few microseconds a request.
``LineHandler`` queues the lines written while the event loop runs one iteration and writes
them together at the start of the next (``loop.call_soon``), so a burst of requests finished in
one iteration costs one write, and an idle server's lines appear at once. Lines are written
immediately when no loop runs in the thread (start-up, shutdown, worker threads) or when
``LIMIT`` characters are waiting; the queue is written out, in order, before them.

Nothing queued is lost on shutdown: ``flush`` (and so ``close``) writes the queue, the app's
cleanup flushes it, and ``logging.shutdown``, which Python runs at exit, flushes every handler.
Only a process killed outright (SIGKILL) can lose the lines of its last loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import IO

__all__ = ["LineHandler"]


class LineHandler(logging.Handler):
    """Writes each record as one line to ``stream``, or to whatever ``sys.stderr`` is when
    no stream is given (as logging's last resort does: a handler that kept the stream of its
    first call would write to a closed one once it is replaced, by pytest's capture or a
    daemon's redirection)."""

    #: Characters queued before they are written without waiting for the loop.
    LIMIT = 64 * 1024

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self._stream = stream
        #: Guards the queue and the writes (records come from worker threads too).
        self._queue_lock = threading.Lock()
        self._queue: list[str] = []
        self._queued = 0
        #: The loop a flush is scheduled on (None: none is).
        self._flush_on: asyncio.AbstractEventLoop | None = None
        #: A record the audit logger already wrote through ``write_line`` (not again).
        self.written: logging.LogRecord | None = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def filter(self, record: logging.LogRecord) -> bool:
        if record is self.written:
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line + "\n")

    def write_line(self, line: str) -> None:
        """Queue ``line`` (its newline included) for the end of this loop iteration, or write
        it now when no loop runs here."""
        with self._queue_lock:
            self._queue.append(line)
            self._queued += len(line)
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
                loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued line now."""
        with self._queue_lock:
            self._flush_on = None
            self._write_queue()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_queue(self) -> None:
        if not self._queue:
            return
        text = "".join(self._queue)
        self._queue.clear()
        self._queued = 0
        stream = self.stream
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nowhere left to tell
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({logging.getLevelName(self.level)})>"
