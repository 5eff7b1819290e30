"""Every typed key on the aiohttp application, in one place."""

from __future__ import annotations

import pluggy
from aiohttp import web

from gateway.actions import ImageAction
from gateway.catalog import ImageCatalog
from gateway.settings import Settings
from gateway.storage import StorageTarget

SETTINGS = web.AppKey("settings", Settings)
PLUGIN_MANAGER = web.AppKey("plugin_manager", pluggy.PluginManager)
ACTIONS = web.AppKey("actions", dict[str, ImageAction])
CATALOG = web.AppKey("catalog", ImageCatalog)
STORAGE = web.AppKey("storage", StorageTarget | None)  # type: ignore[arg-type]
