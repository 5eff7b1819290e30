"""The id of a request: the client's own when it is safe to echo, else a fresh uuid.

restify (CloudAPI's server) takes the ``request-id`` header, else ``x-request-id``, else a new
uuid, and echoes whatever the client sent. The gateway chooses the same header but echoes it
only when it is a short token (``SAFE_REQUEST_ID``): the id is written back in two response
headers, into every log record of the request and into the ``x-request-id`` of each storage
request, so it must be harmless in all of them. Anything else is replaced by a uuid.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

__all__ = ["CLIENT_HEADERS", "SAFE_REQUEST_ID", "choose_request_id", "new_request_id"]

#: The headers a client names its request by, in restify's order of preference.
CLIENT_HEADERS = ("request-id", "x-request-id")
#: What is echoed: 1 to 128 letters, digits, ``.``, ``_``, ``:`` or ``-`` (uuids, ULIDs,
#: ``host:counter``...). No spaces, quotes, non-ASCII or separators a log reader could trip on.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    """A fresh id (a uuid, as restify makes)."""
    return str(uuid.uuid4())


def choose_request_id(headers: Mapping[str, str]) -> str:
    """The id to answer, log and send on: the first of ``CLIENT_HEADERS`` the client sent
    (non-empty, as restify picks it), if it is safe to echo; otherwise a fresh one.

    ``headers`` is looked up case-insensitively when it is aiohttp's ``CIMultiDictProxy``;
    a plain mapping must use lower-case names.
    """
    for name in CLIENT_HEADERS:
        given = headers.get(name)
        if given:
            return given if SAFE_REQUEST_ID.fullmatch(given) else new_request_id()
    return new_request_id()
