"""The app factory every entry point shares (CLI, embedding, tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from fake_manta.admin import create_admin_app
from fake_manta.auth import auth_middleware
from fake_manta.config import CONFIG, STORE, FakeMantaConfig
from fake_manta.faults import fault_middleware
from fake_manta.middlewares import (
    add_common_headers,
    common_headers,
    error_middleware,
    request_age_check,
    skip_admin,
)
from fake_manta.models import Backend, DiskBackend, MemoryBackend, Store
from fake_manta.routes import setup_routes

__all__ = ["FakeMantaConfig", "create_app"]


def make_backend(config: FakeMantaConfig) -> Backend:
    """Disk when ``data_dir`` is set, memory otherwise (fake-gcs-server's rule)."""
    if config.data_dir is not None:
        return DiskBackend(config.data_dir, fsync=config.fsync)
    return MemoryBackend()


async def _backend_ctx(app: web.Application) -> AsyncIterator[None]:
    backend = app[STORE].backend
    await backend.open()
    yield
    await backend.close()


def create_app(config: FakeMantaConfig | None = None) -> web.Application:
    """Build the fake Manta app. Middleware order (outermost first): common headers, errors,
    faults, request age (``Date``), auth; the admin surface under ``/_fake/`` skips the last
    three."""
    config = config or FakeMantaConfig()
    app = web.Application(
        middlewares=[
            common_headers,
            error_middleware,
            skip_admin(fault_middleware(config.faults)),
            skip_admin(request_age_check(config.max_request_age)),
            skip_admin(auth_middleware(config.registry, no_auth=config.no_auth)),
        ],
    )
    app[CONFIG] = config
    app[STORE] = Store(make_backend(config), min_part_size=config.min_part_size)
    app.on_response_prepare.append(add_common_headers)
    app.cleanup_ctx.append(_backend_ctx)
    app.add_subapp("/_fake", create_admin_app(config, app[STORE]))  # before the catch-all
    setup_routes(app)
    return app
