"""The Content-MD5 of a body: what storage protocols send and verify."""

from __future__ import annotations

import base64
import hashlib


def content_md5(data: bytes | bytearray | memoryview) -> str:
    """The base64 MD5 digest of ``data``, as the ``Content-MD5`` header carries it."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # MD5 is the wire format
