"""Objects: streaming PUT, GET/HEAD with ranges and conditionals, DELETE, PUT ?metadata=true."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import BinaryIO

from aiohttp import web

from fake_manta.errors import (
    InvalidUpdate,
    NotAcceptable,
    NotImplementedManta,
    OperationNotAllowedOnDirectory,
    OperationNotAllowedOnRootDirectory,
    RangeNotSatisfiable,
    ResourceNotFound,
)
from fake_manta.faults import RESPONSE_CUT_KEY
from fake_manta.handlers import cors, directories, links
from fake_manta.handlers.common import (
    DIR_TYPE,
    body_chunks,
    check_conditions,
    check_declared_length,
    clean_content_type,
    is_put_directory,
    is_put_link,
    md5_to_check,
    media_type,
    no_content,
    object_headers,
    parse_content_length,
    parse_durability,
    store_of,
    stored_headers,
    upload_limit,
)
from fake_manta.handlers.cors import origin_echo
from fake_manta.handlers.target import Target
from fake_manta.middlewares import send_continue
from fake_manta.models import Entry, ObjectMeta, ingest
from fake_manta.models.entry import http_date
from fake_manta.models.store import is_root

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


# -- GET / HEAD ---------------------------------------------------------------------------------
async def get_path(request: web.Request, target: Target) -> web.StreamResponse:
    """GET/HEAD of a storage path: an object, or a directory listing."""
    entry = await store_of(request).lookup(target.path)
    if entry is None:
        raise ResourceNotFound(f"{target.path} was not found")
    if entry.is_dir:
        return await directories.list_directory(request, entry)
    return await get_object(request, entry)


def _accepts(accept: str | None, content_type: str) -> bool:
    if not accept:
        return True
    ctype = media_type(content_type).split(";")[0]
    major = ctype.split("/")[0]
    for item in accept.split(","):
        rng = media_type(item).split(";")[0]
        if rng in ("*/*", "*", ctype, f"{major}/*"):
            return True
    return False


def parse_range(value: str, size: int) -> tuple[int, int]:
    """A single ``bytes=`` range -> [start, end) ; 416 / 501 as muskie answers."""
    if "," in value:
        raise NotImplementedManta("multi-range requests not supported")
    unsatisfiable = RangeNotSatisfiable(
        f"{value} is not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    m = _RANGE_RE.match(value)
    if not m or (not m.group(1) and not m.group(2)):
        raise unsatisfiable
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(size - suffix, 0), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or (last and int(last) < start):
        raise unsatisfiable
    return start, end


async def get_object(request: web.Request, entry: Entry) -> web.StreamResponse:
    if not _accepts(request.headers.get("Accept"), entry.content_type):
        raise NotAcceptable(f"{entry.path} accepts {entry.content_type}")
    headers = object_headers(entry, request.headers.get("Origin"), request.method)
    if check_conditions(request.headers, entry, read=True):
        return web.Response(status=304, headers={"Etag": headers["Etag"],
                                                 "Last-Modified": headers["Last-Modified"]})
    status, start, end = 200, 0, entry.size
    range_header = request.headers.get("Range")
    if range_header is not None:
        start, end = parse_range(range_header, entry.size)
        status = 206
        del headers["Content-MD5"]
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    else:
        headers["Accept-Ranges"] = "bytes"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start
    if request.method == "HEAD" or end == start or entry.blob is None:
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    backend = store_of(request).backend
    if not request.get(RESPONSE_CUT_KEY) and request.transport is not None:
        try:
            blob_file = await backend.open_blob_file(entry.blob)
        except (KeyError, FileNotFoundError) as exc:
            raise ResourceNotFound(f"{entry.path} was not found") from exc
        if blob_file is not None:
            return await _send_file(request, resp, blob_file, start, end)
    chunks = backend.read_blob(entry.blob, start, end)
    first = await _first_chunk(chunks, entry)
    await resp.prepare(request)
    if first:
        await resp.write(first)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def _send_file(request: web.Request, resp: web.StreamResponse, blob_file: BinaryIO,
                     start: int, end: int) -> web.StreamResponse:
    """Bytes ``[start, end)`` of an open blob file with ``sendfile(2)`` (no copy through Python).

    Only when no injected cut watches the response (it must count bytes through ``write``).
    """
    loop = asyncio.get_running_loop()
    try:
        await resp.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        await loop.sendfile(transport, blob_file, start, end - start)
    finally:
        await loop.run_in_executor(None, blob_file.close)
    await resp.write_eof()
    return resp


async def _first_chunk(chunks: AsyncIterator[bytes], entry: Entry) -> bytes:
    """Pull the first chunk before sending headers, so a concurrent delete is still a 404."""
    try:
        return await anext(chunks, b"")
    except (KeyError, FileNotFoundError) as exc:
        raise ResourceNotFound(f"{entry.path} was not found") from exc


# -- PUT ----------------------------------------------------------------------------------------
async def put_path(request: web.Request, target: Target) -> web.StreamResponse:
    """PUT: chattr, directory, link or object, chosen as muskie's routes do."""
    content_type = request.headers.get("Content-Type")
    if request.query.get("metadata") == "true":
        return await put_metadata(request, target)
    if is_put_directory(content_type):
        return await directories.put_directory(request, target)
    if is_put_link(content_type):
        return await links.put_link(request, target)
    return await put_object(request, target)


