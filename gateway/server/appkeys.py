"""Every typed key on the aiohttp application, in one place."""

from __future__ import annotations

import pluggy
from aiohttp import web
from jsonschema.protocols import Validator

from gateway.actions import Account, ImageAction
from gateway.catalog import ImageCatalog
from gateway.journal import Journal
from gateway.server.accounts import AccountStore
from gateway.server.catalog_host import CatalogAssembly
from gateway.server.database import Databases
from gateway.server.metrics import Metrics
from gateway.server.readiness import Readiness
from gateway.server.sweeper import Sweeper
from gateway.settings import Settings
from gateway.storage import StorageTarget

SETTINGS = web.AppKey("settings", Settings)
PLUGIN_MANAGER = web.AppKey("plugin_manager", pluggy.PluginManager)
ACTIONS = web.AppKey("actions", dict[str, ImageAction])
#: Compiled parameter validators, keyed by action name (built when the app is created).
VALIDATORS = web.AppKey("validators", dict[str, Validator])
CATALOG = web.AppKey("catalog", ImageCatalog)
#: The catalog with the resources the host opened for it (records, its own storage target).
CATALOG_ASSEMBLY = web.AppKey("catalog_assembly", CatalogAssembly)
STORAGE = web.AppKey("storage", StorageTarget | None)  # type: ignore[arg-type]
ACCOUNTS = web.AppKey("accounts", AccountStore)
#: The databases of the stores (``gateway.server.database``), opened with the account store.
DATABASES = web.AppKey("databases", Databases)
JOURNAL = web.AppKey("journal", Journal)
#: Set while the app runs (its cleanup context starts it).
SWEEPER = web.AppKey("sweeper", Sweeper)
#: The app's Prometheus registry and the host's ``gateway.telemetry`` listener.
METRICS = web.AppKey("metrics", Metrics)
#: (host, port) the metrics listener is bound to; set while it runs (not when it is off).
METRICS_ADDRESS = web.AppKey("metrics_address", tuple[str, int])
#: What ``GET /--ready`` checks, and the draining switch ``serve`` turns on at SIGTERM.
READINESS = web.AppKey("readiness", Readiness)

# Per-request values set by the middlewares (web.RequestKey needs aiohttp >= 3.14).
REQUEST_ID = web.RequestKey("request_id", str)
#: The authenticated caller (set by ``gateway.server.auth.authenticate``).
ACCOUNT = web.RequestKey("account", Account)
#: The API version the request is served at (set once the range is negotiated).
API_VERSION = web.RequestKey("api_version", str)
#: ``time.monotonic()`` when the request reached the gateway (for Response-Time).
START_TIME = web.RequestKey("start_time", float)
#: The image action a ``POST /:login/images/:id`` runs (its audit record's route names it).
IMAGE_ACTION = web.RequestKey("image_action", str)
