"""The embedded image catalog: the default ``[catalog] kind = "embedded"``.

Manifests live in SQLite and files in a directory, both under ``path`` (default
``<data_dir>/images``; a relative ``path`` is taken from ``data_dir``)::

    [catalog]
    kind = "embedded"
    path = "/var/lib/cloudapi-gateway/images"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import hookimpl
from gateway.plugin_kit import read_section
from gateway.plugin_kit.manifests import manifest_validator
from plugins.catalog.embedded.store import EmbeddedCatalog

if TYPE_CHECKING:
    from gateway.catalog import ImageCatalogFactory
    from gateway.settings import Settings

__all__ = ["EmbeddedCatalog", "EmbeddedCatalogFactory", "gateway_register_image_catalogs"]


#: The ``[catalog]`` section of ``kind = "embedded"``.
CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "embedded"},
        "path": {"type": "string", "minLength": 1},
    },
}


class EmbeddedCatalogFactory:
    """Builds an ``EmbeddedCatalog`` from the ``[catalog]`` section."""

    name = "embedded"

    def create(self, config: Mapping[str, Any], settings: Settings) -> EmbeddedCatalog:
        plain = {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}
        values = read_section(plain, CONFIG_SCHEMA)
        # A relative path is taken from data_dir; an absolute one wins.
        root = Path(settings.data_dir) / Path(values.get("path", "images")).expanduser()
        manifest_validator()  # fail at start, not on the first import, if the schema is broken
        return EmbeddedCatalog(root)


@hookimpl
def gateway_register_image_catalogs() -> list[ImageCatalogFactory]:
    """Register the embedded catalog kind."""
    return [EmbeddedCatalogFactory()]
