"""The admin surface under ``/_fake/`` (moto's ``/moto-api/`` role). Loopback clients only.

It changes state without auth, so a web page open in a developer's browser must not reach it
(cross-site requests to loopback, DNS rebinding). Every admin request, reads included, needs
the ``X-Fake-Manta-Admin: 1`` header (a browser sends a custom header cross-site only after a
CORS preflight, which this surface never grants); a POST needs ``Content-Type:
application/json``; a request with a foreign ``Origin``, or a ``Host`` that is neither an IP
literal nor ``localhost``, is refused. ``admin_from`` (``--admin-from CIDR``) admits clients
outside loopback (a container's host).

A login must start with a letter, so no Manta path can collide with ``/_fake/``.

    POST /_fake/reset       empty every object and directory (accounts stay), clear faults
    POST /_fake/accounts    {"login": .., "keys": ["ssh-ed25519 AAAA..", ..], "operator": false}
    POST /_fake/users       {"login": .., "user": .., "keys": ["ssh-ed25519 AAAA..", ..]}
    GET  /_fake/state       accounts, backend, counts
    GET  /_fake/requests    the latest audit records (``FakeMantaServer.requests``)
    DELETE /_fake/requests  forget them

Fault routes (POST/DELETE /_fake/faults) belong to ``fake_manta/faults.py``: if that module defines
``add_admin_routes(routes: web.RouteTableDef, injector: FaultInjector) -> None`` it is called
here (see ``_register_fault_routes``) and its routes join this sub-app.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fake_manta import faults as faults_module
from fake_manta import jsonbody
from fake_manta.config import FakeMantaConfig
from fake_manta.errors import AuthorizationFailed, BadRequest, MantaError, UnsupportedMediaType
from fake_manta.middlewares import Handler, json_response
from fake_manta.models import Store

ADMIN_CONFIG = web.AppKey("fake_manta.admin.config", FakeMantaConfig)
ADMIN_STORE = web.AppKey("fake_manta.admin.store", Store)


def _dump(payload: Any, status: int = 200) -> web.Response:
    return json_response(status, json.dumps(payload, separators=(",", ":")).encode())


#: The header every admin request must carry (``ADMIN_HEADERS`` is the dict to send).
ADMIN_HEADER = "X-Fake-Manta-Admin"
ADMIN_HEADERS = {ADMIN_HEADER: "1"}
#: Methods whose admin requests must declare a JSON body.
_WRITES = frozenset({"POST", "PUT", "PATCH"})


def _admitted_peer(config: FakeMantaConfig, peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in net for net in config.admin_networks)


def _literal_host(host: str) -> bool:
    """An IP literal or ``localhost``: a DNS-rebinding page always names its own domain."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.removeprefix("[").split("]")[0].rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_admin_request(request: web.Request, config: FakeMantaConfig) -> None:
    """Raise unless ``request`` may use the admin surface (see the module docstring)."""
    peer = request.remote or ""
    if not _admitted_peer(config, peer):
        raise AuthorizationFailed(f"{peer} may not use the admin surface (see --admin-from)")
    host = request.headers.get("Host")
    if host is not None and not _literal_host(host):
        raise AuthorizationFailed(f"admin requests must name the server by address, not {host}")
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{host}":
        raise AuthorizationFailed(f"cross-origin admin requests are refused (Origin {origin})")
    if request.headers.get(ADMIN_HEADER) != "1":
        raise AuthorizationFailed(f"admin requests need the header {ADMIN_HEADER}: 1")
    if request.method in _WRITES and request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"admin {request.method} requests need Content-Type: application/json")


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin surface changes state without auth: admit local, deliberate clients only."""
    check_admin_request(request, request.app[ADMIN_CONFIG])
    return await handler(request)


def add_account(config: FakeMantaConfig, login: str, keys: list[str], operator: bool) -> list[str]:
    """Register ``login`` (trees exist implicitly) and its keys; returns key fingerprints."""
    try:
        config.registry.add_account(login, operator=operator)
        return [config.registry.add_key(login, key) for key in keys]
    except (ValueError, KeyError) as exc:
        raise BadRequest(f"invalid account or key: {exc}") from exc


def add_user(config: FakeMantaConfig, login: str, user: str, keys: list[str]) -> list[str]:
    """Register sub-user ``login/user`` and its keys; returns key fingerprints."""
    try:
        config.registry.add_user(login, user)
        return [config.registry.add_user_key(login, user, key) for key in keys]
    except KeyError as exc:
        raise BadRequest(f"account {exc} does not exist") from exc
    except ValueError as exc:
        raise BadRequest(f"invalid sub-user or key: {exc}") from exc


async def reset_state(config: FakeMantaConfig, store: Store) -> None:
    """Empty every object and directory (accounts stay); forget every fault rule and every
    recorded request."""
    await store.reset()
    config.faults.reset()
    config.requests.clear()


async def state_of(config: FakeMantaConfig, store: Store) -> dict[str, Any]:
    accounts = []
    for login in config.registry.logins():
        account = config.registry.get(login)
        if account is not None:
            accounts.append({"login": login, "operator": account.operator,
                             "keys": sorted(account.keys),
                             "users": {u: sorted(k) for u, k in sorted(account.users.items())}})
    return {
        "accounts": accounts,
        "backend": store.backend.kind,
        "dataDir": str(config.data_dir) if config.data_dir else None,
        "fsync": config.fsync,
        "noAuth": config.no_auth,
        "snaplinks": config.snaplinks,
        "maxContentLength": config.max_content_length,
        **await store.backend.stats(),
    }


routes = web.RouteTableDef()


@routes.post("/reset")
async def post_reset(request: web.Request) -> web.StreamResponse:
    await reset_state(request.app[ADMIN_CONFIG], request.app[ADMIN_STORE])
    return web.Response(status=204)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON, or 400 naming what is wrong with it."""
    try:
        return jsonbody.loads(await request.read())
    except ValueError as exc:
        raise BadRequest(f"invalid JSON body: {exc}") from exc


