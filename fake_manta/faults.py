"""Fault injection for the fake Manta: the reliability tests of whatever writes into it.

A rule matches a method and a path regex and applies to the next ``times`` matching requests:

- ``status``/``code``: answer a Manta error (``{"code","message"}``) instead of handling it;
- ``stall``: wait that many seconds first, then proceed (or fail, if ``status``/``code`` is set);
- ``cut_after``: drop the connection after K body bytes: after the handler has read K bytes of
  a request body (a PUT/POST), or after K bytes of the response body were sent (a GET).
- ``drip_bytes`` (with ``drip_interval``, seconds, default 1, and ``drip_in``, ``"head"`` or
  ``"body"``, default ``"body"``): send the response ``drip_bytes`` bytes every
  ``drip_interval`` seconds, in its head (status line and headers: the client waits for the
  headers) or its body (the rest of the head goes out at once), for any response, errors
  included (``fake_manta/drip.py``). ``server.faults.add("GET", r"/big$", drip_bytes=10,
  drip_interval=0.5, drip_in="head")``; over HTTP the same fields as JSON.

Rules are set from Python (``server.faults.add(...)``, thread-safe, so the background-thread
runner works) or over the admin surface (``POST/GET/DELETE /_fake/faults``; see
:func:`add_admin_routes`). Admin paths (``/_fake/...``) are never faulted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Middleware

from fake_manta import jsonbody
from fake_manta.drip import DripRegion, install_drip
from fake_manta.errors import CODES, InvalidArgumentError, MantaError, error_for_code

log = logging.getLogger("fake_manta.faults")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN_PREFIX = "/_fake"

#: The code an injected error gets when only a status is given.
_DEFAULT_CODES = {
    400: "BadRequest", 403: "AuthorizationFailed", 404: "ResourceNotFound",
    405: "MethodNotAllowed", 408: "UploadTimeout", 409: "ConcurrentRequest",
    412: "PreconditionFailed", 413: "MaxContentLengthExceeded", 499: "UploadAbandoned",
    500: "InternalError", 501: "NotImplemented", 503: "ServiceUnavailable",
    507: "NotEnoughSpace",
}
_ids = itertools.count(1)


@dataclass
class FaultRule:
    """One rule; ``hits`` counts the requests it has affected so far."""

    method: str | None
    path: str
    times: int | None = 1
    status: int | None = None
    code: str | None = None
    message: str | None = None
    stall: float | None = None
    cut_after: int | None = None
    drip_bytes: int | None = None
    drip_interval: float | None = None
    drip_in: DripRegion | None = None
    hits: int = 0
    id: int = field(default_factory=lambda: next(_ids))

    def __post_init__(self) -> None:
        if self.method is not None:
            self.method = self.method.upper()
            if self.method in {"", "*"}:
                self.method = None
        try:
            self._regex = re.compile(self.path)
        except re.error as exc:
            raise ValueError(f"path {self.path!r} is not a valid regex: {exc}") from exc
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or None for every matching request)")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP error status")
        if self.stall is not None and self.stall < 0:
            raise ValueError("stall must be >= 0 seconds")
        if self.cut_after is not None and self.cut_after < 0:
            raise ValueError("cut_after must be >= 0 bytes")
        self._check_drip()
        if self.status is None and self.code is None and self.stall is None and (
            self.cut_after is None and self.drip_bytes is None
        ):
            raise ValueError("a fault needs status/code, stall, cut_after or drip_bytes")

    def _check_drip(self) -> None:
        if self.drip_bytes is None:
            if self.drip_interval is not None or self.drip_in is not None:
                raise ValueError("drip_interval and drip_in need drip_bytes")
            return
        if self.drip_bytes < 1:
            raise ValueError("drip_bytes must be >= 1")
        if self.drip_interval is None:
            self.drip_interval = 1.0
        if self.drip_interval < 0:
            raise ValueError("drip_interval must be >= 0 seconds")
        if self.drip_in is None:
            self.drip_in = "body"
        if self.drip_in not in ("head", "body"):
            raise ValueError(f"drip_in must be 'head' or 'body', not {self.drip_in!r}")
        if self.cut_after is not None:
            raise ValueError("a rule cannot both drip and cut_after")

    @property
    def remaining(self) -> int | None:
        """How many more requests it will affect (None: unlimited)."""
        return None if self.times is None else max(self.times - self.hits, 0)

    def matches(self, method: str, path: str) -> bool:
        """Same method (or any) and the regex found anywhere in the decoded path."""
        return (self.method is None or self.method == method) and bool(self._regex.search(path))

    def error(self) -> MantaError | None:
        """The Manta error this rule answers with, if it answers with one."""
        if self.status is None and self.code is None:
            return None
        code = self.code
        if code is None:
            code = _DEFAULT_CODES.get(self.status or 500, "InternalError")
        status = self.status
        if status is None:
            known = CODES.get(code)
            status = known.status if known is not None else 500
        return error_for_code(code, status, self.message or f"injected fault: {code}")

    def to_json(self) -> dict[str, Any]:
        """The admin surface's view of a rule."""
        return {
            "id": self.id, "method": self.method, "path": self.path, "times": self.times,
            "status": self.status, "code": self.code, "message": self.message,
            "stall": self.stall, "cut_after": self.cut_after, "drip_bytes": self.drip_bytes,
            "drip_interval": self.drip_interval, "drip_in": self.drip_in, "hits": self.hits,
            "remaining": self.remaining,
        }


