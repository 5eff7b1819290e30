"""Serving the app until told to stop: what ``cloudapi-gateway serve`` runs.

SIGTERM (what service managers and orchestrators send) drains first: ``GET /--ready`` answers
503 at once, so load balancers stop sending requests, while everything else is still served
for ``drain_seconds``; then the server stops as on SIGINT. SIGINT (Ctrl-C), a second signal
during the drain, or a ``drain_seconds`` of 0 stop at once: the listening socket closes, and
in-flight requests get up to ``shutdown_timeout`` to finish (an export may take an hour)
before the app's cleanup runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.server.appkeys import READINESS
from gateway.settings import Settings

log = logging.getLogger("cloudapi_gateway")


def run(app: web.Application, settings: Settings) -> None:
    """Serve ``app`` on ``settings.host``/``port`` until SIGINT or SIGTERM (see the module)."""
    asyncio.run(_serve(app, settings))


async def _serve(app: web.Application, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    draining: list[asyncio.TimerHandle] = []

    def on_sigint() -> None:
        log.info("SIGINT: stopping")
        stop.set()

    def on_sigterm() -> None:
        if draining or settings.drain_seconds <= 0:
            log.info("SIGTERM: stopping")
            stop.set()
            return
        log.info("SIGTERM: draining for %ss, then stopping", settings.drain_seconds)
        app[READINESS].drain()
        draining.append(loop.call_later(settings.drain_seconds, stop.set))

    for number, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm)):
        loop.add_signal_handler(number, handler)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("Running on %s", ", ".join(_url(address) for address in runner.addresses))
        await stop.wait()
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
        for handle in draining:
            handle.cancel()
        await runner.cleanup()


def _url(address: tuple[str, int] | tuple[str, int, int, int] | str) -> str:
    if isinstance(address, str):
        return address
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"http://{host}:{address[1]}"
