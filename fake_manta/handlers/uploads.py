"""Multipart upload endpoints (manta-protocol.md §5)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from fake_manta.errors import MantaError, MultipartUploadInvalidArgument
from fake_manta.handlers.common import (
    MAX_DURABILITY,
    body_chunks,
    check_declared_length,
    clean_content_type,
    md5_to_check,
    no_content,
    parse_content_length,
    parse_content_md5,
    read_small_json,
    store_of,
    stored_headers,
    upload_limit,
)
from fake_manta.handlers.target import Target
from fake_manta.middlewares import authorize, json_response
from fake_manta.models import ObjectMeta, ingest
from fake_manta.models.entry import http_date
from fake_manta.models.store import login_of

CREATE_BODY_MAX = 100 * 1024
COMMIT_BODY_MAX = 500 * 1024
_PROHIBITED = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


def _invalid(message: str) -> MultipartUploadInvalidArgument:
    return MultipartUploadInvalidArgument(f"cannot create upload: {message}")


def _number(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _invalid(f"{name} must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _invalid(f"{name} must be a number")


def validate_create(body: Any) -> tuple[str, dict[str, Any], int]:
    """(objectPath, lower-cased headers, copies) or 409 MultipartUploadInvalidArgument."""
    if not isinstance(body, dict):
        raise _invalid("body must be an object")
    object_path = body.get("objectPath")
    if not isinstance(object_path, str) or not object_path.startswith("/"):
        raise _invalid("objectPath is required and must be an absolute path")
    segs = [s for s in object_path.split("/") if s]
    if any(seg in (".", "..") for seg in segs):
        raise _invalid(f"Invalid objectPath{object_path}")  # sic: muskie's message
    if len(segs) < 3 or segs[1] not in ("stor", "public", "reports"):
        raise _invalid(f"{object_path} is not a valid object path")
    raw_headers = body.get("headers", {})
    if not isinstance(raw_headers, dict):
        raise _invalid("headers must be an object")
    headers: dict[str, Any] = {}
    for key, value in raw_headers.items():
        k = str(key).lower()
        if k in _PROHIBITED:
            raise _invalid(f"header {k} is not allowed")
        if k == "content-length":
            n = _number(value, k)
            if n < 0:
                raise _invalid("content-length must be >= 0")
            headers[k] = n
        elif k in ("durability-level", "x-durability-level"):
            n = _number(value, k)
            if not 1 <= n <= MAX_DURABILITY:
                raise _invalid(f"{k} must be between 1 and {MAX_DURABILITY}")
            headers[k] = n
        elif isinstance(value, str):
            headers[k] = value
        else:
            raise _invalid(f"header {k} must be a string")
    if "content-md5" in headers:
        try:
            parse_content_md5({"content-md5": headers["content-md5"]})
        except Exception as exc:
            raise _invalid("content-md5 is invalid") from exc
    if "content-type" in headers:
        headers["content-type"] = clean_content_type(headers["content-type"])
    copies = int(headers.get("durability-level", headers.get("x-durability-level", 2)))
    return "/" + "/".join(segs), headers, copies


async def create_upload(request: web.Request, target: Target) -> web.StreamResponse:
    body = await read_small_json(request, CREATE_BODY_MAX, _invalid)
    object_path, headers, copies = validate_create(body)
    authorize(request, login_of(object_path), object_path, read=False)
    public = object_path.split("/")[2] == "public"
    try:
        kept = stored_headers({k: v for k, v in headers.items() if isinstance(v, str)},
                              public=public)
    except MantaError as exc:
        raise _invalid(exc.message) from exc
    entry = await store_of(request).create_upload(
        target.login, target.login, object_path, headers, copies, kept)
    assert entry.upload is not None
    payload = {"id": entry.upload["id"], "partsDirectory": entry.path}
    return json_response(201, json.dumps(payload, separators=(",", ":")).encode())


async def redirect(request: web.Request, target: Target) -> web.StreamResponse:
    """``/:login/uploads/<id>[/<part>]`` -> 301 to the prefixed parts directory."""
    assert target.upload_id is not None
    entry = await store_of(request).get_upload(target.login, target.upload_id)
    location = entry.path + (f"/{target.part}" if target.part else "")
    return web.Response(status=301, headers={"Location": location})


async def get_state(request: web.Request, target: Target) -> web.StreamResponse:
    assert target.upload_id is not None
    store = store_of(request)
    entry = await store.get_upload(target.login, target.upload_id)
    body = json.dumps(store.upload_state(entry), separators=(",", ":")).encode()
    return json_response(200, body)


async def put_part(request: web.Request, target: Target) -> web.StreamResponse:
    assert target.upload_id is not None and target.part is not None
    store = store_of(request)
    upload = await store.get_upload(target.login, target.upload_id)
    number = store.check_part_number(upload, target.part)
    store.check_upload_open(upload)
    for name in ("durability-level", "x-durability-level"):
        if name in request.headers:
            raise MultipartUploadInvalidArgument(
                f"upload {target.upload_id}: {name} is not allowed on a part upload")
    expected_md5 = md5_to_check(request.headers)
    limit = upload_limit(request)
    check_declared_length(request, limit)
    data = await ingest(store.backend, body_chunks(request), limit=limit,
                        expected_md5=expected_md5,
                        size_hint=parse_content_length(request.headers),
                        read_once=True)  # read back only by the commit's digest
    meta = ObjectMeta(content_type=clean_content_type(request.headers.get("Content-Type")),
                      durability=int((upload.upload or {}).get("numCopies", 2)))
    entry = await store.put_part(upload, number, target.login, data, meta)
    return no_content({"Etag": entry.etag or "", "Last-Modified": http_date(entry.mtime),
                       "Computed-MD5": entry.content_md5})


async def commit_upload(request: web.Request, target: Target) -> web.StreamResponse:
    assert target.upload_id is not None
    store = store_of(request)
    upload = await store.get_upload(target.login, target.upload_id)
    body = await read_small_json(request, COMMIT_BODY_MAX, MultipartUploadInvalidArgument)
    parts = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise MultipartUploadInvalidArgument(
            f"upload {target.upload_id}: parts must be an array of etags")
    entry = await store.commit_upload(upload, parts)
    return web.Response(status=201, headers={"Location": entry.path,
                                             "Computed-MD5": entry.content_md5})


async def abort_upload(request: web.Request, target: Target) -> web.StreamResponse:
    assert target.upload_id is not None
    store = store_of(request)
    upload = await store.get_upload(target.login, target.upload_id)
    await store.abort_upload(upload)
    return no_content({"Content-Length": "0"})
