"""The attacking side of the flood test, in a process of its own: stdlib only, so that it
starts at once. ``python -m tests.support.flood_attack --port P --connections N --seconds S``
keeps N connections to 127.0.0.1:P that each sent half a request line and then nothing,
opening a new one whenever the server closes one, for S seconds; then it prints its numbers as
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

#: Half a request line: what each flood connection sends before falling silent.
HALF_REQUEST = b"GET /--ping HT"


@dataclass
class Flood:
    """``connections`` half-open connections to ``port``, renewed as the gateway closes them."""

    port: int
    connections: int
    opened: int = 0
    closed_by_server: int = 0
    connect_failures: int = 0
    held: int = 0
    #: ``held`` sampled every 0.1 s while the flood runs.
    samples: list[int] = field(default_factory=list)

    async def _one(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), 10
                )
            except (OSError, TimeoutError):
                self.connect_failures += 1
                await asyncio.sleep(0.05)
                continue
            self.opened += 1
            self.held += 1
            try:
                writer.write(HALF_REQUEST)
                reading = asyncio.ensure_future(reader.read(1024))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if reading.done():
                    self.closed_by_server += 1
                    reading.exception()  # a reset, most likely: retrieved, not logged
                else:
                    reading.cancel()
                stopping.cancel()
            except OSError:
                self.closed_by_server += 1
            finally:
                self.held -= 1
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append(self.held)
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Flood]:
        """The flood, for as long as the block runs."""
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self._one(stop)) for _ in range(self.connections)]
        tasks.append(asyncio.create_task(self._sample(stop)))
        try:
            yield self
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def attack(port: int, connections: int, seconds: float) -> dict[str, Any]:
    """``Flood`` for ``seconds`` once all its connections are open (``started`` is printed
    then); its numbers (what the attacking process prints)."""
    flood = Flood(port, connections)
    async with flood.running():
        for _ in range(600):  # a minute at most for the first connections to open
            if flood.opened >= connections:
                break
            await asyncio.sleep(0.1)
        print("started", flush=True)
        flood.samples.clear()
        await asyncio.sleep(seconds)
    samples = flood.samples or [0]
    return {
        "opened": flood.opened,
        "closed_by_server": flood.closed_by_server,
        "connect_failures": flood.connect_failures,
        "held_median": statistics.median(samples),
        "held_max": max(samples),
    }


def main() -> None:
    """The attacking process: flood, then print the numbers as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    numbers = asyncio.run(attack(args.port, args.connections, args.seconds))
    print(json.dumps(numbers), flush=True)


if __name__ == "__main__":
    main()
