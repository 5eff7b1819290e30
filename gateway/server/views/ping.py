"""CloudAPI Ping: ``GET /--ping``, unauthenticated, for load balancers and clients alike."""

from __future__ import annotations

from aiohttp import web

from gateway.server.appkeys import SETTINGS
from gateway.server.responses import json_response
from gateway.server.versioning import SUPPORTED_VERSIONS


async def ping(request: web.Request) -> web.Response:
    """``{"ping":"pong","cloudapi":{"versions":[...]}}`` plus ``Triton-Datacenter-Name``."""
    settings = request.app[SETTINGS]
    return json_response(
        {"ping": "pong", "cloudapi": {"versions": list(SUPPORTED_VERSIONS)}},
        headers={"Triton-Datacenter-Name": settings.datacenter_name},
    )


def add_routes(app: web.Application) -> None:
    """Register ``GET|HEAD /--ping``."""
    app.router.add_get("/--ping", ping, name="ping")
