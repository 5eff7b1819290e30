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
from plugins.catalog.embedded.manifest import manifest_validator
from plugins.catalog.embedded.store import EmbeddedCatalog

if TYPE_CHECKING:
    from gateway.catalog import ImageCatalogFactory
    from gateway.settings import Settings

__all__ = ["EmbeddedCatalog", "EmbeddedCatalogFactory", "gateway_register_image_catalogs"]


class EmbeddedCatalogFactory:
    """Builds an ``EmbeddedCatalog`` from the ``[catalog]`` section."""

    name = "embedded"
    _KEYS = frozenset({"kind", "path"})

    def create(self, config: Mapping[str, Any], settings: Settings) -> EmbeddedCatalog:
        unknown = sorted(set(config) - self._KEYS)
        if unknown:
            raise ValueError(
                f"catalog (embedded): unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self._KEYS))}"
            )
        path = config.get("path")
        if path is None:
            root = Path(settings.data_dir) / "images"
        elif isinstance(path, str | Path) and str(path):
            root = Path(settings.data_dir) / Path(path).expanduser()  # absolute paths win
        else:
            raise ValueError(f"catalog (embedded): path must be a non-empty string, not {path!r}")
        manifest_validator()  # fail at start, not on the first import, if the schema is broken
        return EmbeddedCatalog(root)


@hookimpl
def gateway_register_image_catalogs() -> list[ImageCatalogFactory]:
    """Register the embedded catalog kind."""
    return [EmbeddedCatalogFactory()]