class FaultInjector:
    """Rules that make the next N matching requests fail, stall or lose their connection."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(
        self,
        method: str | None = None,
        path: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        message: str | None = None,
        stall: float | None = None,
        cut_after: int | None = None,
        drip_bytes: int | None = None,
        drip_interval: float | None = None,
        drip_in: DripRegion | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        """Add a rule (checked after earlier ones) and return it; raises ValueError if bad."""
        rule = FaultRule(
            method=method, path=path, times=times, status=status, code=code,
            message=message, stall=stall, cut_after=cut_after, drip_bytes=drip_bytes,
            drip_interval=drip_interval, drip_in=drip_in,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule | int) -> bool:
        """Drop one rule (or its id); False if it was not there."""
        rule_id = rule if isinstance(rule, int) else rule.id
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def rules(self) -> list[FaultRule]:
        """The rules still active, oldest first."""
        with self._lock:
            return list(self._rules)

    def reset(self) -> None:
        """Forget every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first live rule matching this request, counting the hit (one rule per request)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule
        return None


# --- connection cuts -------------------------------------------------------------------------
class ConnectionCut(ConnectionResetError):
    """Raised into the handler when an injected cut drops the connection."""


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


class _CutRequestBody:
    """Stands in for ``request.content``: yields K bytes, then drops the connection.

    Implements the reading API handlers use (read/readany/readexactly/readchunk/iter_*); after
    K bytes the transport is aborted and reads raise ConnectionResetError, as aiohttp's own
    stream does when a client vanishes mid-upload.
    """

    def __init__(self, inner: StreamReader, request: web.Request, limit: int) -> None:
        self._inner = inner
        self._request = request
        self._left = limit
        self._cut = False

    def _cut_now(self) -> ConnectionCut:
        if not self._cut:
            self._cut = True
            _abort(self._request)
        return ConnectionCut("Connection lost (injected fault)")

    async def _take(self, reader: Callable[[int], Awaitable[bytes]], n: int) -> bytes:
        if self._left <= 0:
            if self._inner.at_eof():
                return b""
            raise self._cut_now()
        want = self._left if n < 0 else min(n, self._left)
        data = await reader(want)
        self._left -= len(data)
        return data

    async def read(self, n: int = -1) -> bytes:
        return await self._take(self._inner.read, n)

    async def readany(self) -> bytes:
        return await self._take(self._inner.read, 2**16)

    async def readchunk(self) -> tuple[bytes, bool]:
        return await self._take(self._inner.read, 2**16), False

    async def readexactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(out), n)
            out += chunk
        return bytes(out)

    async def readline(self) -> bytes:
        return await self._take(lambda _n: self._inner.readline(), -1)

    async def _iterate(self, size: int) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read(size)
            if not chunk:
                return
            yield chunk

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        return self._iterate(n)

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._iterate(2**16)

    async def _chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        async for chunk in self._iterate(2**16):
            yield chunk, False

    def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        return self._chunks()

    def at_eof(self) -> bool:
        return self._cut or self._inner.at_eof()

    def is_eof(self) -> bool:
        return self._cut or self._inner.is_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CutWriter(StreamWriter):
    """A response writer that sends K body bytes, then drops the connection."""

    def __init__(self, request: web.Request, limit: int) -> None:
        super().__init__(request.protocol, asyncio.get_running_loop())
        self._request = request
        self._left = limit
        self.cut = False

    async def _cut_after(self, chunk: bytes) -> None:
        head = chunk[: self._left]
        self._left = 0
        if head:
            await super().write(head)
        self.send_headers()
        await super().drain()
        self.cut = True
        transport = self._request.transport
        if transport is not None:
            # close() flushes what asyncio still buffers (the K bytes), then sends FIN.
            transport.close()
        raise ConnectionCut("Connection cut by an injected fault")

    async def write(self, chunk: Any, *, drain: bool = True, LIMIT: int = 0x10000) -> None:
        if self.cut:
            raise ConnectionCut("Connection cut by an injected fault")
        data = bytes(chunk)
        if len(data) > self._left:  # a body of at most K bytes goes out whole
            await self._cut_after(data)
        self._left -= len(data)
        await super().write(data, drain=drain, LIMIT=LIMIT)

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self.cut:
            return
        if len(chunk) > self._left:
            await self._cut_after(chunk)
        self._left -= len(chunk)
        await super().write_eof(chunk)


