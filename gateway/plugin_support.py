"""Deprecated: ``gateway.plugin_support`` is now ``gateway.plugin_kit`` (removed in 0.3)."""

from __future__ import annotations

from typing import Any

from gateway._deprecation import forward


def __getattr__(name: str) -> Any:
    from gateway import plugin_kit

    return forward(__name__, plugin_kit, name)
