"""The UpdateImage action (``POST /:login/images/:id?action=update``).

Registered through the ``cloudapi_gateway`` entry point ``update``, like a third-party plugin.
It needs an ``EditableCatalog``; with any other catalog it answers ``501 NotImplemented``.
"""

from __future__ import annotations

from gateway import hookimpl
from gateway.actions import ImageAction
from plugins.actions.update.action import UpdateAction

__all__ = ["UpdateAction", "gateway_register_image_actions"]


@hookimpl
def gateway_register_image_actions() -> list[ImageAction]:
    """Provide ``action=update``."""
    return [UpdateAction()]
