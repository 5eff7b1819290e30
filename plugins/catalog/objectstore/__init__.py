"""The object-store image catalog: ``[catalog] kind = "objectstore"``.

Image files live in a storage target under ``prefix`` (IMGAPI's layout,
``/<operator>/stor/imgapi/<uuid>/file0``); manifests and each file's sha1, size and MD5 live
in the gateway's database (``CatalogHost.records``). Without a ``[catalog.storage]`` section
the files go to the gateway's own ``[storage]`` target, and exports become copies inside the
store (a SnapLink, CopyObject)::

    [catalog]
    kind = "objectstore"
    prefix = "/operator/stor/imgapi"
    # spool_path = "spool"       # where imports are received before upload (data_dir relative)

    # [catalog.storage]          # optional: keep the files in another store
    # kind = "s3"
    # ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import hookimpl
from gateway.plugin_kit import read_section
from gateway.plugin_kit.manifests import manifest_validator
from plugins.catalog.objectstore.catalog import ObjectStoreCatalog

if TYPE_CHECKING:
    from gateway.catalog import CatalogHost, ImageCatalogFactory
    from gateway.settings import Settings

__all__ = ["ObjectStoreCatalog", "ObjectStoreCatalogFactory", "gateway_register_image_catalogs"]

#: ``/<account>/<top>/<dir>[/...]``: at least one directory below an account's top directory,
#: no empty, ``.`` or ``..`` segments and no control characters.
_PREFIX = re.compile(r"^(/(?!\.\.?(?:/|$))[^/\x00-\x1f\x7f]+){3,}/?$")

#: The ``[catalog]`` section of ``kind = "objectstore"``.
CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["prefix"],
    "properties": {
        "kind": {"const": "objectstore"},
        "prefix": {"type": "string", "minLength": 1, "maxLength": 512},
        "spool_path": {"type": "string", "minLength": 1},
        "storage": {
            "type": "object",
            "required": ["kind"],
            "properties": {"kind": {"type": "string", "minLength": 1}},
        },
    },
}


class ObjectStoreCatalogFactory:
    """Builds an ``ObjectStoreCatalog`` on what the host lends (``HostedCatalogFactory``)."""

    name = "objectstore"

    def create(self, config: Mapping[str, Any], settings: Settings) -> ObjectStoreCatalog:
        raise ValueError("the objectstore catalog needs the gateway's records and storage")

    def storage_section(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        section = _read(config).get("storage")
        return dict(section) if section is not None else None

    def create_hosted(
        self, config: Mapping[str, Any], settings: Settings, host: CatalogHost
    ) -> ObjectStoreCatalog:
        values = _read(config)
        spool_dir = Path(settings.data_dir) / Path(values.get("spool_path", "spool")).expanduser()
        manifest_validator()  # fail at start, not on the first import, if the schema is broken
        return ObjectStoreCatalog(host.records, host.storage, values["prefix"], spool_dir)


def _read(config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated section (``ValueError`` with a clear message), prefix without its last /."""
    values = read_section(dict(config), CONFIG_SCHEMA)
    prefix = values["prefix"]
    if not _PREFIX.match(prefix):
        raise ValueError(
            "prefix must be an absolute path below an account's top directory, such as "
            f"/operator/stor/imgapi, got {prefix!r}"
        )
    values["prefix"] = prefix.rstrip("/")
    return values


@hookimpl
def gateway_register_image_catalogs() -> list[ImageCatalogFactory]:
    """Register the object-store catalog kind."""
    return [ObjectStoreCatalogFactory()]
