"""Serving the metrics: the request middleware and the ``[metrics] listen`` listener.

``metrics_middleware`` makes the app's ``Metrics`` the current ``gateway.telemetry`` listener
for every request (the sweeper's task gets it in ``create_app``) and counts each answer. The
listener is a second aiohttp server with only ``GET /metrics``: it has no authentication, so it
never shares the public address.

Routes are labelled with CloudAPI's operation names, as the audit log names them (``ping``,
``listimages``, ``getimage``, ``deleteimage``, and for ``POST /:login/images/:id`` the
action's, such as ``exportimage``; ``unknown`` when no route matched), never with the path,
whose ids would make a series per image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.server.appkeys import METRICS, METRICS_ADDRESS, SETTINGS
from gateway.server.logs import route_name
from gateway.server.metrics import Metrics
from gateway.server.plugin_manager import ConfigurationError
from gateway.telemetry import use_events

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: make the app's ``Metrics`` the current listener, and count the answer.

    A request whose client left before the answer (cancelled) is not counted.
    """
    metrics = request.app[METRICS]
    use_events(metrics)
    started = time.monotonic()
    status: int | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # below 400 (redirects): the error middleware passes them
        status = exc.status
        raise
    finally:
        if status is not None:
            method = request.method if request.method in _METHODS else "OTHER"
            elapsed = time.monotonic() - started
            route = route_name(request) or "unknown"  # the audit log's names
            metrics.request_completed(route, method, status, elapsed)


def _metrics_app(metrics: Metrics) -> web.Application:
    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app


async def metrics_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve ``GET /metrics`` on ``[metrics] listen`` while the app runs (nothing if empty)."""
    settings = app[SETTINGS]
    address = settings.metrics_address
    if address is None:
        yield
        return
    host, port = address
    runner = web.AppRunner(_metrics_app(app[METRICS]), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics['listen']}: {exc.strerror or exc}; "
            'give each instance its own [metrics] listen, or "" for none'
        ) from exc
    bound = runner.addresses[0]
    app[METRICS_ADDRESS] = (str(bound[0]), int(bound[1]))
    log.info("Serving metrics on http://%s:%d/metrics", *app[METRICS_ADDRESS])
    try:
        yield
    finally:
        await runner.cleanup()