@routes.post("/accounts")
async def post_accounts(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("login"), str):
        raise BadRequest('body must be {"login": str, "keys": [str], "operator": bool}')
    keys = body.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadRequest("keys must be a list of OpenSSH public key lines")
    operator = bool(body.get("operator", False))
    fps = add_account(request.app[ADMIN_CONFIG], body["login"], keys, operator)
    return _dump({"login": body["login"], "operator": operator, "keys": fps}, 201)


@routes.post("/users")
async def post_users(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    if (not isinstance(body, dict) or not isinstance(body.get("login"), str)
            or not isinstance(body.get("user"), str)):
        raise BadRequest('body must be {"login": str, "user": str, "keys": [str]}')
    keys = body.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadRequest("keys must be a list of OpenSSH public key lines")
    fps = add_user(request.app[ADMIN_CONFIG], body["login"], body["user"], keys)
    return _dump({"login": body["login"], "user": body["user"], "keys": fps}, 201)


@routes.get("/state")
async def get_state(request: web.Request) -> web.StreamResponse:
    return _dump(await state_of(request.app[ADMIN_CONFIG], request.app[ADMIN_STORE]))


@routes.get("/requests", allow_head=False)
async def get_requests(request: web.Request) -> web.StreamResponse:
    return _dump(request.app[ADMIN_CONFIG].requests.records())


@routes.delete("/requests")
async def delete_requests(request: web.Request) -> web.StreamResponse:
    request.app[ADMIN_CONFIG].requests.clear()
    return web.Response(status=204)


def _register_fault_routes(table: web.RouteTableDef, config: FakeMantaConfig) -> None:
    """THE PLACE for fault admin routes: ``faults.add_admin_routes(table, injector)``."""
    register: Callable[[web.RouteTableDef, Any], None] | None = getattr(
        faults_module, "add_admin_routes", None)
    if register is not None:
        register(table, config.faults)


def create_admin_app(config: FakeMantaConfig, store: Store) -> web.Application:
    admin = web.Application(middlewares=[admin_guard])
    admin[ADMIN_CONFIG] = config
    admin[ADMIN_STORE] = store
    table = web.RouteTableDef()
    _register_fault_routes(table, config)
    admin.add_routes(routes)
    admin.add_routes(table)
    return admin


__all__ = [
    "ADMIN_HEADER",
    "ADMIN_HEADERS",
    "MantaError",
    "add_account",
    "add_user",
    "check_admin_request",
    "create_admin_app",
    "reset_state",
    "state_of",
]
