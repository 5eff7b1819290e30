"""The CloneImage action (``POST /:login/images/:id?action=clone``).

Registered through the ``cloudapi_gateway`` entry point ``clone``, like a third-party plugin.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.actions import ImageAction
from plugins.actions.clone.action import CloneAction, ImageNotShared

__all__ = ["CloneAction", "ImageNotShared", "gateway_register_image_actions"]


@hookimpl
def gateway_register_image_actions() -> list[ImageAction]:
    """Provide ``action=clone``."""
    return [CloneAction()]
