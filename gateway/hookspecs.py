"""Every hook a cloudapi-gateway plugin can implement.

Hooks are synchronous and cheap: they are called once at start and return objects whose
methods are async. Implement them with ``from gateway import hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from gateway import PROJECT_NAME

if TYPE_CHECKING:
    from gateway.actions import ImageAction
    from gateway.catalog import ImageCatalogFactory
    from gateway.storage import StorageTargetFactory

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

__all__ = [
    "gateway_register_image_actions",
    "gateway_register_image_catalogs",
    "gateway_register_storage_targets",
    "hookspec",
]


# --- image actions ---------------------------------------------------------------------------


@hookspec
def gateway_register_image_actions() -> list[ImageAction]:
    """Return the image actions this plugin provides (``POST /:login/images/:id?action=...``).

    Two plugins providing the same action name make the gateway refuse to start, with a
    message naming both.
    """


# --- storage targets -------------------------------------------------------------------------


@hookspec
def gateway_register_storage_targets() -> list[StorageTargetFactory]:
    """Return the kinds of storage target this plugin provides (``[storage] kind = NAME``).

    The gateway creates the one target the settings select; names must be unique.
    """


# --- image catalog ---------------------------------------------------------------------------


@hookspec
def gateway_register_image_catalogs() -> list[ImageCatalogFactory]:
    """Return the kinds of image catalog this plugin provides (``[catalog] kind = NAME``).

    The embedded default registers ``"embedded"``; names must be unique.
    """
