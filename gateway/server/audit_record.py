"""The audit record's fields, and their JSON written directly.

One audit record is written per request, so its line is cheap: ``bunyan_line`` writes exactly
what the gateway's bunyan formatter writes for a ``LogRecord`` of it (compact, ASCII-only JSON),
without the ``LogRecord``, the dict of its fields or the formatter. ``fields`` is the same
record as a dict, for the handlers that take a ``LogRecord``; tests keep the two equal.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

__all__ = ["AuditRecord"]


def _text(value: object) -> str:
    if value is None:
        return "null"
    return encode_basestring_ascii(value if isinstance(value, str) else str(value))


class AuditRecord(NamedTuple):
    """What restify's audit logger records of a request (plus the caller's login)."""

    req_id: str | None
    route: str | None
    method: str
    url: str
    http_version: str
    remote_address: str | None
    remote_port: int | None
    status: int
    latency: int
    account: str | None
    bytes_in: int
    bytes_out: int
    #: ``{"name": code, "message": ...}`` of an error answer.
    err: dict[str, str] | None = None

    def fields(self) -> dict[str, Any]:
        """The record's fields, in the order they are written."""
        fields: dict[str, Any] = {
            "audit": True,
            "req_id": self.req_id,
            "route": self.route,
            "req": {
                "method": self.method,
                "url": self.url,
                "httpVersion": self.http_version,
                "remoteAddress": self.remote_address,
                "remotePort": self.remote_port,
            },
            "res": {"statusCode": self.status},
            "latency": self.latency,
            "account": self.account,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
        }
        if self.err is not None:
            fields["err"] = dict(self.err)
        return fields

    def message(self) -> str:
        """The record's ``msg``: its outcome, for a human reading the text log."""
        return (
            f"handled: {self.status} {self.method} {self.url}"
            f" ({self.route or 'no route'}, {self.latency} ms)"
        )

    def bunyan_line(self, prefix: str, time: str) -> str:
        """The record's whole bunyan line (no newline), as ``BunyanFormatter`` writes a
        ``LogRecord`` of ``fields()`` and ``message()``: ``prefix`` (the formatter's, up to
        and with the ``level`` member), the fields, ``msg``, ``time``, ``v``.

        One f-string, each text escaped by the standard library's own (compiled) escaper,
        so the bytes are ``json.dumps``'s (compact, ASCII): the record is written for every
        request, and this costs less than building ``fields()`` for an encoder (1.2 us a
        line against 1.6 us for the fields alone with orjson; ``bench/README.md``). The
        fields typed ``str`` and ``int`` are written as such (integers without a format
        spec, which cost a fifth); the others may be ``None``, checked inline.
        """
        quote = encode_basestring_ascii
        (
            req_id, route, method, url, version, address, port, status, latency, account,
            bytes_in, bytes_out, err,
        ) = self  # fmt: skip
        # ``msg`` repeats the method, URL and route: escaped once (JSON escapes each
        # character on its own, so the pieces' escapes are the whole's).
        method_text, url_text = quote(method), quote(url)
        route_text = "null" if route is None else quote(route)
        tail = ""
        if err is not None:
            name, message = _text(err.get("name")), _text(err.get("message"))
            tail = f',"err":{{"name":{name},"message":{message}}}'
        return (
            f'{prefix}"audit":true,"req_id":{"null" if req_id is None else quote(req_id)},'
            f'"route":{route_text},"req":{{"method":{method_text},"url":{url_text},'
            f'"httpVersion":{quote(version)},'
            f'"remoteAddress":{"null" if address is None else quote(address)},'
            f'"remotePort":{"null" if port is None else port}}},'
            f'"res":{{"statusCode":{status}}},"latency":{latency},'
            f'"account":{"null" if account is None else quote(account)},'
            f'"bytesIn":{bytes_in},"bytesOut":{bytes_out}{tail},'
            f'"msg":"handled: {status} {method_text[1:-1]} {url_text[1:-1]}'
            f' ({"no route" if route is None else route_text[1:-1]}, {latency} ms)",'
            f'"time":"{time}","v":0}}'
        )
