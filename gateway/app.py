"""Deprecated: ``gateway.app`` is now ``gateway.server.app`` (removed in 0.3)."""

from __future__ import annotations

from typing import Any

from gateway._deprecation import forward


def __getattr__(name: str) -> Any:
    from gateway.server import app

    return forward(__name__, app, name)
