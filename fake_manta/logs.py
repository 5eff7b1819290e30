"""Log records in bunyan's JSON format (as muskie writes them), or as text; the request log.

Every record is one JSON line with bunyan's core fields: ``name``, ``hostname``, ``pid``,
``level`` (bunyan's numbers: trace 10, debug 20, info 30, warn 40, error 50, fatal 60), the
record's own fields, ``msg``, ``time`` (ISO-8601, milliseconds, ``Z``) and ``v`` (0). A
Python exception becomes bunyan's ``err`` (``message``, ``name``, ``stack``). The formatter is
python-json-logger's, configured here: fake_manta stands alone, so it shares the format with
the gateway, not the gateway's code.

:func:`setup_logging` is for the ``fake-manta`` command, which owns its process; code that
embeds the server keeps its own logging setup (the audit records go to the
``fake_manta.audit`` logger at INFO only with ``log_requests=True``). :class:`RequestLog` keeps
the latest audit records in memory for in-process users (``FakeMantaServer.requests``).
"""

from __future__ import annotations

import collections
import logging
import re
import socket
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "APP_NAME",
    "AUDIT_LOGGER",
    "BunyanFormatter",
    "RequestLog",
    "TextFormatter",
    "bunyan_level",
    "bunyan_time",
    "loggable_headers",
    "redact_url",
    "setup_logging",
]

#: bunyan's ``name`` of every record the fake writes.
APP_NAME = "fake-manta"
#: The logger of the audit records (one per Manta request, INFO).
AUDIT_LOGGER = "fake_manta.audit"
#: Python level -> bunyan level: the first bound the Python level is below.
_LEVELS = ((logging.DEBUG, 10), (logging.INFO, 20), (logging.WARNING, 30),
           (logging.ERROR, 40), (logging.CRITICAL, 50))
#: Request headers never logged: credentials.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
#: A pre-signed URL's ``signature`` query parameter (its value is a credential).
_SIGNATURE_PARAM = re.compile(r"([?&]signature=)[^&#]*", re.IGNORECASE)


def bunyan_level(levelno: int) -> int:
    """Python's DEBUG 10 -> 20, INFO -> 30, WARNING -> 40, ERROR -> 50, CRITICAL -> 60;
    anything below DEBUG is bunyan's trace (10)."""
    for bound, level in _LEVELS:
        if levelno < bound:
            return level
    return 60


def bunyan_time(created: float | None = None) -> str:
    """``2026-12-01T23:45:11.123Z`` (``created``, else now): bunyan's ``time``
    (``Date#toISOString``)."""
    stamp = datetime.fromtimestamp(time.time() if created is None else created, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_url(url: str) -> str:
    """The URL as logged: a pre-signed URL's ``signature=`` value becomes ``REDACTED``."""
    return _SIGNATURE_PARAM.sub(r"\1REDACTED", url)


def loggable_headers(headers: Any) -> dict[str, str]:
    """Lower-case names (as node has them), repeats joined with ``, ``, credentials dropped."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in SECRET_HEADERS:
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _err(record: logging.LogRecord) -> dict[str, Any] | None:
    """bunyan's ``err`` serializer (message, name, stack) for a record's exception."""
    if not record.exc_info or record.exc_info[1] is None:
        return {"message": record.exc_text, "name": "Error"} if record.exc_text else None
    exc = record.exc_info[1]
    stack = "".join(traceback.format_exception(exc)).rstrip("\n")
    return {"message": str(exc), "name": type(exc).__name__, "stack": stack}


class BunyanFormatter(JsonFormatter):
    """One bunyan record per line: ``name``, ``hostname``, ``pid``, ``component`` (the Python
    logger), ``level``, the record's ``extra`` fields, then ``msg``, ``time`` and ``v``
    (bunyan's own order)."""

    def __init__(self, name: str = APP_NAME) -> None:
        super().__init__(json_ensure_ascii=False)
        self.app_name = name
        self.hostname = socket.gethostname()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["name"] = self.app_name
        log_data["hostname"] = self.hostname
        log_data["pid"] = record.process
        log_data["component"] = record.name
        log_data["level"] = bunyan_level(record.levelno)
        message_dict.pop("exc_info", None)  # replaced by bunyan's err
        super().add_fields(log_data, record, message_dict)
        log_data.pop("message", None)  # the default format's field: bunyan calls it msg
        stack = log_data.pop("stack_info", None)
        err = _err(record)
        if err is not None and "err" not in log_data:
            log_data["err"] = err
        if stack:
            log_data["stack"] = stack
        log_data["msg"] = record.message  # set by format()
        log_data["time"] = bunyan_time(record.created)
        log_data["v"] = 0


class TextFormatter(logging.Formatter):
    """One readable line per record, ``TIME LEVEL logger [req_id]: message``; an audit record
    reads ``... INFO fake_manta.audit [r-1]: handled: 204 PUT /bob/stor/x (PutObject, 3 ms)
    x-request-id=r-1 caller=bob``."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "req_id", None)
        where = f" [{request_id}]" if request_id else ""
        line = (f"{bunyan_time(record.created)} {record.levelname} {record.name}{where}: "
                f"{self._message(record)}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        message = record.getMessage()
        req = getattr(record, "req", None)
        if not isinstance(req, dict):
            return message
        parts = [message, str(req.get("method")), str(req.get("url"))]
        route, latency = getattr(record, "route", None), getattr(record, "latency", None)
        if latency is not None:
            parts.append(f"({route or 'no route'}, {latency} ms)")
        client_id = (req.get("headers") or {}).get("x-request-id")
        if client_id:
            parts.append(f"x-request-id={client_id}")
        caller = req.get("caller") or {}
        if caller.get("login"):
            user = caller.get("user") or {}
            login = f"{caller['login']}/{user['login']}" if user else caller["login"]
            parts.append(f"caller={login}")
        err = getattr(record, "err", None)
        if isinstance(err, dict) and err.get("code"):
            parts.append(f"err={err['code']}: {err.get('message', '')}")
        return " ".join(parts)


def setup_logging(
    verbosity: int = 0, log_format: Literal["json", "text"] = "json",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Configure the process for the ``fake-manta`` command; returns the handler.

    One handler on the root logger (stderr, as muskie logs), so aiohttp's warnings come out in
    the same format. ``verbosity`` 0: warnings and errors only; 1 (``-v``): also one audit
    record per request (INFO); 2+ (``-vv``): also DEBUG records (request start, injected
    faults, admin requests).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(BunyanFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    if verbosity >= 2:
        level = logging.DEBUG
    else:
        level = logging.INFO if verbosity == 1 else logging.WARNING
    logging.getLogger("fake_manta").setLevel(level)
    return handler


class RequestLog:
    """The latest audit records (dicts, oldest first), at most ``maxlen``; thread-safe.

    ``maxlen=0`` keeps none. The server appends one record per Manta request, whatever the
    logging level.
    """

    def __init__(self, maxlen: int = 1000) -> None:
        if maxlen < 0:
            raise ValueError("maxlen must be >= 0")
        self.maxlen = maxlen
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        if self.maxlen:
            with self._lock:
                self._records.append(record)

    def records(self) -> list[dict[str, Any]]:
        """A snapshot (a new list; the dicts are the stored ones: do not change them)."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
