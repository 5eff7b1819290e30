"""CloneImage: the caller's own copy of an image shared with them, made as IMGAPI makes it.

CloudAPI runs ``action=clone`` on the UpdateImage route with no version check and no input
(sdc-cloudapi ``lib/datasets.js:650-677`` ``cloneImage``, mounted at ``:737``), asks IMGAPI's
CloneImage and answers the clone through ``translate``: the image object GetImage answers.
IMGAPI's route (sdc-imgapi ``lib/images.js:4974-4980``) is ``reqGetImage`` then
``apiCloneImage`` (``:4402-4607``), with **no** ``reqEnsureAccountIsImageOwner``. In order:

1. the image must be visible to the caller (``reqGetImage``, 404; the gateway did it);
2. activated, else ``422 ValidationFailed "image is not active"`` (``:4428-4432``);
3. the caller in its ``acl``, else ``422 ImageNotShared`` (``:4434-4437``): cloning an image you
   own is refused too, unless you put yourself in its acl, and a public image is no exception;
4. not ``docker``, else ``422 ValidationFailed "docker images cannot be cloned"`` (``:4439-4444``);
5. at most one file, else ``400 NotImplemented`` (``:4446-4450``).

Then every image of the origin chain up to the first operator image is cloned, base first
(``:4454-4499``), each from its IMGAPI serialization (``:4516-4535``): no ``acl``, a new
``uuid``, ``owner`` the caller, ``origin`` the clone of its origin, ``disabled`` for all but the
last; ``public`` and everything else as they were (``Image.create``, ``:1086-1098``); then
activated, which stamps a new ``published_at`` and sets ``state`` (``:407-425``). A failure
deletes the clones made so far (``:4566-4592``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuid_mod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.actions import ActionContext
from gateway.catalog import EditableCatalog, Image, ImageCatalog
from gateway.errors import (
    GatewayError,
    ImageHasNoFile,
    InternalError,
    InvalidParameter,
    NotAvailableHere,
    NotImplementedByGateway,
    ResourceNotFound,
    ValidationFailed,
)
from gateway.plugin_kit.javascript import load_json_file

log = logging.getLogger(__name__)

#: IMGAPI's ``constants.UNSET_OWNER_UUID`` (``lib/constants.js:66``): an operator image, where
#: the origin chain stops. IMGAPI also stops at images of its configured admin account; the
#: gateway knows no admin account, so this owner is the only operator it recognises.
OPERATOR_OWNER = "00000000-0000-0000-0000-000000000000"

#: IMGAPI's ``constants.MAX_ORIGIN_DEPTH`` (``lib/constants.js:57``).
MAX_ORIGIN_DEPTH = 100


class ImageNotShared(GatewayError):
    """IMGAPI's ``422 ImageNotShared`` (sdc-imgapi ``lib/errors.js:382-395``), passed through
    by CloudAPI: the caller is not in the image's ``acl``."""

    status, code = 422, "ImageNotShared"


def load_schema() -> dict[str, Any]:
    """The JSON Schema shipped beside this module (package data)."""
    return load_json_file(__package__, "schema.json")


def _now() -> str:
    """``new Date().toISOString()``, as IMGAPI's ``activate`` stamps ``published_at``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_cloneable(image: Image, account: str) -> None:
    """``apiCloneImage``'s refusals, in its order, for the image the caller asked for."""
    if image.state not in ("active", "disabled"):  # IMGAPI's `activated` flag
        raise ValidationFailed(
            "image is not active", errors=[{"field": "active", "code": "Invalid"}]
        )
    if account not in image.acl:
        # IMGAPI formats the message with its two arguments swapped (lib/errors.js:386,
        # called as ImageNotSharedError(null, account, image.uuid)); kept as it is sent.
        raise ImageNotShared(f"Image {account} is not shared with account {image.uuid}")
    if image.manifest.get("type") == "docker":
        raise ValidationFailed(
            "docker images cannot be cloned", errors=[{"field": "type", "code": "Invalid"}]
        )
    if len(image.files) > 1:
        raise NotImplementedByGateway("cannot clone images with multiple files")


