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
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys

MiB = 1024 * 1024
#: Largest read of one direction (a chunk is delayed and released as a whole).
READ_SIZE = 256 * 1024


class Direction:
    """One direction of one connection: read, hold for ``delay``, write; bounded in flight."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float,
        window: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.delay = delay
        self.window = window
        self.in_flight = 0
        self.loop = asyncio.get_running_loop()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = asyncio.Event()
        self.window_open = asyncio.Event()
        self.window_open.set()

    def _acknowledged(self, size: int) -> None:
        self.in_flight -= size
        if self.in_flight < self.window:
            self.window_open.set()

    async def _read(self) -> None:
        while True:
            await self.window_open.wait()
            data = await self.reader.read(min(READ_SIZE, self.window - self.in_flight))
            now = self.loop.time()
            self.queue.append((now + self.delay, data))
            self.queued.set()
            if not data:
                return
            self.in_flight += len(data)
            # The acknowledgement is back one round trip after the bytes left the sender.
            self.loop.call_at(now + 2 * self.delay, self._acknowledged, len(data))
            if self.in_flight >= self.window:
                self.window_open.clear()

    async def _write(self) -> None:
        while True:
            while not self.queue:
                self.queued.clear()
                await self.queued.wait()
            due, data = self.queue.popleft()
            wait = due - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(data)
            await self.writer.drain()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read())
            group.create_task(self._write())


class WanProxy:
    """Listens on loopback; every connection goes to ``upstream`` through two ``Direction``s."""

    def __init__(self, upstream: tuple[str, int], delay: float, window: int) -> None:
        self.upstream = upstream
        self.delay = delay
        self.window = window
        self.server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        bound = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{bound}"

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                Direction(client_r, up_w, self.delay, self.window).run(),
                Direction(up_r, client_w, self.delay, self.window).run(),
            )
        except* OSError:
            pass  # either side went away: close both (anything else is a bug, and is logged)
        finally:
            for writer in (client_w, up_w):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    window = int(args.window_mib * MiB)
    proxy = WanProxy((host or "127.0.0.1", int(port)), args.delay_ms / 1000, window)
    print(await proxy.start(args.port), flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay, each direction")
    p.add_argument("--window-mib", type=float, default=4.0, help="bytes in flight per direction")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
