"""The gateway's logs: bunyan records (or text, for humans), the request id, the audit record.

``configure`` makes every record one JSON object a line in bunyan's format (``v`` 0, a numeric
``level``, ``name``, ``hostname``, ``pid``, ``time``, ``msg``; the Python logger is
``component``), so that the ``bunyan`` CLI pretty-prints and filters the gateway's output, or a
plain text line. Each record logged while a request is handled carries its ``req_id``
(``RequestIdFilter``, reading the contract's ``gateway.telemetry.request_id``, which the error
middleware sets); ``audit_middleware`` writes one record per request, shaped like restify's
audit logger (``audit: true``, ``route`` with CloudAPI's operation name, ``req``, ``res``,
``latency``).

Secrets stay out: the audit record names no header, and the libraries that log request
headers at DEBUG (botocore's signed requests) are held at INFO whatever the level.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import IO, Any, Literal

from aiohttp import web
from pythonjsonlogger.json import JsonFormatter

from gateway import telemetry
from gateway.server.appkeys import ACCOUNT, IMAGE_ACTION, REQUEST_ID

__all__ = [
    "LEVELS",
    "BunyanFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "audit_middleware",
    "bunyan_level",
    "configure",
    "quiet_libraries",
    "route_name",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LogFormat = Literal["json", "text"]

#: The record's ``name``: the service, as bunyan names a service's logger.
SERVICE_NAME = "cloudapi-gateway"
#: Python has no TRACE level; this one sits below DEBUG, as bunyan's trace (10) does.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: ``--log-level`` values: bunyan's names and Python's.
LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}

#: Libraries whose DEBUG records hold request headers (botocore prints every signed request,
#: Authorization included): never below INFO.
NOISY_LIBRARIES = ("botocore", "aiobotocore", "boto3", "s3transfer", "urllib3")
#: aiohttp's access log says less than the audit record does: it is kept quiet.
ACCESS_LOGGER = "aiohttp.access"

audit_log = logging.getLogger("gateway.audit")


def bunyan_level(levelno: int) -> int:
    """Python's level -> bunyan's: trace 10, debug 20, info 30, warn 40, error 50, fatal 60."""
    if levelno >= logging.CRITICAL:
        return 60
    if levelno >= logging.ERROR:
        return 50
    if levelno >= logging.WARNING:
        return 40
    if levelno >= logging.INFO:
        return 30
    if levelno >= logging.DEBUG:
        return 20
    return 10


_second: list[Any] = [None, ""]  # (whole second, its formatted prefix): strftime is slow


def _iso_time(created: float) -> str:
    """``2024-05-01T12:00:00.123Z``: ISO 8601, UTC, milliseconds (what bunyan writes)."""
    whole = int(created)
    if _second[0] != whole:
        prefix = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _second[0], _second[1] = whole, prefix
    return f"{_second[1]}{int((created - whole) * 1000):03d}Z"


class RequestIdFilter(logging.Filter):
    """Adds ``req_id`` (the request being handled) to a record that has none. Put it on the
    handler: a logger's filters do not see what its children propagate."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "req_id", None) is None:
            request_id = telemetry.request_id.get()
            if request_id is not None:
                record.req_id = request_id
        return True


#: Every attribute of a plain LogRecord (not an extra field of the record).
_RESERVED = sorted(
    set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)))
    | {"message", "asctime"}
)


def _compact_json(data: Any, **kwargs: Any) -> str:
    """``JSON.stringify``'s spacing, as bunyan writes records."""
    return json.dumps(data, separators=(",", ":"), **kwargs)


