"""``create_app``: the only way to get the gateway application (CLI and tests alike).

Everything that can be checked before serving is checked here, synchronously, with one clear
message: plugins load and do not conflict, action schemas are valid, the configured catalog and
storage kinds exist and accept their config. Resources are opened in ``cleanup_ctx`` so that
they are closed only if they were opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from jsonschema.protocols import Validator

from gateway.actions import ImageAction
from gateway.catalog import ImageCatalog
from gateway.server.accounts import AccountStore
from gateway.server.appkeys import (
    ACCOUNTS,
    ACTIONS,
    CATALOG,
    CATALOG_ASSEMBLY,
    DATABASES,
    JOURNAL,
    METRICS,
    PLUGIN_MANAGER,
    READINESS,
    SETTINGS,
    STORAGE,
    SWEEPER,
    VALIDATORS,
)
from gateway.server.auth_throttle import install as install_auth_throttle
from gateway.server.catalog_host import build_catalog
from gateway.server.database import Databases
from gateway.server.journal import DatabaseJournal
from gateway.server.key_cache import key_cache_ctx
from gateway.server.limits import install as install_limits
from gateway.server.logs import audit_middleware, flush_ctx
from gateway.server.metrics import Metrics
from gateway.server.metrics_http import metrics_listener_ctx, metrics_middleware
from gateway.server.middlewares import error_middleware, make_response_headers, version_middleware
from gateway.server.plugin_manager import (
    Hooks,
    PluginError,
    build_plugin_manager,
    create_component,
)
from gateway.server.readiness import Readiness
from gateway.server.sweeper import Sweeper
from gateway.server.validation import SchemaProblem, compile_schema
from gateway.server.views import actions as action_views
from gateway.server.views import images as image_views
from gateway.server.views import ping as ping_views
from gateway.server.views import ready as ready_views
from gateway.settings import Settings
from gateway.storage import StorageTarget
from gateway.telemetry import use_events


async def _accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """The gateway's databases (a SQLite file per store, or one PostgreSQL pool) and the
    account store; the databases close last, after every store that uses them."""
    settings = app[SETTINGS]
    databases = await Databases.open(settings, ("accounts", "journal"))
    app[DATABASES] = databases
    app[ACCOUNTS] = AccountStore(
        databases["accounts"], refresh_interval=databases.options.refresh()
    )
    try:
        yield
    finally:
        await databases.close()


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    app[JOURNAL] = DatabaseJournal(
        app[DATABASES]["journal"], lease_seconds=app[SETTINGS].lease_seconds
    )
    yield


async def _sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    """Sweep for crashed exports at start-up and then periodically, while the app runs."""
    actions: dict[str, ImageAction] = app[ACTIONS]
    sweeper = Sweeper(app[JOURNAL], actions, app[CATALOG], app[STORAGE], app[SETTINGS])
    app[SWEEPER] = sweeper
    context = contextvars.copy_context()  # its repairs report to this app's metrics
    context.run(use_events, app[METRICS])
    task = asyncio.create_task(sweeper.run(), name="journal-sweeper", context=context)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _catalog_ctx(app: web.Application) -> AsyncIterator[None]:
    async with app[CATALOG_ASSEMBLY].opened():
        yield


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = app[STORAGE]
    if storage is None:
        yield
        return
    await storage.open()
    try:
        yield
    finally:
        await storage.close()


def create_app(settings: Settings, *, plugins: Iterable[object] = ()) -> web.Application:
    """Build the gateway for ``settings``; ``plugins`` are extra plugin objects (tests).

    Raises ``ConfigurationError`` (or ``PluginError``) with a message fit for an operator.
    """
    pm = build_plugin_manager(settings, extra=plugins)
    provided = Hooks(pm).provided()
    validators: dict[str, Validator] = {}
    for name, action in provided.actions.items():
        owner = provided.owners[("actions", name)]
        try:
            validators[name] = compile_schema(action.schema, owner=f"action {name!r} ({owner})")
        except SchemaProblem as exc:
            raise PluginError(str(exc)) from exc
    storage: StorageTarget | None = None
    if settings.storage:
        storage = create_component("storage", settings.storage, provided.storage_targets, settings)
    assembly = build_catalog(
        settings, provided.image_catalogs, provided.storage_targets, export_target=storage
    )
    catalog: ImageCatalog = assembly.catalog

    # The app reads no body itself; the action view enforces max_body_size while streaming.
    app = web.Application(
        middlewares=[metrics_middleware, audit_middleware, error_middleware, version_middleware],
        client_max_size=settings.max_body_size,
        # Bodies arrive as sent: Content-MD5 is over those bytes (gateway.server.bodies).
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[PLUGIN_MANAGER] = pm
    app[ACTIONS] = provided.actions
    app[VALIDATORS] = validators
    app[CATALOG] = catalog
    app[CATALOG_ASSEMBLY] = assembly
    app[STORAGE] = storage  # type: ignore[misc]  # AppKey of a union (see appkeys)
    app[METRICS] = Metrics()
    app[READINESS] = Readiness()
    install_auth_throttle(app, install_limits(app, settings))
    app.cleanup_ctx.append(flush_ctx)  # the last down: writes the log lines still queued
    app.cleanup_ctx.append(metrics_listener_ctx)  # first up, last down
    # Storage before the catalog: a catalog may keep its files in the export target.
    app.cleanup_ctx.extend([_accounts_ctx, _journal_ctx, _storage_ctx, _catalog_ctx, _sweeper_ctx])
    app.cleanup_ctx.append(key_cache_ctx)  # after the account store it watches
    app.on_response_prepare.append(make_response_headers(app))

    ping_views.add_routes(app)
    ready_views.add_routes(app)
    image_views.add_routes(app)
    action_views.add_routes(app)
    return app
