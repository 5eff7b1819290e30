#!/usr/bin/env python3
"""A long fat link on loopback: a TCP proxy with a one-way delay and a window per connection.

This machine's kernel has no ``netem`` qdisc, so the WAN benchmark brings its own link. Each
accepted connection is joined to a fresh one to the upstream; in each direction every chunk
read is written out ``delay`` seconds later, and counts as in flight until its
acknowledgement would be back (``2 * delay`` after it was read). The proxy stops reading a
direction while ``window`` bytes are in flight, as a sender stops at a full TCP window. One
connection then moves at most ``window / (2 * delay)`` bytes per second: with the defaults
(25 ms each way, 4 MiB), about 84 MB/s, whatever loopback could do.

    python3 bench/wan_proxy.py --upstream 127.0.0.1:8080 [--port 0] [--delay-ms 25]
                               [--window-mib 4]

prints ``http://127.0.0.1:<port>`` once it listens, then runs until killed.

A real link costs the hosts no CPU, so this one should cost as little as it can: each direction
is two threads on blocking sockets (one ``recv_into``s reused buffers, one ``sendall``s them once
due; both syscalls release the GIL), with no event loop, no timers and no copy in Python.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

MiB = 1024 * 1024
#: Largest read of one direction (a chunk is delayed and released as a whole).
READ_SIZE = 256 * 1024
#: Queued to a writer: stop now (the connection failed), without writing the rest.
_ABORT = (0.0, bytearray(), -1)


class Direction:
    """One direction of one connection: read, hold for ``delay``, write; bounded in flight.

    The reading thread keeps the in-flight count itself (a chunk is acknowledged ``2 * delay``
    after it was read, so no timer is needed) and sleeps while the window is full; the writing
    thread sends each chunk once it is due. Written buffers go back to a pool for reuse.
    """

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, window: int) -> None:
        self.src = src
        self.dst = dst
        self.delay = delay
        self.window = window
        #: (due time, buffer, length); length 0 ends the direction, -1 aborts it
        self.queue: queue.SimpleQueue[tuple[float, bytearray, int]] = queue.SimpleQueue()
        self.pool: collections.deque[bytearray] = collections.deque()

    def read(self) -> None:
        acks: collections.deque[tuple[float, int]] = collections.deque()  # (ack time, size)
        in_flight = 0
        while True:
            now = time.monotonic()
            while acks and acks[0][0] <= now:
                in_flight -= acks.popleft()[1]
            if in_flight >= self.window:
                time.sleep(acks[0][0] - now)
                continue
            buf = self.pool.pop() if self.pool else bytearray(READ_SIZE)
            n = self.src.recv_into(buf, min(READ_SIZE, self.window - in_flight))
            now = time.monotonic()
            self.queue.put((now + self.delay, buf, n))
            if not n:
                return
            in_flight += n
            # The acknowledgement is back one round trip after the bytes left the sender.
            acks.append((now + 2 * self.delay, n))

    def write(self) -> None:
        while True:
            due, buf, n = self.queue.get()
            if n < 0:
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not n:
                self.dst.shutdown(socket.SHUT_WR)
                return
            self.dst.sendall(memoryview(buf)[:n])
            self.pool.append(buf)


class Connection:
    """A client socket joined to an upstream one by two ``Direction``s (four threads)."""

    def __init__(
        self, client: socket.socket, upstream: socket.socket, delay: float, window: int
    ) -> None:
        self.sockets = (client, upstream)
        self.directions = (
            Direction(client, upstream, delay, window),
            Direction(upstream, client, delay, window),
        )

    def run(self) -> None:
        """Relay until both directions ended or either side failed; then close both."""
        threads = [
            threading.Thread(target=self._guard, args=(fn,), daemon=True)
            for d in self.directions
            for fn in (d.read, d.write)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for sock in self.sockets:
            sock.close()

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except OSError:
            self._abort()  # either side went away: close both (anything else is a bug, logged)

    def _abort(self) -> None:
        for direction in self.directions:
            direction.queue.put(_ABORT)
        for sock in self.sockets:  # wakes the threads blocked in recv_into or sendall
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class WanProxy:
    """Listens on loopback; every connection goes to ``upstream`` through a ``Connection``."""

    def __init__(self, upstream: tuple[str, int], delay: float, window: int) -> None:
        self.upstream = upstream
        self.delay = delay
        self.window = window
        self.server: socket.socket | None = None

    def start(self, port: int = 0) -> str:
        """Listen, accept in a background thread, and return the proxy's URL."""
        self.server = socket.create_server(("127.0.0.1", port), backlog=128)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the listening socket was closed
            while True:
                client, _ = server.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):  # as asyncio's transports do: no Nagle delays
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Connection(client, upstream, self.delay, self.window).run()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay, each direction")
    p.add_argument("--window-mib", type=float, default=4.0, help="bytes in flight per direction")
    args = p.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    window = int(args.window_mib * MiB)
    proxy = WanProxy((host or "127.0.0.1", int(port)), args.delay_ms / 1000, window)
    print(proxy.start(args.port), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
