"""The gateway's JSON responses: restify's serialization, and the one shape of every error."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError


def json_dumps(data: Any) -> str:
    """Compact JSON as restify's formatter writes it (``JSON.stringify``)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def json_bytes(data: Any) -> bytes:
    """UTF-8 JSON; lone surrogates (legal in parsed JSON) are escaped as JSON.stringify does."""
    try:
        return json_dumps(data).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response in the gateway's serialization (keeps the mapping's key order).

    The type is ``application/json`` with no charset, exactly as restify sends it.
    """
    return web.Response(
        body=json_bytes(data), status=status, headers=headers, content_type="application/json"
    )


def error_response(err: GatewayError) -> web.Response:
    """The one shape of every error: ``{"code","message"[,"errors"]}`` with the error's status."""
    return json_response(err.body(), status=err.status, headers=dict(err.headers))
