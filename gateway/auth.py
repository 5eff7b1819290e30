"""HTTP Signature verification for CloudAPI requests. STUB: owned by the auth work."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts import Account


async def authenticate(request: web.Request) -> Account:
    """Verify the request's signature and return the caller, or raise a ``GatewayError``.

    Also resolves ``/my`` and refuses a ``:login`` in the path that is not the caller's.
    """
    raise NotImplementedError
