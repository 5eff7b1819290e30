"""Building the configured catalog, with what the host lends to catalogs that ask for it.

A plain ``ImageCatalogFactory`` gets its config section and the settings. A
``HostedCatalogFactory`` (the object-store catalog) also gets a ``CatalogHost``: the gateway's
image-records table and a storage target for its files, either the gateway's own export target
(so exports can copy inside one store) or one built from the catalog's ``storage`` subsection.
The app and the ``images`` commands both build the catalog here, so they agree on every detail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.catalog import CatalogHost, HostedCatalogFactory, ImageCatalog
from gateway.server.image_records import (
    PostgresImageRecords,
    SQLiteImageRecords,
    image_records_for,
)
from gateway.server.plugin_manager import ConfigurationError, create_component
from gateway.settings import Settings
from gateway.storage import StorageTarget


@dataclass
class CatalogAssembly:
    """The catalog plus the resources the host opened for it, opened and closed together."""

    catalog: ImageCatalog
    records: SQLiteImageRecords | PostgresImageRecords | None = None
    #: A target built for the catalog alone (not the export target): opened and closed here.
    own_storage: StorageTarget | None = None

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[ImageCatalog]:
        """Open records, the catalog's own target and the catalog; close them in reverse."""
        if self.records is not None:
            self.records.open()
        try:
            if self.own_storage is not None:
                await self.own_storage.open()
            try:
                await self.catalog.open()
                try:
                    yield self.catalog
                finally:
                    await self.catalog.close()
            finally:
                if self.own_storage is not None:
                    await self.own_storage.close()
        finally:
            if self.records is not None:
                self.records.close()


def build_catalog(
    settings: Settings,
    catalogs: Mapping[str, Any],
    storage_targets: Mapping[str, Any],
    export_target: StorageTarget | None,
) -> CatalogAssembly:
    """The catalog ``settings.catalog`` selects. ``export_target`` is the gateway's own target
    (``None`` where there is none, e.g. a CLI without ``[storage]``: then a hosted catalog
    without a ``storage`` subsection is built on a target made from ``[storage]`` if set)."""
    config = settings.catalog
    factory = catalogs.get(str(config.get("kind")))
    if not isinstance(factory, HostedCatalogFactory):
        return CatalogAssembly(create_component("catalog", config, catalogs, settings))
    options = {k: v for k, v in config.items() if k != "kind"}
    try:
        section = factory.storage_section(options)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"[catalog] kind={config.get('kind')}: {exc}") from exc
    own: StorageTarget | None = None
    if section is not None:
        own = create_component("catalog.storage", section, storage_targets, settings)
        target = own
    elif export_target is not None:
        target = export_target
    elif settings.storage:
        own = create_component("storage", settings.storage, storage_targets, settings)
        target = own
    else:
        raise ConfigurationError(
            f"[catalog] kind={config.get('kind')} keeps image files in a storage target: "
            "configure [storage] or give the catalog a [catalog.storage] section"
        )
    records = image_records_for(settings)
    host = CatalogHost(records=records, storage=target)
    try:
        catalog: ImageCatalog = factory.create_hosted(options, settings, host)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"[catalog] kind={config.get('kind')}: {exc}") from exc
    return CatalogAssembly(catalog, records=records, own_storage=own)
