"""``GET /--ready``: unauthenticated readiness for load balancers (``/--ping`` is liveness).

200 ``{"ready": true, "checks": {"database": "ok", "storage": "ok"}}`` when the databases and
the storage target answer; 503 with the failing check named otherwise, and 503
``{"ready": false, "draining": true}`` once the server has been told to stop.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.server.appkeys import ACCOUNTS, JOURNAL, READINESS, STORAGE
from gateway.server.responses import json_response


async def ready(request: web.Request) -> web.Response:
    """Run (or reuse) the checks of ``gateway.server.readiness`` and answer 200 or 503."""
    app = request.app
    report = await app[READINESS].check(app[ACCOUNTS], app[JOURNAL], app[STORAGE])
    body: dict[str, Any] = {"ready": report.ready}
    if report.draining:
        body["draining"] = True
    else:
        body["checks"] = report.checks
    return json_response(body, status=200 if report.ready else 503)


def add_routes(app: web.Application) -> None:
    """Register ``GET|HEAD /--ready``."""
    app.router.add_get("/--ready", ready, name="ready")
