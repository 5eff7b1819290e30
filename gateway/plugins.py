"""Deprecated: ``gateway.plugins`` is now ``gateway.server.plugin_manager`` (removed in 0.3)."""

from __future__ import annotations

from typing import Any

from gateway._deprecation import forward


def __getattr__(name: str) -> Any:
    from gateway.server import plugin_manager

    return forward(__name__, plugin_manager, name)