class BunyanFormatter(JsonFormatter):
    """One bunyan record: ``name``, ``hostname``, ``pid``, ``component``, ``level``, the
    record's extra fields, ``msg``, ``time``, ``v``. An exception becomes bunyan's ``err``
    (``message``, ``name``, ``stack``), which the CLI prints as a stack."""

    def __init__(self, name: str = SERVICE_NAME) -> None:
        # No format fields (a ``None`` format would mean ``%(message)s``): add_fields puts
        # bunyan's fields in; every other attribute of the record that is not a LogRecord's
        # own is an extra field of the record.
        super().__init__(
            fmt=(),
            reserved_attrs=[*_RESERVED, "taskName"],
            json_serializer=_compact_json,
        )
        self.service = name
        self.hostname = socket.gethostname()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        core = {
            "name": self.service,
            "hostname": self.hostname,
            "pid": record.process,
            "component": record.name,
            "level": bunyan_level(record.levelno),
        }
        log_data.update(core)  # first, in bunyan's order
        super().add_fields(log_data, record, message_dict)
        log_data.update(core)  # and no extra field may replace them
        log_data.pop("exc_info", None)
        stack = log_data.pop("stack_info", None)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            log_data["err"] = {
                "message": str(exc),
                "name": type(exc).__name__,
                "stack": "".join(traceback.format_exception(exc)).rstrip(),
            }
        elif record.exc_text:
            log_data["err"] = {"message": record.exc_text, "name": "Error"}
        if stack:
            log_data["stack"] = stack
        log_data["msg"] = record.getMessage()
        log_data["time"] = _iso_time(record.created)
        log_data["v"] = 0


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO gateway.audit [req_id]: message`` (and a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "req_id", None)
        where = f" [{request_id}]" if request_id else ""
        line = (
            f"{_iso_time(record.created)} {record.levelname} {record.name}{where}: "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


_INSTALLED: list[logging.Handler] = []


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each record, as logging's last resort does:
    a handler that kept the stream of its first call would write to a closed one once that is
    replaced (pytest's capture, a daemon's redirection)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:  # StreamHandler.__init__ assigns it
        pass


def quiet_libraries(level: int = logging.NOTSET) -> None:
    """Hold the libraries that log request headers (Authorization included) at INFO or above."""
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def configure(
    level: str | int = "info",
    log_format: LogFormat = "json",
    *,
    stream: IO[str] | None = None,
    name: str = SERVICE_NAME,
) -> logging.Handler:
    """Send every record at ``level`` or above to ``stream`` (stderr) as bunyan JSON or text.

    Replaces the handler an earlier call installed (never anyone else's) and returns the new
    one. ``level`` is a ``LEVELS`` name or a number.
    """
    numeric = LEVELS[level.lower()] if isinstance(level, str) else level
    # No record carries a thread, process name or source line (bunyan's has none): the
    # logging docs' "Optimization" settings, which spare every record those look-ups.
    logging.logThreads = False
    logging.logProcesses = True  # ``pid`` is a bunyan field
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented there too
    handler = logging.StreamHandler(stream) if stream is not None else CurrentStderrHandler()
    handler.setFormatter(BunyanFormatter(name) if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    while _INSTALLED:
        root.removeHandler(_INSTALLED.pop())
    root.addHandler(handler)
    _INSTALLED.append(handler)
    root.setLevel(numeric)
    quiet_libraries(numeric)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)  # the audit record replaces it
    return handler


# --- the audit record ---------------------------------------------------------------------------

#: CloudAPI's route names (restify lower-cases ``name``) by aiohttp route name and method.
_ROUTES = {
    ("ping", "GET"): "ping",
    ("ping", "HEAD"): "ping",
    ("images", "GET"): "listimages",
    ("images", "HEAD"): "headimages",
    ("images", "POST"): "createimagefrommachine",
    ("image", "GET"): "getimage",
    ("image", "HEAD"): "headimage",
    ("image", "DELETE"): "deleteimage",
    ("update_image", "POST"): "updateimage",
}
#: CloudAPI serves every image action under its UpdateImage route; the audit names the
#: operation instead (CloudAPI's documentation does: ExportImage, CloneImage, UpdateImage).
_ACTION_ROUTES = {"export": "exportimage", "clone": "cloneimage", "update": "updateimage"}


def route_name(request: web.Request) -> str | None:
    """CloudAPI's operation name of the request (``exportimage``, ``getimage``...); ``None``
    when no route matched. Routes of plugins are named by their aiohttp name."""
    name = request.match_info.route.name
    if not name:
        return None
    route = _ROUTES.get((name, request.method))
    if route == "updateimage":
        action = request.get(IMAGE_ACTION)
        return _ACTION_ROUTES.get(action or "update", "updateimage")
    return route or name.replace("_", "").lower()


def _bytes_out(request: web.Request, response: web.StreamResponse | None) -> int:
    if response is None or request.method == "HEAD":
        return 0
    if response.prepared:
        return int(response.body_length)
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return len(response.body)
    return int(response.content_length or 0)


def _error_of(response: web.StreamResponse | None) -> dict[str, str] | None:
    """``{"name": code, "message": ...}`` of a CloudAPI error response, read from its body."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return None
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return None
    return {"name": body["code"], "message": str(body.get("message", ""))}


def _audit(
    request: web.Request,
    response: web.StreamResponse | None,
    status: int,
    started: float,
) -> None:
    latency = int((time.monotonic() - started) * 1000)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    port = peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None
    account = request.get(ACCOUNT)
    route = route_name(request)
    url = request.rel_url.raw_path_qs
    record: dict[str, Any] = {
        "audit": True,
        "req_id": request.get(REQUEST_ID),
        "route": route,
        "req": {
            "method": request.method,
            "url": url,
            "httpVersion": f"{request.version.major}.{request.version.minor}",
            "remoteAddress": request.remote,
            "remotePort": port,
        },
        "res": {"statusCode": status},
        "latency": latency,
        "account": account.login if account is not None else None,
        "bytesIn": int(getattr(request.content, "total_bytes", 0) or 0),
        "bytesOut": _bytes_out(request, response),
    }
    if status >= 400:
        error = _error_of(response)
        if error is not None:
            record["err"] = error
    # restify's audit logger warns on 5xx (so that 5xx stand out when filtering by level).
    audit_log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "handled: %d %s %s (%s, %d ms)",
        status,
        request.method,
        url,
        route or "no route",
        latency,
        extra=record,
    )


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: one audit record per request, whatever became of it.

    A request whose client went away (the handler was cancelled) is recorded with status 499,
    as nginx does; the response an inner middleware made of an error is recorded as sent.
    """
    started = time.monotonic()
    response: web.StreamResponse | None = None
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        try:
            _audit(request, response, status, started)
        except Exception:  # never let the audit fail a request
            logging.getLogger(__name__).exception("could not write the audit record")
