"""The ExportImage action (``POST /:login/images/:id?action=export&manta_path=...``).

Registered through the ``cloudapi_gateway`` entry point ``export``, like a third-party plugin.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.actions import ImageAction
from plugins.actions.export.action import ExportAction

__all__ = ["ExportAction", "gateway_register_image_actions"]


@hookimpl
def gateway_register_image_actions() -> list[ImageAction]:
    """Provide ``action=export``."""
    return [ExportAction()]
