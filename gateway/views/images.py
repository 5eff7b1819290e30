"""ListImages, GetImage, HEAD and DeleteImage. STUB: owned by the catalog work."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register ``GET|HEAD /{login}/images``, ``GET|HEAD|DELETE /{login}/images/{id}``."""
