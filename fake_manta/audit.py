"""One audit record per request, with muskie's field names (muskie ``lib/audit.js``).

aiohttp calls the access logger once a response has been sent (or the client went away), so
:class:`AuditAccessLogger` is where the record is made. ``FakeMantaServer`` installs it; an app
served by a runner of your own gets it with ``access_log_class=AuditAccessLogger``.

A Manta request's record goes to the server's :class:`~fake_manta.logs.RequestLog` and, when
``FakeMantaConfig.log_requests`` is set (the CLI sets it), as an INFO record
``handled: <status>`` to the ``fake_manta.audit`` logger. The admin surface (``/_fake/``) is the
fake's own, as muskie's ``/ping`` is its own: its requests are logged at DEBUG only, without
``audit``, and are not kept.

The fields (muskie's names; what the fake has no counterpart for is left out):

- ``audit`` (true), ``req_id`` (the id the fake answered with in ``x-request-id``),
  ``remoteAddress``, ``remotePort``, ``secure`` (false: plain HTTP), ``latency`` (ms until the
  response headers, as ``x-response-time``), ``route`` and ``operation`` (muskie's route name,
  ``PutObject``, ``GetStorage``...; absent when no route matched);
- ``req``: ``method``, ``url`` (a pre-signed URL's ``signature`` redacted), ``headers`` (lower
  case, without ``authorization``: the client's ``x-request-id`` is there), ``httpVersion``,
  ``owner`` (the login whose tree the path names; muskie logs the account's uuid) and
  ``caller`` (``login``; ``user``: ``{"login"}`` for a sub-user; ``uuid``/``groups`` null);
- ``res``: ``statusCode`` and ``headers``;
- ``err`` when the answer was a Manta error: ``name`` (``<Code>Error``), ``code``, ``message``,
  ``statusCode``;
- ``objectId`` (the object's etag) when the answer names one, and for an object's bytes (GET
  of an object, PUT of an object or part) ``dataSize`` and ``dataLatency`` (ms until the last
  byte).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from fake_manta.auth import CALLER_INFO_KEY, path_owner
from fake_manta.config import CONFIG
from fake_manta.errors import MantaError
from fake_manta.logs import AUDIT_LOGGER, bunyan_time, loggable_headers, redact_url
from fake_manta.middlewares import (
    ADMIN_PREFIX,
    ERROR_KEY,
    PEER_KEY,
    REQUEST_ID_KEY,
)
from fake_manta.routes import route_name

__all__ = ["AuditAccessLogger", "audit_record"]

log = logging.getLogger(AUDIT_LOGGER)
_DATA_ROUTES = ("Object", "UploadPart")


def _err(err: MantaError) -> dict[str, Any]:
    return {"name": f"{err.code}Error", "code": err.code, "message": err.message,
            "statusCode": err.status}


def _caller(request: web.Request) -> dict[str, Any]:
    caller = request.get(CALLER_INFO_KEY)
    login = caller.login if caller is not None else None
    user = {"login": caller.user, "uuid": None} if caller is not None and caller.user else None
    return {"login": login, "uuid": None, "groups": None, "user": user}


def _latency(response: web.StreamResponse, elapsed_ms: int) -> int:
    try:
        return int(response.headers["x-response-time"])
    except (KeyError, ValueError):
        return elapsed_ms


def _data_size(request: web.Request, response: web.StreamResponse, route: str) -> int | None:
    """Bytes of object data moved, for the routes muskie reports them on."""
    if response.status >= 300:
        return None
    if request.method == "PUT" and route.endswith(_DATA_ROUTES):
        return int(getattr(request.content, "total_bytes", 0))
    content_type = response.headers.get("Content-Type", "")
    if request.method == "GET" and route.endswith("Storage") and "type=directory" not in (
            content_type):
        return int(response.content_length or 0)
    return None


def audit_record(
    request: web.Request, response: web.StreamResponse, elapsed: float
) -> dict[str, Any]:
    """The audit record of a request that has been answered (``elapsed``: seconds, in total)."""
    elapsed_ms = int(elapsed * 1000)
    peer = request.get(PEER_KEY)
    route = route_name(request.method, request.rel_url.raw_path,
                       request.headers.get("Content-Type"))
    record: dict[str, Any] = {
        "audit": True,
        "remoteAddress": peer[0] if peer else request.remote,
        "remotePort": peer[1] if peer else None,
        "req_id": request.get(REQUEST_ID_KEY) or response.headers.get("x-request-id"),
        "req": {
            "method": request.method,
            "url": redact_url(request.raw_path),
            "headers": loggable_headers(request.headers),
            "httpVersion": f"{request.version.major}.{request.version.minor}",
            "owner": path_owner(request.path),
            "caller": _caller(request),
        },
        "res": {"statusCode": response.status, "headers": loggable_headers(response.headers)},
        "latency": _latency(response, elapsed_ms),
        "secure": False,
    }
    err = request.get(ERROR_KEY)
    if err is not None:
        record["err"] = _err(err)
    if route is not None:
        record["route"] = record["operation"] = route
        etag = response.headers.get("Etag")
        if etag and response.status < 300:
            record["objectId"] = etag
        size = _data_size(request, response, route)
        if size is not None:
            record["dataSize"] = size
            record["dataLatency"] = elapsed_ms
    return record


class AuditAccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook, called once a response has been sent."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not isinstance(request, web.Request) or REQUEST_ID_KEY not in request:
            return  # not a request the app handled (an HTTP parse error): muskie has none
        try:
            config = request.config_dict[CONFIG]
            if request.path.startswith(ADMIN_PREFIX):
                if config.log_requests:
                    _log_admin(request, response, time)
                return
            record = audit_record(request, response, time)
            config.requests.append({**record, "time": bunyan_time()})
            if config.log_requests and log.isEnabledFor(logging.INFO):
                log.info("handled: %d", response.status, extra=record)
        except Exception:  # a broken record must not break serving
            log.exception("could not write the audit record of %s %s",
                          request.method, request.path)


def _log_admin(request: web.Request, response: web.StreamResponse, elapsed: float) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("admin handled: %d", response.status, extra={
            "req_id": request.get(REQUEST_ID_KEY),
            "req": {"method": request.method, "url": request.raw_path},
            "res": {"statusCode": response.status},
            "latency": int(elapsed * 1000),
        })
