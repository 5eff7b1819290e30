"""Serving the app until told to stop: what ``cloudapi-gateway serve`` runs.

SIGTERM (what service managers and orchestrators send) drains first: ``GET /--ready`` answers
503 at once, so load balancers stop sending requests, while everything else is still served
for ``drain_seconds``; then the server stops as on SIGINT. SIGINT (Ctrl-C), a second signal
during the drain, or a ``drain_seconds`` of 0 stop at once: the listening socket closes, and
in-flight requests get up to ``shutdown_timeout`` to finish (an export may take an hour)
before the app's cleanup runs.

Connections are guarded (``gateway.server.connections``): a request head must arrive within
``request_head_timeout``, idle connections close after ``keepalive_timeout``, and incomplete
connections are shed before the descriptors run out; the soft descriptor limit is raised to
the hard one first (``gateway.server.descriptors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import ssl
from collections.abc import Iterator

from aiohttp import web

from gateway.server import tls
from gateway.server.appkeys import READINESS
from gateway.server.connections import ConnectionGuard, GuardedSite, watching
from gateway.server.descriptors import AcceptErrorLog, raise_fd_limit
from gateway.settings import Settings, SettingsError

log = logging.getLogger("cloudapi_gateway")


class ListenError(RuntimeError):
    """The server cannot listen where it was told (the port is taken, say): one line for the
    operator, no traceback."""


def run(app: web.Application, settings: Settings) -> None:
    """Serve ``app`` on ``settings.host``/``port`` until SIGINT or SIGTERM (see the module)."""
    asyncio.run(_serve(app, settings))


async def _serve(app: web.Application, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    ssl_context = tls.server_context(settings)  # a missing or bad file stops the start here
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
    if ssl_context is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload_tls, ssl_context, settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout)
    guard = _connection_guard(settings, loop)
    try:
        with _accept_errors_logged(guard, loop):
            async with watching(guard):
                await runner.setup()
                await _start_site(runner, settings, guard, ssl_context)
                scheme = "http" if ssl_context is None else "https"
                urls = (_url(address, scheme) for address in runner.addresses)
                log.info("Running on %s", ", ".join(urls))
                await stop.wait()
    finally:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(number)
        for handle in draining:
            handle.cancel()
        await runner.cleanup()


def _connection_guard(settings: Settings, loop: asyncio.AbstractEventLoop) -> ConnectionGuard:
    """The guard of this server's connections, after raising the descriptor limit."""
    fd_limit = raise_fd_limit()
    guard = ConnectionGuard(
        head_timeout=settings.request_head_timeout, fd_limit=fd_limit, clock=loop.time
    )
    log.info(
        "descriptor limit %d: up to about %d connections before incomplete ones are shed",
        fd_limit,
        fd_limit - guard.reserve,
    )
    return guard


@contextlib.contextmanager
def _accept_errors_logged(
    guard: ConnectionGuard, loop: asyncio.AbstractEventLoop
) -> Iterator[None]:
    """Accept errors counted and logged once per interval; each one sheds connections."""
    handler = AcceptErrorLog(lambda: guard.relieve(at_least=guard.fd_limit // 16), loop.time)
    handler.install(loop)
    try:
        yield
    finally:
        handler.uninstall(loop)


#: Why a listen fails, as the operator reads it (the OS's own words otherwise).
_LISTEN_PROBLEMS = {
    errno.EADDRINUSE: "the address is already in use (is another server running?)",
    errno.EACCES: "permission denied (a port below 1024 needs privileges)",
    errno.EADDRNOTAVAIL: "the address is not one of this host's",
}


def _reload_tls(context: ssl.SSLContext, settings: Settings) -> None:
    """SIGHUP: later handshakes use the certificate and key files as they are now."""
    try:
        tls.reload(context, settings)
    except SettingsError as exc:
        log.error("SIGHUP: kept the previous TLS certificate: %s", exc)
        return
    log.info("SIGHUP: TLS certificate re-read from %s", settings.tls_cert)


async def _start_site(
    runner: web.AppRunner,
    settings: Settings,
    guard: ConnectionGuard,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Listen on ``settings.host``/``port`` with guarded connections (HTTPS with
    ``ssl_context``); ``ListenError`` if not."""
    site = GuardedSite(
        runner,
        settings.host,
        settings.port,
        guard=guard,
        handler_kwargs={"keepalive_timeout": settings.keepalive_timeout},
        ssl_context=ssl_context,
    )
    try:
        await site.start()
    except OSError as exc:
        why = _LISTEN_PROBLEMS.get(exc.errno or 0) or exc.strerror or str(exc)
        where = _url((settings.host, settings.port))
        raise ListenError(f"cannot listen on {where}: {why}") from None


def _url(address: tuple[str, int] | tuple[str, int, int, int] | str, scheme: str = "http") -> str:
    if isinstance(address, str):
        return address
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{scheme}://{host}:{address[1]}"
