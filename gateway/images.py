"""Image visibility and CloudAPI's image object. STUB: owned by the catalog work."""

from __future__ import annotations

from typing import Any

from gateway.accounts import Account
from gateway.catalog import Image, ImageCatalog


async def get_visible_image(catalog: ImageCatalog, account: Account, image_id: str) -> Image:
    """The image if ``account`` may see it (owner, public and active, or in the acl); else 404."""
    raise NotImplementedError


def to_cloudapi_image(image: Image, api_version: str) -> dict[str, Any]:
    """CloudAPI's translation of an IMGAPI manifest (``id`` not ``uuid``, version-dependent fields)."""
    raise NotImplementedError
