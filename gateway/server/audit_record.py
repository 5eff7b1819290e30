"""The audit record's fields, and their JSON written directly.

One audit record is written per request, so its JSON is cheap: orjson (compiled) writes the
fields, and its output is used when it is exactly what
``json.dumps(fields(), separators=(",", ":"))`` would write (ASCII-only, as bunyan records are
here); otherwise an f-string with the standard library's own string escaper writes it.
``fields`` is the same record as a dict, for the handlers that take a ``LogRecord``; tests
keep the three equal.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

import orjson

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

    def json_members(self) -> str:
        """``fields()`` as JSON, without the enclosing braces (bunyan's fields go around it).

        orjson (compiled) writes it in half the time, and its output is the standard
        library's whenever it is ASCII without DEL (which ``json`` escapes and orjson does
        not); anything else (non-ASCII text, a lone surrogate) is escaped as ``json`` does.
        """
        try:
            encoded = orjson.dumps(self.fields())
        except orjson.JSONEncodeError:
            return self.escaped_members()
        if encoded.isascii() and b"\x7f" not in encoded:
            return encoded[1:-1].decode("ascii")
        return self.escaped_members()

    def escaped_members(self) -> str:
        """``json_members`` written with the standard library's ASCII escaper.

        The fields typed ``str`` and ``int`` are written as such; the others may be ``None``.
        (The ``None`` checks are inline: a function call per field was a third of the cost.)
        """
        quote = encode_basestring_ascii
        req_id, route, address, port, account, err = (
            self.req_id,
            self.route,
            self.remote_address,
            self.remote_port,
            self.account,
            self.err,
        )
        tail = ""
        if err is not None:
            name, message = _text(err.get("name")), _text(err.get("message"))
            tail = f',"err":{{"name":{name},"message":{message}}}'
        return (
            f'"audit":true,"req_id":{"null" if req_id is None else quote(req_id)},'
            f'"route":{"null" if route is None else _text(route)},'
            f'"req":{{"method":{quote(self.method)},"url":{quote(self.url)},'
            f'"httpVersion":{quote(self.http_version)},'
            f'"remoteAddress":{"null" if address is None else quote(address)},'
            f'"remotePort":{"null" if port is None else int(port)}}},'
            f'"res":{{"statusCode":{self.status:d}}},"latency":{self.latency:d},'
            f'"account":{"null" if account is None else quote(account)},'
            f'"bytesIn":{self.bytes_in:d},"bytesOut":{self.bytes_out:d}{tail}'
        )
