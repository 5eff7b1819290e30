"""What S3 says about an object, as an ``ObjectInfo``."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from gateway.storage import ObjectInfo

#: User metadata carrying the whole object's base64 MD5 (a multipart ETag is not an MD5).
MD5_METADATA = "content-md5"


def etag_md5(etag: str | None) -> str | None:
    """A single-PUT ETag is the hex MD5; turn it into Content-MD5's base64 form."""
    if not etag:
        return None
    value = etag.strip('"')
    if len(value) != 32:
        return None
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return None


def written(path: str, size: int, md5: str, etag: str | None, content_type: str) -> ObjectInfo:
    """What a completed PUT (single or multipart) stored at ``path``."""
    return ObjectInfo(
        path=path,
        type="object",
        size=size,
        content_md5=md5,
        etag=etag.strip('"') if etag else None,
        content_type=content_type,
    )


def from_head(path: str, head: Mapping[str, Any]) -> ObjectInfo:
    """The object a ``HeadObject`` answer describes."""
    metadata = head.get("Metadata") or {}
    etag = head.get("ETag")
    headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return ObjectInfo(
        path=path,
        type="object",
        size=head.get("ContentLength"),
        content_md5=metadata.get(MD5_METADATA) or etag_md5(etag),
        etag=etag.strip('"') if etag else None,
        content_type=head.get("ContentType"),
        headers=dict(headers),
    )
