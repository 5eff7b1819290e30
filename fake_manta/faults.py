"""Fault injection for the fake Manta. STUB: owned by the auth/faults work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FaultInjector:
    """Rules that make the next N matching requests fail, stall or lose their connection."""

    def reset(self) -> None:
        """Forget every rule."""


def fault_middleware(injector: FaultInjector) -> Callable[..., object]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    return middleware
