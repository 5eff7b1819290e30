"""UpdateImage: change an image's name, version, description, homepage, eula, acl or tags.

CloudAPI's ``update`` (sdc-cloudapi ``lib/datasets.js:526-568``) passes those seven fields to
IMGAPI's ``apiUpdateImage`` and answers the updated image as GetImage shows it. Order of checks,
as the request meets them in Triton (IMGAPI's route, ``lib/images.js:4896-4925``): the image
must be visible (the gateway answered 404 before ``run``), the caller must own it (422
``NotImageOwner``), at least one field must be given, then every field is validated
(``fields``). Only then is the catalog asked to store the change. ``triton image share``,
``unshare`` and ``tag`` are this request with ``{"acl": [...]}`` or ``{"tags": {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.actions import ActionContext
from gateway.catalog import EditableCatalog, ImageNotFound, InvalidManifest
from gateway.errors import InternalError, NotAvailableHere, NotImageOwner, ResourceNotFound
from gateway.plugin_kit.javascript import load_json_file
from plugins.actions.update.fields import UpdateValidationFailed, check_update, requested


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped beside this module (package data)."""
    return load_json_file(__package__, "schema.json")


class UpdateAction:
    """``action=update``: see the module docstring and ``fields`` for the rules."""

    name = "update"

    def __init__(self) -> None:
        self.schema: Mapping[str, Any] = load_schema()

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check owner and fields, store the change, answer the image as GetImage shows it."""
        catalog = ctx.catalog
        if not isinstance(catalog, EditableCatalog):
            raise NotAvailableHere(
                "UpdateImage is not available: the configured image catalog cannot change images"
            )
        image = ctx.image
        # IMGAPI reqEnsureAccountIsImageOwner (images.js:4737-4751), before apiUpdateImage.
        if image.owner != ctx.account.uuid:
            raise NotImageOwner(
                f"account {ctx.account.uuid} is not the owner of image {image.uuid}"
            )
        changes = check_update(requested(params))
        if changes:
            try:
                image = await catalog.update_image(image.uuid, changes)
            except ImageNotFound:
                raise ResourceNotFound("image not found") from None
            except InvalidManifest as exc:  # a catalog stricter than IMGAPI refused it
                fields = ", ".join(str(e.get("field")) for e in exc.errors) or "manifest"
                raise UpdateValidationFailed(
                    f"invalid image data: {fields}", errors=list(exc.errors)
                ) from None
        if ctx.render_image is None:
            raise InternalError("this gateway cannot render images for UpdateImage")
        return ctx.render_image(image)
