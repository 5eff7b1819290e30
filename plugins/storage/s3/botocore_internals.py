"""Every use the S3 target makes of aiobotocore's and aiohttp's internals, in one place.

Relied on beyond the libraries' documented API (aiobotocore ``>=2.9``, aiohttp ``>=3.14,<4``):

- ``aiobotocore.httpsession.AIOHTTPSession._get_session(proxy_url)``, the private method that
  returns the aiohttp ``ClientSession`` a request goes out on, overridden by ``NoResendSession``
  (installed through ``AioConfig(http_session_cls=...)``, which is public);
- aiohttp's private ``ClientSession._retry_connection`` flag, turned off there so that aiohttp
  does not silently resend an idempotent request once on a dropped connection.

Both are pinned by ``test_a_lasting_failure_is_tried_exactly_retries_plus_one_times[*-cut]``
in ``tests/plugins/test_s3.py``, which counts the attempts that reach the server: an aiohttp or
aiobotocore upgrade that breaks either doubles them and fails it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession


class NoResendSession(AIOHTTPSession):
    """aiobotocore's HTTP session without aiohttp's silent resend.

    aiohttp resends an idempotent request (PUT, GET, HEAD, DELETE) once when the server
    drops the connection; with botocore's retries off that still doubled the attempts of the
    target's own retry loop on cut connections: only that loop retries.
    """

    async def _get_session(self, proxy_url: Any) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = await super()._get_session(proxy_url)
        session._retry_connection = False
        return session
