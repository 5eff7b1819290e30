"""The gateway's logs: bunyan records (or text, for humans), the request id, the audit record.

``configure`` makes every record one JSON object a line in bunyan's format (``v`` 0, a numeric
``level``, ``name``, ``hostname``, ``pid``, ``time``, ``msg``; the Python logger is
``component``), so that the ``bunyan`` CLI pretty-prints and filters the gateway's output, or a
plain text line. Each record logged while a request is handled carries its ``req_id``
(``RequestIdFilter``, reading the contract's ``gateway.telemetry.request_id``, which the error
middleware sets); ``audit_middleware`` writes one record per request, shaped like restify's
audit logger (``audit: true``, ``route`` with CloudAPI's operation name, ``req``, ``res``,
``latency``).

The audit record is written once per request, so it skips logging's machinery when it can
(``_audit``): nothing is built when the level leaves it out; otherwise, when the handler
``configure`` installed writes JSON and nothing else would see the record, the request only
queues it in that handler (``LineHandler.write_later``: the request, its response, status,
latency and time) and goes on. The record is gathered (``AuditRecord``) and its line written
when the handler writes its queue, a few milliseconds later, in a batch with the others: the
same work, done where the processor's caches still hold it (``bench/logging_overhead.py``
measures the difference). The line, after a prefix encoded once (``name``, ``hostname``,
``pid``, ``component``, ``level``), is exactly the one ``BunyanFormatter`` writes for the
same record. When any other handler would see the record (pytest's capture, a collector an
embedding program adds), it goes through logging as a ``LogRecord`` at once, to every handler
alike.

Secrets stay out: the audit record names no header, and the libraries that log request
headers at DEBUG (botocore's signed requests) are held at INFO whatever the level.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import IO, Any, Literal

from aiohttp import HttpVersion10, HttpVersion11, web
from pythonjsonlogger.json import JsonFormatter

from gateway import telemetry
from gateway.server.appkeys import ACCOUNT, IMAGE_ACTION, REQUEST_ID
from gateway.server.audit_record import AuditRecord
from gateway.server.client_address import client_address
from gateway.server.log_stream import LineHandler

__all__ = [
    "LEVELS",
    "BunyanFormatter",
    "LineHandler",
    "RequestIdFilter",
    "TextFormatter",
    "audit_middleware",
    "bunyan_level",
    "configure",
    "flush_ctx",
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
_PARENT = logging.getLogger("gateway")
_ROOT = logging.getLogger()


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


#: (whole second, its text up to the dot): strftime is slow. One tuple, swapped whole, so
#: that threads never read the second of one call with the text of another.
_second: tuple[int, str] = (-1, "")
#: (millisecond, its text): a busy server writes many records in the same millisecond.
_millisecond: tuple[int, str] = (-1, "")


def _iso_time(created: float) -> str:
    """``2024-05-01T12:00:00.123Z``: ISO 8601, UTC, milliseconds (what bunyan writes)."""
    global _second, _millisecond
    ms = int(created * 1000)
    last = _millisecond
    if last[0] == ms:
        return last[1]
    whole, fraction = divmod(ms, 1000)
    second = _second
    if second[0] != whole:
        second = _second = (
            whole,
            datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S."),
        )
    text = f"{second[1]}{fraction:03d}Z"
    _millisecond = (ms, text)
    return text


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


#: ``bunyan_level`` of Python's named levels, looked up.
_BUNYAN_LEVELS = {
    level: bunyan_level(level)
    for level in (
        TRACE,
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
        logging.CRITICAL,
    )
}
#: This process's id, kept (``os.getpid`` is a system call) and renewed in a forked child.
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


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
        self._prefixes: dict[tuple[str, int, int], str] = {}

    def line_prefix(self, component: str, levelno: int) -> str:
        """The start of the line ``format`` writes for a record of logger ``component`` at
        ``levelno``, up to and with the ``level`` member and its comma (bunyan's fields
        before the record's own), encoded once per logger, level and process."""
        pid = _PID[0]
        key = (component, levelno, pid)
        prefix = self._prefixes.get(key)
        if prefix is None:
            core = {"name": self.service, "hostname": self.hostname, "pid": pid}
            core["component"] = component
            core["level"] = _BUNYAN_LEVELS.get(levelno) or bunyan_level(levelno)
            prefix = self._prefixes[key] = _compact_json(core)[:-1] + ","
        return prefix

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


#: The handler ``configure`` installed (at most one).
_INSTALLED: list[LineHandler] = []


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
    handler = LineHandler(stream)
    handler.setFormatter(BunyanFormatter(name) if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    while _INSTALLED:
        previous = _INSTALLED.pop()
        root.removeHandler(previous)
        previous.close()  # writes what it still holds
    root.addHandler(handler)
    _INSTALLED.append(handler)
    root.setLevel(numeric)
    quiet_libraries(numeric)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)  # the audit record replaces it
    return handler


async def flush_ctx(app: web.Application) -> AsyncIterator[None]:
    """A ``cleanup_ctx`` step: when the app stops, write the log lines still queued."""
    yield
    for handler in _INSTALLED:
        handler.flush()


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
    # restify's audit logger warns on 5xx (so that 5xx stand out when filtering by level).
    levelno = logging.WARNING if status >= 500 else logging.INFO
    if not audit_log.isEnabledFor(levelno):
        return
    latency = int((time.monotonic() - started) * 1000)
    ours = _direct_handler(levelno)
    if ours is None:
        record = _audit_record(request, response, status, latency)
        audit_log.log(levelno, "%s", record.message(), extra=record.fields())
        return
    # Only what changes after this moment is taken now; the rest is read when the line is
    # rendered, in the handler's next batch (see the module).
    ours.write_later(
        _audit_line, ours.formatter, levelno, request, response, status, latency, time.time()
    )


def _audit_line(
    formatter: BunyanFormatter,
    levelno: int,
    request: web.Request,
    response: web.StreamResponse | None,
    status: int,
    latency: int,
    created: float,
) -> str:
    """The audit record's line, as ``formatter`` writes it, rendered when its handler
    writes its queue."""
    record = _audit_record(request, response, status, latency)
    prefix = formatter.line_prefix(audit_log.name, levelno)
    return record.bunyan_line(prefix, _iso_time(created)) + "\n"


def _audit_record(
    request: web.Request,
    response: web.StreamResponse | None,
    status: int,
    latency: int,
) -> AuditRecord:
    # The connection's peer, which aiohttp keeps per connection (not the transport's look-up).
    peer = request.protocol.peername
    port = peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None
    request_id = request.get(REQUEST_ID)  # the error middleware sets it first thing
    account = request.get(ACCOUNT)  # set once the caller is authenticated
    version = request.version
    # Positional: a NamedTuple's keyword arguments cost a microsecond a request.
    return AuditRecord(
        request_id,
        route_name(request),
        request.method,
        request.rel_url.raw_path_qs,
        _HTTP_VERSIONS.get(version) or f"{version.major}.{version.minor}",
        client_address(request),
        port,
        status,
        latency,
        None if account is None else account.login,
        request.content.total_bytes,
        _bytes_out(request, response),
        _error_of(response) if status >= 400 else None,
    )


#: ``request.version`` as the audit record writes it.
_HTTP_VERSIONS = {HttpVersion11: "1.1", HttpVersion10: "1.0"}


def _direct_handler(levelno: int) -> LineHandler | None:
    """The JSON handler ``configure`` installed, when an audit record at ``levelno`` would
    reach it and nothing else: no other handler, no filter on the way (``Logger.handle``,
    ``Logger.callHandlers``)."""
    if not _INSTALLED:
        return None
    ours = _INSTALLED[0]
    handlers = _ROOT.handlers
    if (
        len(handlers) != 1
        or handlers[0] is not ours
        or levelno < ours.level
        or audit_log.handlers
        or _PARENT.handlers
        or audit_log.filters
        or not (audit_log.propagate and _PARENT.propagate)
        or not isinstance(ours.formatter, BunyanFormatter)
    ):
        return None
    return ours


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