#: Set on a request whose response body an injected cut or drip watches: handlers must then
#: write the body through ``resp.write`` (no ``sendfile``), so that the fault sees every byte.
RESPONSE_CUT_KEY: web.RequestKey[bool] = web.RequestKey("fake_manta.response_cut", bool)


def _install_cut(request: web.Request, limit: int) -> Callable[[], bool]:
    """Cut the request body when there is one, otherwise the response body."""
    if request.body_exists and request.method not in {"GET", "HEAD"}:
        body = _CutRequestBody(request.content, request, limit)
        # ``content`` is a cached property over ``_payload``: replace both.
        request._payload = body  # type: ignore[assignment]
        request._cache["content"] = body
        return lambda: body._cut
    writer = _CutWriter(request, limit)
    request._payload_writer = writer
    request[RESPONSE_CUT_KEY] = True
    return lambda: writer.cut


def fault_middleware(injector: FaultInjector) -> Middleware:
    """Apply the first matching rule to each non-admin request."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        rule = injector.take(request.method, request.path)
        if rule is None:
            return await handler(request)
        log.debug("fault injected: %s %s", request.method, request.path,
                  extra={"fault": rule.to_json()})
        if rule.stall:
            await asyncio.sleep(rule.stall)
        if rule.drip_bytes is not None:
            install_drip(request, rule.drip_bytes, rule.drip_interval or 0.0,
                         rule.drip_in or "body")
            request[RESPONSE_CUT_KEY] = True
        error = rule.error()
        if error is not None:
            raise error
        if rule.cut_after is None:
            return await handler(request)
        was_cut = _install_cut(request, rule.cut_after)
        try:
            return await handler(request)
        except (ConnectionError, MantaError):
            if not was_cut():
                raise
            # The connection is gone: nothing can be sent, so end quietly.
            _abort(request)
            return web.Response(status=499)

    return middleware


# --- admin surface -----------------------------------------------------------------------------
_FIELDS = {
    "method": (str, type(None)), "path": (str,), "times": (int, type(None)),
    "status": (int, type(None)), "code": (str, type(None)), "message": (str, type(None)),
    "stall": (int, float, type(None)), "cut_after": (int, type(None)),
    "drip_bytes": (int, type(None)), "drip_interval": (int, float, type(None)),
    "drip_in": (str, type(None)),
}


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


def add_admin_routes(table: web.RouteTableDef, injector: FaultInjector) -> None:
    """Fault routes of the admin sub-app (mounted at ``/_fake``, loopback only).

    ``POST /faults`` adds a rule (JSON with :meth:`FaultInjector.add`'s fields; 201 + the rule),
    ``GET /faults`` lists live rules with their hits, ``DELETE /faults`` clears them all and
    ``DELETE /faults/{id}`` drops one.
    """

    async def add(request: web.Request) -> web.Response:
        try:
            spec = jsonbody.loads(await request.read())
        except ValueError as exc:
            raise InvalidArgumentError(f"body is not JSON: {exc}") from exc
        if not isinstance(spec, dict):
            raise InvalidArgumentError("body must be a JSON object")
        unknown = sorted(set(spec) - set(_FIELDS))
        if unknown:
            raise InvalidArgumentError(f"unknown fault fields: {', '.join(unknown)}")
        for name, value in spec.items():
            if isinstance(value, bool) or not isinstance(value, _FIELDS[name]):
                raise InvalidArgumentError(f"{name} has the wrong type")
        try:
            rule = injector.add(**spec)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(str(exc)) from exc
        return _json_response(rule.to_json(), status=201)

    async def list_rules(request: web.Request) -> web.Response:
        return _json_response([rule.to_json() for rule in injector.rules()])

    async def clear(request: web.Request) -> web.Response:
        injector.reset()
        return web.Response(status=204)

    async def remove(request: web.Request) -> web.Response:
        try:
            rule_id = int(request.match_info["id"])
        except ValueError as exc:
            raise InvalidArgumentError("fault id must be an integer") from exc
        if not injector.remove(rule_id):
            raise error_for_code("ResourceNotFound", 404, f"fault {rule_id} was not found")
        return web.Response(status=204)

    table.post("/faults")(add)
    table.get("/faults", allow_head=False)(list_rules)
    table.delete("/faults")(clear)
    table.delete("/faults/{id}")(remove)
