"""CORS as muskie does it: stored ``access-control-*`` headers filtered by the request's Origin,
and OPTIONS preflights granted from the stored metadata (the parent directory's for a PUT).

Sources: muskie ``lib/common.js`` (``CORS_RES_HDRS``, ``createMetadata``, ``addCustomHeaders``)
and ``lib/other.js`` (``corsHandler``: ``ensureParent``, ``preflightPUTRequest``,
``ensureEntryExists``, ``preflightRequest``).
"""

from __future__ import annotations

import re

from aiohttp import web

from fake_manta.errors import ResourceNotFound
from fake_manta.handlers.target import Target
from fake_manta.models import Store
from fake_manta.models.store import is_root, parent_of

#: The only CORS headers muskie stores on an object or directory, in its order
#: (``CORS_RES_HDRS``; ``createMetadata`` stores them first, in this order).
CORS_HEADERS = (
    "access-control-allow-headers",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-max-age",
    "access-control-allow-methods",
)
_LIST = re.compile(r"\s*,\s*")


def custom_headers(stored: dict[str, str], origin: str | None, method: str) -> dict[str, str]:
    """The stored headers a GET/HEAD answers with (muskie ``addCustomHeaders``).

    Without an ``Origin`` they go out verbatim. With one, the CORS headers are walked in
    muskie's stored order (:data:`CORS_HEADERS`): ``access-control-allow-origin`` becomes the
    request's origin if it is in the stored list (or the list has ``*``), otherwise every CORS
    header set so far is dropped; ``access-control-allow-methods`` stays if it lists the
    request's method, otherwise every CORS header set so far is dropped;
    ``access-control-expose-headers`` stays; ``access-control-max-age`` and
    ``access-control-allow-headers`` (preflight-only) are not sent.
    """
    out = {name: value for name, value in stored.items()
           if origin is None or name not in CORS_HEADERS}
    if origin is None:
        return out
    for name in CORS_HEADERS:
        value = stored.get(name)
        if value is None:
            continue
        if name == "access-control-allow-origin":
            if any(v in (origin, "*") for v in _LIST.split(value)):
                out[name] = origin
            else:
                _drop_cors(out)
        elif name == "access-control-allow-methods":
            if method in _LIST.split(value):
                out[name] = value
            else:
                _drop_cors(out)
        elif name == "access-control-expose-headers":
            out[name] = value
    return out


def _drop_cors(headers: dict[str, str]) -> None:
    for name in CORS_HEADERS:
        headers.pop(name, None)


def origin_echo(request: web.Request) -> dict[str, str]:
    """What a successful object or directory PUT adds: the request's Origin, echoed."""
    origin = request.headers.get("Origin")
    return {"Access-Control-Allow-Origin": origin} if origin else {}


async def preflight(request: web.Request, target: Target, store: Store) -> web.StreamResponse:
    """OPTIONS: 200, with CORS grants only where the stored metadata allows them."""
    path = target.path
    if not is_root(path):
        await store.check_parent(path)  # muskie's ensureParent comes first
    method = request.headers.get("Access-Control-Request-Method")
    # "use directory metadata to control writes": a PUT preflight reads the parent's
    put_parent = method == "PUT" and not is_root(path)
    entry = await store.lookup(parent_of(path) if put_parent else path)
    if entry is None:
        raise ResourceNotFound(f"{path} was not found")
    grants = _grants(entry.headers, request.headers.get("Origin"), method,
                     request.headers.get("Access-Control-Request-Headers", ""))
    return web.Response(status=200, headers=grants)


def _grants(stored: dict[str, str], origin: str | None, method: str | None,
            requested_headers: str) -> dict[str, str]:
    """muskie ``preflightRequest``: every condition holds, or no CORS header at all."""
    allow_origin = stored.get("access-control-allow-origin")
    allow_methods = stored.get("access-control-allow-methods")
    allow_headers = stored.get("access-control-allow-headers", "")
    wanted = _LIST.split(requested_headers)
    if (not origin or not method or not allow_origin or not allow_methods
            or not any(v in (origin, "*") for v in _LIST.split(allow_origin))
            or method not in _LIST.split(allow_methods)
            # muskie tests each name with indexOf on the stored string: a substring match
            or not all(not h or h in allow_headers for h in wanted)):
        return {}
    grants = {"Access-Control-Allow-Origin": origin,
              "Access-Control-Allow-Methods": allow_methods}
    if allow_headers:
        grants["Access-Control-Allow-Headers"] = allow_headers
    if "access-control-max-age" in stored:
        grants["Access-Control-Max-Age"] = stored["access-control-max-age"]
    return grants
