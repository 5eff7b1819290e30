"""Reading a small request body as restify 4's ``bodyReader`` does: gzip, Content-MD5, a cap.

The app switches aiohttp's own decompression off (``create_app``), so the body arrives as it
was sent: ``Content-MD5`` is checked over those bytes and the size cap counts them, as in
restify (``lib/plugins/body_reader.js``). Where restify falls over, this answers a 4xx: a body
that is not gzip (restify's unhandled zlib error crashes the process), an encoding it would
pass through as garbage, and a gzip body that inflates past the cap (restify has no bound).
"""

from __future__ import annotations

import base64
import hashlib
import zlib

from aiohttp import web

from gateway.errors import BadRequest, InvalidContent, RequestTooLarge, UnsupportedMediaType
from gateway.server.request_body import body_chunks

_CHUNK = 64 * 1024
#: ``Content-Encoding`` values decoded here; ``identity`` (or none) passes bytes through.
GZIP = frozenset({"gzip", "x-gzip"})
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class BadDigest(BadRequest):
    """restify's answer to a body whose MD5 is not the ``Content-MD5`` sent with it."""

    code = "BadDigest"


def _shown(value: str, limit: int = 64) -> str:
    """Client text for a message: printable, and short (an MD5 in base64 is 24 characters)."""
    text = "".join(c if c.isprintable() else "?" for c in value)
    return text if len(text) <= limit else text[:limit] + "..."


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"Request body size exceeds {limit} bytes")


class _Gunzip:
    """Inflates gzip members one after another, never more than ``limit`` bytes in all."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._size = 0
        self._pending = False  # a member is started and not finished

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            self._pending = True
            try:
                piece = self._inflater.decompress(data, self._limit + 1 - self._size)
            except zlib.error:
                raise InvalidContent("Content-Encoding is gzip but the body is not gzip") from None
            self._size += len(piece)
            if self._size > self._limit:
                raise _too_large(self._limit)
            out.append(piece)
            if self._inflater.eof:  # a member ends; concatenated members follow (RFC 1952)
                data = self._inflater.unused_data
                self._inflater = zlib.decompressobj(_GZIP_WBITS)
                self._pending = False
            else:
                data = self._inflater.unconsumed_tail
        return b"".join(out)

    def finish(self) -> None:
        if self._pending:
            raise InvalidContent("Content-Encoding is gzip but the gzip body is truncated")


def content_encoding(request: web.BaseRequest) -> str:
    """The body's one coding, lower-cased (``""`` for none or ``identity``); 415 for others."""
    codings = [
        part.strip().lower()
        for value in request.headers.getall("Content-Encoding", [])
        for part in value.split(",")
        if part.strip() and part.strip().lower() != "identity"
    ]
    if not codings:
        return ""
    if len(codings) == 1 and codings[0] in GZIP:
        return codings[0]
    raise UnsupportedMediaType(
        f"Content-Encoding {_shown(', '.join(codings))} is not supported (only gzip)"
    )


async def read_body(
    request: web.BaseRequest, limit: int, *, idle_timeout: float | None = None
) -> bytes:
    """The decoded body: at most ``limit`` bytes sent and ``limit`` bytes decoded (else 413),
    gzip inflated (400 if it is not gzip), ``Content-MD5`` checked over the bytes as sent
    (400 BadDigest, with restify's message). An empty body is never checked, as in restify.
    A body that stalls for ``idle_timeout`` seconds is a 408 (``gateway.server.request_body``)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    gunzip = _Gunzip(limit) if content_encoding(request) else None
    sent_md5 = request.headers.get("Content-MD5")
    digest = hashlib.md5(usedforsecurity=False) if sent_md5 is not None else None
    chunks: list[bytes] = []
    received = 0
    async for chunk in body_chunks(request, _CHUNK, idle_timeout):
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        if digest is not None:
            digest.update(chunk)
        chunks.append(gunzip.feed(chunk) if gunzip is not None else chunk)
    if gunzip is not None and received:
        gunzip.finish()
    body = b"".join(chunks)
    if body and digest is not None and sent_md5 is not None:
        computed = base64.b64encode(digest.digest()).decode()
        if sent_md5 != computed:
            raise BadDigest(f"Content-MD5 '{_shown(sent_md5)}' didn't match '{computed}'")
    return body
