"""Directories: mkdir, NDJSON listings with muskie's paging rules, and the /:login root."""

from __future__ import annotations

import email.utils
import json
from datetime import datetime

from aiohttp import web

from fake_manta.errors import (
    InvalidArgumentError,
    InvalidParameter,
    OperationNotAllowedOnRootDirectory,
    QueryParameterForbidden,
)
from fake_manta.handlers.common import (
    DIR_TYPE,
    directory_headers,
    no_content,
    store_of,
    stored_headers,
)
from fake_manta.handlers.cors import origin_echo
from fake_manta.handlers.target import Target
from fake_manta.middlewares import is_operator, send_continue
from fake_manta.models import Entry, ListQuery
from fake_manta.models.entry import EntryType, http_date, iso_ms
from fake_manta.models.store import ROOT_MTIME, ROOT_NAMES


def _line(row: dict[str, object]) -> bytes:
    return (json.dumps(row, separators=(",", ":")) + "\n").encode()


async def get_account_root(request: web.Request, target: Target) -> web.StreamResponse:
    """``GET /:login``: the storage trees, fixed mtime; ``marker`` drops names <= marker."""
    marker = request.query.get("marker")
    names = [n for n in ROOT_NAMES if not marker or n > marker]
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": DIR_TYPE, "Result-Set-Size": str(len(names)),
        "Last-Modified": http_date(ROOT_MTIME)})
    if request.method == "HEAD":
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b"".join(
        _line({"name": n, "type": "directory", "mtime": iso_ms(ROOT_MTIME)}) for n in names))
    await resp.write_eof()
    return resp


async def root_not_allowed(request: web.Request, target: Target) -> web.StreamResponse:
    raise OperationNotAllowedOnRootDirectory(f"{request.method} is not allowed on {target.path}")


def _flag(request: web.Request, *names: str) -> bool:
    return any(request.query.get(n) == "true" for n in names)


def _parse_date(value: str) -> int | None:
    """``Date.parse``-ish: ISO 8601 or RFC 1123 -> ms."""
    try:
        iso = value.replace("Z", "+00:00")
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        pass
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError, IndexError):
        return None


def parse_list_query(request: web.Request) -> ListQuery:
    """limit 1..1024 (default 256), inclusive marker, sort=mtime, sort_order=reverse, dir/obj."""
    q = request.query
    raw_limit = q.get("limit")
    limit = 256
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1024:
            raise InvalidArgumentError(
                f"limit={raw_limit} is invalid: must be between [1, 1024]")
    sort = q.get("sort", "name")
    if sort == "none":
        if not is_operator(request):
            raise QueryParameterForbidden("sort=none is only allowed for operators")
        sort = "name"
    reverse = q.get("sort_order") == "reverse"
    marker = q.get("marker") or None
    dirs = _flag(request, "dir", "directory")
    objs = _flag(request, "obj", "object")
    kind: EntryType | None = None
    if dirs != objs:
        kind = "directory" if dirs else "object"
    if sort == "mtime":
        marker_mtime = None
        if marker is not None:
            marker_mtime = _parse_date(marker)
            if marker_mtime is None:
                raise InvalidParameter(f"marker {marker!r} is not a valid date")
        return ListQuery(limit=limit, sort="mtime", descending=not reverse,
                         marker_mtime=marker_mtime, kind=kind)
    return ListQuery(limit=limit, sort="name", descending=reverse, marker_name=marker,
                     kind=kind)


async def list_directory(request: web.Request, entry: Entry) -> web.StreamResponse:
    """Conditional headers are ignored here, as in muskie (they sit in the object chain only)."""
    query = parse_list_query(request)
    store = store_of(request)
    if request.method == "HEAD":
        total = await store.backend.count_children(entry.path)
        resp = web.StreamResponse(status=200, headers=directory_headers(
            entry, total, request.headers.get("Origin"), request.method))
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    total, rows = await store.list(entry.path, query)
    resp = web.StreamResponse(status=200, headers=directory_headers(
        entry, total, request.headers.get("Origin"), request.method))
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if rows:
        await resp.write(b"".join(_line(e.listing_row()) for e in rows))
    await resp.write_eof()
    return resp


async def put_directory(request: web.Request, target: Target) -> web.StreamResponse:
    """mkdir: idempotent; replaces an object; on a root it only updates headers."""
    await send_continue(request)
    headers = stored_headers(request.headers, public=False)
    entry = await store_of(request).put_directory(target.path, target.login, headers)
    return no_content({"Last-Modified": http_date(entry.mtime), **origin_echo(request)})
