"""Deprecated: ``gateway.images`` is now ``gateway.server.image_view`` (removed in 0.3)."""

from __future__ import annotations

from typing import Any

from gateway._deprecation import forward


def __getattr__(name: str) -> Any:
    from gateway.server import image_view

    return forward(__name__, image_view, name)
