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
    JOURNAL,
    METRICS,
    PLUGIN_MANAGER,
    READINESS,
    SETTINGS,
    STORAGE,
    SWEEPER,
    VALIDATORS,
)
from gateway.server.journal import SQLiteJournal
from gateway.server.logs import audit_middleware
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
    settings = app[SETTINGS]
    settings.accounts_db.parent.mkdir(parents=True, exist_ok=True)
    store = AccountStore(settings.accounts_db)
    app[ACCOUNTS] = store
    try:
        yield
    finally:
        store.close()


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.journal_db.parent.mkdir(parents=True, exist_ok=True)
    journal = SQLiteJournal(settings.journal_db, lease_seconds=settings.lease_seconds)
    app[JOURNAL] = journal
    try:
        yield
    finally:
        journal.close()


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
    catalog = app[CATALOG]
    await catalog.open()
    try:
        yield
    finally:
        await catalog.close()


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
    catalog: ImageCatalog = create_component(
        "catalog", settings.catalog, provided.image_catalogs, settings
    )
    storage: StorageTarget | None = None
    if settings.storage:
        storage = create_component("storage", settings.storage, provided.storage_targets, settings)

    # The app reads no body itself; the action view enforces max_body_size while streaming.
    app = web.Application(
        middlewares=[metrics_middleware, audit_middleware, error_middleware, version_middleware],
        client_max_size=settings.max_body_size,
    )
    app[SETTINGS] = settings
    app[PLUGIN_MANAGER] = pm
    app[ACTIONS] = provided.actions
    app[VALIDATORS] = validators
    app[CATALOG] = catalog
    app[STORAGE] = storage  # type: ignore[misc]  # AppKey of a union (see appkeys)
    app[METRICS] = Metrics()
    app[READINESS] = Readiness()
    app.cleanup_ctx.append(metrics_listener_ctx)  # first up, last down
    app.cleanup_ctx.extend([_accounts_ctx, _journal_ctx, _catalog_ctx, _storage_ctx, _sweeper_ctx])
    app.on_response_prepare.append(make_response_headers(app))

    ping_views.add_routes(app)
    ready_views.add_routes(app)
    image_views.add_routes(app)
    action_views.add_routes(app)
    return app
