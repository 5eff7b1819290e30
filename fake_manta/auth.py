"""HTTP Signature and pre-signed URL verification for the fake Manta. STUB: owned by the auth work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from fake_manta.accounts import AccountRegistry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Where the middleware leaves the caller's login (``None`` for an anonymous public read).
CALLER_KEY = "fake_manta.caller"


def auth_middleware(registry: AccountRegistry, *, no_auth: bool = False) -> Callable[..., object]:
    """Verify each request and store the caller's login in ``request[CALLER_KEY]``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CALLER_KEY] = None
        return await handler(request)

    return middleware
