"""SnapLinks: Manta v1 semantics (a new object sharing the source's bytes and etag) or v2 (403)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes, urlsplit

from aiohttp import web

from fake_manta.errors import (
    InvalidLink,
    LocationRequired,
    OperationNotAllowedOnRootDirectory,
    SnaplinksDisabledError,
)
from fake_manta.handlers.common import check_conditions, config_of, no_content, store_of
from fake_manta.handlers.target import Target
from fake_manta.middlewares import authorize, send_continue
from fake_manta.models import Entry
from fake_manta.models.entry import http_date
from fake_manta.models.store import is_root

_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")


def parse_location(value: str) -> str:
    """``url.parse(loc).pathname``, sanitised and decoded per segment; 400 InvalidLink if not."""
    try:
        raw = urlsplit(value).path
        segs = []
        for seg in raw.split("/"):
            if not seg:
                continue
            if _BAD_ESCAPE.search(seg):
                raise ValueError(seg)
            segs.append(unquote_to_bytes(seg).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidLink(f"{value} is an invalid link") from exc
    path = "/" + "/".join(segs)
    if len([s for s in path.split("/") if s]) < 2:
        raise InvalidLink(f"{value} is an invalid link")
    return path


async def put_link(request: web.Request, target: Target) -> web.StreamResponse:
    if config_of(request).snaplinks == "v2":
        raise SnaplinksDisabledError("Manta v2 does not support SnapLinks.")
    if is_root(target.path):
        raise OperationNotAllowedOnRootDirectory(f"PUT is not allowed on {target.path}")
    location = request.headers.get("Location")
    if not location:
        raise LocationRequired("Location header is required")
    source_path = parse_location(location)
    await send_continue(request)

    def may_read(source: Entry) -> None:
        authorize(request, source.path.split("/")[1], source.path, read=True)

    def precondition(current: Entry | None) -> None:
        check_conditions(request.headers, current, read=False)

    entry, source = await store_of(request).put_link(
        target.path, target.login, source_path, precondition, may_read=may_read)
    return no_content({"Etag": entry.etag or "", "Last-Modified": http_date(source.mtime)})