def _invalid_update_header(request: web.Request, *, allow_empty: bool = False) -> str | None:
    for name in ("content-length", "content-md5", "durability-level", "x-durability-level"):
        if name in request.headers:
            if allow_empty and name == "content-length" and request.headers[name].strip() == "0":
                continue  # an explicitly empty body does not update the length
            return name
    return None


async def put_object(request: web.Request, target: Target) -> web.StreamResponse:
    store = store_of(request)
    path = target.path
    content_type = request.headers.get("Content-Type")
    if is_root(path) and media_type(content_type) not in ("", media_type(DIR_TYPE)):
        raise OperationNotAllowedOnRootDirectory(f"PUT is not allowed on {path}")
    await store.check_parent(path)
    existing = await store.lookup(path)
    check_conditions(request.headers, existing, read=False)
    expected_md5 = md5_to_check(request.headers)
    durability = parse_durability(request.headers)
    limit = upload_limit(request)
    parse_content_length(request.headers)
    if existing is not None and existing.is_dir:
        header = _invalid_update_header(request)
        if header is not None:
            raise InvalidUpdate(f'overwrite of "{header}" forbidden on a directory')
        raise OperationNotAllowedOnDirectory(f"{path} is a directory: PUT is not allowed")
    meta = ObjectMeta(
        content_type=clean_content_type(content_type),
        durability=durability if durability is not None else 2,
        headers=stored_headers(request.headers, public=_is_public(path)),
    )
    check_declared_length(request, limit)
    data = await ingest(store.backend, body_chunks(request), limit=limit,
                        expected_md5=expected_md5,
                        size_hint=parse_content_length(request.headers))

    def precondition(current: Entry | None) -> None:
        check_conditions(request.headers, current, read=False)

    entry = await store.put_object(path, target.login, data, meta, precondition)
    return no_content({"Etag": entry.etag or "", "Last-Modified": http_date(entry.mtime),
                       "Computed-MD5": entry.content_md5, **origin_echo(request)})


def _is_public(path: str) -> bool:
    segs = [s for s in path.split("/") if s]
    return len(segs) >= 2 and segs[1] == "public"


async def put_metadata(request: web.Request, target: Target) -> web.StreamResponse:
    """``PUT ?metadata=true`` (mchattr): replace stored headers; bytes and etag stay."""
    header = _invalid_update_header(request, allow_empty=True)
    if header is not None:
        raise InvalidUpdate(f'overwrite of "{header}" forbidden')
    await send_continue(request)
    content_type = request.headers.get("Content-Type")
    entry = await store_of(request).update_metadata(
        target.path,
        stored_headers(request.headers, public=_is_public(target.path)),
        clean_content_type(content_type) if content_type else None,
    )
    headers = {"Last-Modified": http_date(entry.mtime)}
    if entry.etag:
        headers["Etag"] = entry.etag
    return no_content(headers)


# -- DELETE / OPTIONS ---------------------------------------------------------------------------
async def delete_path(request: web.Request, target: Target) -> web.StreamResponse:
    def precondition(current: Entry | None) -> None:
        check_conditions(request.headers, current, read=False)

    entry = await store_of(request).delete(target.path, precondition)
    headers = {"Last-Modified": http_date(entry.mtime)}
    if entry.etag:
        headers["Etag"] = entry.etag
    return no_content(headers)


async def options_path(request: web.Request, target: Target) -> web.StreamResponse:
    """CORS preflight, granted from the stored metadata (``handlers/cors.py``)."""
    return await cors.preflight(request, target, store_of(request))
