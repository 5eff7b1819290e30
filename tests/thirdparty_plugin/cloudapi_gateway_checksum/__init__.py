"""A third-party cloudapi-gateway plugin: ``action=checksum`` hashes an image's stored file.

``POST /my/images/<uuid>?action=checksum[&algorithm=sha256]`` answers
``{"id", "algorithm", "checksum", "matches_manifest"}``; ``matches_manifest`` compares the
sha1 of the bytes with the manifest's ``files[0].sha1`` (``null`` for other algorithms).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from gateway import hookimpl
from gateway.actions import ActionContext, ImageAction
from gateway.errors import ResourceNotFound


class ChecksumAction:
    """Streams ``files[0]`` from the catalog through a hash."""

    name = "checksum"
    schema: Mapping[str, Any] = json.loads(
        resources.files(__package__).joinpath("schema.json").read_text()
    )

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        algorithm = str(params.get("algorithm", "sha1"))
        if not ctx.image.files:
            raise ResourceNotFound(f"image {ctx.image.uuid} has no file")
        digest = hashlib.new(algorithm)
        async for chunk in ctx.catalog.open_file(ctx.image.uuid, 0):
            digest.update(chunk)
        checksum = digest.hexdigest()
        matches = checksum == ctx.image.files[0].sha1 if algorithm == "sha1" else None
        return {
            "id": ctx.image.uuid,
            "algorithm": algorithm,
            "checksum": checksum,
            "matches_manifest": matches,
        }


@hookimpl
def gateway_register_image_actions() -> list[ImageAction]:
    """Provide ``action=checksum``."""
    return [ChecksumAction()]