def _check_copyable(image: Image) -> None:
    """What makes IMGAPI's ``Image.create``/``copyFilesToImage`` fail for one image of the chain.

    ``urn`` survives the serialization but ``Image.create`` takes it only on import, so it is an
    extra parameter (``lib/images.js:1179-1182``, ``:1200-1210``). An image without exactly one
    file trips an ``assert`` in ``copyFilesToImage`` (``:341``); the gateway answers an error.
    """
    if image.manifest.get("urn"):
        raise InvalidParameter(
            'invalid extra parameters: "urn"', errors=[{"field": "urn", "code": "Invalid"}]
        )
    if not image.files:
        raise ImageHasNoFile(f"image {image.uuid} has no file to clone")
    if len(image.files) > 1:
        raise NotImplementedByGateway("cannot clone images with multiple files")


async def origin_chain(catalog: ImageCatalog, image: Image) -> list[Image]:
    """``image`` and its origins up to (not including) the first operator image, base first.

    Origins are read without a visibility check, as IMGAPI's ``Image.get`` reads them; a
    missing one is IMGAPI's ``404 "image <uuid> not found"`` (``lib/database.js:324``).
    """
    chain = [image]
    origin = image.manifest.get("origin")
    while origin:
        found = await catalog.get_image(str(origin))
        if found is None:
            raise ResourceNotFound(f"image {origin} not found")
        if found.owner == OPERATOR_OWNER:
            break
        chain.insert(0, found)
        origin = found.manifest.get("origin")
        if origin and len(chain) >= MAX_ORIGIN_DEPTH:
            raise InternalError(f"Origin chain too long, exceeds {MAX_ORIGIN_DEPTH} images")
    return chain


def clone_fields(image: Image, account: str, origin: str | None, final: bool) -> dict[str, Any]:
    """The fields ``cloneImgMetadata`` and ``activate`` change; ``None`` removes a field."""
    disabled = bool(image.manifest.get("disabled", False)) if final else True
    fields: dict[str, Any] = {
        "owner": account,
        "acl": None,  # "No access given to others."
        "disabled": disabled,
        "state": "disabled" if disabled else "active",
        "published_at": _now(),
    }
    if origin is not None:
        fields["origin"] = origin
    return fields


class CloneAction:
    """``action=clone``: see the module docstring."""

    name = "clone"
    #: CloudAPI serves CloneImage at every version: ``cloneImage`` checks none.
    api_versions = "*"

    def __init__(self) -> None:
        self.schema: Mapping[str, Any] = load_schema()

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check, clone the chain, answer the last clone as GetImage would."""
        catalog = ctx.catalog
        if not isinstance(catalog, EditableCatalog):
            raise NotAvailableHere(
                "CloneImage is not available: the configured image catalog cannot clone images"
            )
        if ctx.render_image is None:
            raise InternalError("this gateway cannot render images for actions")
        account = ctx.account.uuid
        check_cloneable(ctx.image, account)
        chain = await origin_chain(catalog, ctx.image)
        for image in chain:
            _check_copyable(image)
        clones = await self._clone(catalog, chain, account)
        log.info(
            "image %s cloned as %s for account %s (%d image(s))",
            ctx.image.uuid,
            clones[-1].uuid,
            account,
            len(clones),
        )
        return ctx.render_image(clones[-1])

    async def _clone(
        self, catalog: EditableCatalog, chain: list[Image], account: str
    ) -> list[Image]:
        """Clone ``chain`` base first; on any failure delete the clones already made."""
        clones: list[Image] = []
        origin: str | None = None  # the first keeps its origin (an operator image, or none)
        try:
            for image in chain:
                clone = await catalog.clone_image(
                    image.uuid,
                    new_uuid=str(uuid_mod.uuid4()),
                    fields=clone_fields(image, account, origin, image is chain[-1]),
                )
                clones.append(clone)
                origin = clone.uuid
        except BaseException:
            await asyncio.shield(_discard(catalog, clones))
            raise
        return clones


async def _discard(catalog: ImageCatalog, clones: list[Image]) -> None:
    """Delete the clones of a failed clone, newest first (so no origin outlives its image)."""
    for clone in reversed(clones):
        try:
            await catalog.delete_image(clone.uuid)
        except Exception:
            log.exception("clone cleanup: cannot delete cloned image %s", clone.uuid)
