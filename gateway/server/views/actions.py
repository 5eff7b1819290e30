"""``POST /:login/images/:id``: CloudAPI's UpdateImage route, dispatching ``action=`` to plugins.

Parameters come from the query string (``sdc-exportimage``) and a JSON body (``triton``);
body values override query values, as restify's ``mapParams``/``overrideParams`` do. The body is
read with a size cap, gzip and Content-MD5 as restify reads them (``gateway.server.bodies``).
No handler timeout: an export may take an hour.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from gateway.actions import ActionContext
from gateway.errors import (
    InternalError,
    InvalidArgument,
    InvalidContent,
    MissingParameter,
    NotAvailableHere,
    UnsupportedMediaType,
)
from gateway.server.appkeys import (
    ACTIONS,
    API_VERSION,
    CATALOG,
    IMAGE_ACTION,
    JOURNAL,
    SETTINGS,
    STORAGE,
    VALIDATORS,
)
from gateway.server.auth import authenticate
from gateway.server.bodies import read_body
from gateway.server.image_view import get_visible_image, to_cloudapi_image
from gateway.server.limits import action_slot
from gateway.server.responses import json_response
from gateway.server.validation import validate_params
from gateway.server.versioning import LATEST_VERSION, negotiate, versions_in

log = logging.getLogger(__name__)

def _multi(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query-style pairs -> dict; a repeated name becomes a list, as restify's parser makes it."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """JSON object or urlencoded form -> params; anything else with a body is refused."""
    if not body.strip():
        return {}
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise InvalidContent("Invalid JSON: body is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise InvalidContent(f"Invalid JSON: {exc.msg} at position {exc.pos}") from None
        except (ValueError, RecursionError) as exc:
            raise InvalidContent(f"Invalid JSON: {str(exc)[:100] or 'too deeply nested'}") from None
        if not isinstance(data, dict):
            raise InvalidContent("Invalid JSON: the body must be a JSON object")
        return data
    if content_type == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
            return _multi(parse_qsl(text, keep_blank_values=True, errors="strict"))
        except (UnicodeDecodeError, ValueError):
            raise InvalidContent("Invalid form body: not UTF-8 urlencoded") from None
    raise UnsupportedMediaType(f"content type {content_type} is not supported")


async def request_params(request: web.Request, limit: int) -> dict[str, Any]:
    """Query parameters, then body parameters over them."""
    params = _multi(list(request.rel_url.query.items()))
    body = await read_body(request, limit, idle_timeout=request.app[SETTINGS].body_idle_timeout)
    params.update(parse_body(request.content_type, body))
    return params


#: CloudAPI's image actions that need what this gateway does not have: 501, with the reason.
UNAVAILABLE_ACTIONS = {
    "import-from-datacenter": (
        "ImportImageFromDatacenter is not available: this gateway is not part of a Triton "
        "region and has no other datacenters to import from"
    ),
}


async def update_image(request: web.Request) -> web.Response:
    """Authenticate, find the image, pick the action, validate, run; 200 with its result."""
    app = request.app
    account = await authenticate(request)
    settings = app[SETTINGS]
    params = await request_params(request, settings.max_body_size)
    catalog = app[CATALOG]
    image = await get_visible_image(catalog, account, request.match_info["id"])
    name = params.get("action")
    if name is None or name == "":
        raise MissingParameter("action is a required argument")
    actions = app[ACTIONS]
    if isinstance(name, str) and name in UNAVAILABLE_ACTIONS and name not in actions:
        raise NotAvailableHere(UNAVAILABLE_ACTIONS[name])
    if not isinstance(name, str) or name not in actions:
        shown = name if isinstance(name, str) else json.dumps(name)[:100]
        raise InvalidArgument(f"action {shown} is not a valid argument")
    action = actions[name]
    request[IMAGE_ACTION] = name
    served = getattr(action, "api_versions", "*")
    if served != "*":  # the action serves part of the API's versions: negotiate again within it
        request[API_VERSION] = negotiate(
            request.headers, request.method, request.path, versions_in(served)
        )
    validate_params(app[VALIDATORS][name], params)
    api_version = request.get(API_VERSION, LATEST_VERSION)
    ctx = ActionContext(
        request=request,
        account=account,
        image=image,
        catalog=catalog,
        storage=app[STORAGE],
        settings=settings,
        api_version=api_version,
        journal=app[JOURNAL],
        render_image=lambda shown: to_cloudapi_image(shown, api_version),
    )
    with action_slot(request.app, account, name):
        result = await action.run(ctx, params)
    if not isinstance(result, Mapping):
        log.error("action %s returned %s, not a mapping", name, type(result).__name__)
        raise InternalError("Internal Error")
    return json_response(dict(result))


def add_routes(app: web.Application) -> None:
    """Register ``POST /{login}/images/{id}`` (route name ``update_image``: CloudAPI's UpdateImage).

    The images view registers GET/HEAD/DELETE on the same path; CORS and 405 answers merge them.
    """
    app.router.add_post("/{login}/images/{id}", update_image, name="update_image")
