"""Image visibility, ListImages filters and CloudAPI's image object.

What CloudAPI asks IMGAPI with ``?account=<uuid>`` happens here, against any catalog: the
visibility rules of IMGAPI ``reqGetImage``/``apiListImages`` (sdc-imgapi ``lib/images.js``) and
CloudAPI's ``translate`` (sdc-cloudapi ``lib/datasets.js``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.actions import Account
from gateway.catalog import Image, ImageCatalog
from gateway.errors import InvalidArgument, InvalidParameter, ResourceNotFound
from gateway.server.responses import json_bytes
from gateway.server.versioning import LATEST_VERSION, Version, parse_version

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: IMGAPI states ListImages accepts besides "all".
LIST_STATES = ("active", "disabled", "unactivated", "creating", "failed")

#: ``error.code`` values CloudAPI shows as they are; any other becomes a generic InternalError.
KNOWN_ERROR_CODES = ("PrepareImageDidNotRun", "VmHasNoOrigin", "NotSupported")

#: CloudAPI < 8.0.0 speaks of machine types, not image types.
LEGACY_TYPES = {"smartmachine": "zone-dataset", "virtualmachine": "zvol"}


def is_activated(image: Image) -> bool:
    """IMGAPI's ``activated`` flag, which the public manifest carries only through ``state``."""
    return image.state in ("active", "disabled")


def is_visible(image: Image, account: Account) -> bool:
    """Owner; or activated and public; or activated with the account in the acl."""
    if image.owner == account.uuid:
        return True
    return is_activated(image) and (image.public or account.uuid in image.acl)


async def get_visible_image(catalog: ImageCatalog, account: Account, image_id: str) -> Image:
    """The image if ``account`` may see it; 404 ResourceNotFound otherwise, as CloudAPI says it."""
    if not UUID_RE.match(image_id):
        raise ResourceNotFound(f"{image_id} not found")
    image = await catalog.get_image(image_id)
    if image is None or not is_visible(image, account):
        raise ResourceNotFound("image not found")
    if image.state == "destroyed":
        raise ResourceNotFound(f"{image.uuid} not found")
    return image


@functools.lru_cache(maxsize=64)
def _version(api_version: str) -> Version:
    """The version an image is rendered for; cached, as every request of a client asks the
    same one (and the server itself only passes versions it resolved)."""
    if api_version.strip() == "*":
        return parse_version(LATEST_VERSION)
    try:
        return parse_version(api_version)
    except ValueError:
        return parse_version(LATEST_VERSION)


def _error_object(error: Any) -> dict[str, Any]:
    code = error.get("code") if isinstance(error, Mapping) else None
    if code in KNOWN_ERROR_CODES:
        return {"code": code, "message": error.get("message")}
    return {
        "code": "InternalError",
        "message": "an unexpected error occurred (Contact support for assistance.)",
    }


def to_cloudapi_image(image: Image, api_version: str) -> dict[str, Any]:
    """CloudAPI's ``translate``: ``id`` for ``uuid``, whitelisted fields, versioned extras."""
    m = image.manifest
    version = _version(api_version)
    obj: dict[str, Any] = {"id": m["uuid"], "name": m.get("name"), "version": m.get("version")}
    if "os" in m:
        obj["os"] = m["os"]
    requirements: dict[str, Any] = {}
    obj["requirements"] = requirements
    image_type = m.get("type")
    if image_type:
        if version >= (8, 0, 0):
            obj["type"] = image_type
        else:
            obj["type"] = "virtualmachine" if image_type == "zvol" else "smartmachine"
    if image_type == "zvol" and m.get("image_size") is not None:
        obj["image_size"] = m["image_size"]
    if m.get("description"):
        obj["description"] = m["description"]
    reqs = m.get("requirements")
    if isinstance(reqs, Mapping):
        for out_key, in_key in (
            ("max_memory", "max_ram"),
            ("max_ram", "max_ram"),
            ("min_memory", "min_ram"),
            ("min_ram", "min_ram"),
            ("brand", "brand"),
            ("bootrom", "bootrom"),
        ):
            if reqs.get(in_key):
                requirements[out_key] = reqs[in_key]
    files = m.get("files") or []
    if files:
        first = files[0]
        obj["files"] = [
            {
                "compression": first.get("compression"),
                "sha1": first.get("sha1"),
                "size": first.get("size"),
            }
        ]
    fields = ["tags", "homepage", "published_at"]
    if version >= (7, 1, 0):
        fields += ["owner", "public", "state", "eula", "acl", "origin", "error"]
    for field in fields:
        if field not in m:
            continue
        obj[field] = _error_object(m[field]) if field == "error" else m[field]
    return obj


#: Rendered GetImage bodies kept before the cache starts over (one per image and version).
BODY_LIMIT = 4096


class RenderedImages:
    """GetImage bodies already encoded, per (image uuid, API version).

    Rendering and encoding an image is most of GetImage's own work, and the answer depends
    only on the manifest and the version. An entry remembers (a copy of) the manifest it was
    made from and counts only while the catalog's manifest is equal to it, a comparison much
    cheaper than rendering, so an image changed by anyone is rendered afresh.
    """

    def __init__(self, limit: int = BODY_LIMIT) -> None:
        self.limit = limit
        self._bodies: dict[tuple[str, str], tuple[Mapping[str, Any], bytes]] = {}

    def body(self, image: Image, api_version: str) -> bytes:
        """``json_bytes(to_cloudapi_image(image, api_version))``, from the cache if fresh."""
        manifest = image.manifest
        key = (image.uuid, api_version)
        cached = self._bodies.get(key)
        if cached is not None and cached[0] == manifest:
            return cached[1]
        body = json_bytes(to_cloudapi_image(image, api_version))
        if len(self._bodies) >= self.limit:
            self._bodies.clear()
        self._bodies[key] = (dict(manifest), body)  # a copy: nobody can change it in place
        return body

    def __len__(self) -> int:
        return len(self._bodies)


# --- ListImages ---------------------------------------------------------------------------


def _bool_param(name: str, value: str) -> bool:
    if value == "true":
        return True
    if value == "false":
        return False
    raise InvalidParameter(
        f'invalid value for "{name}": "{value}"', errors=[{"field": name, "code": "Invalid"}]
    )


def _text_match(wanted: str) -> Callable[[Any], bool]:
    """IMGAPI's name/version filter: exact, or ``~sub`` for a case-sensitive substring."""
    if wanted.startswith("~"):
        sub = wanted[1:]
        return lambda value: isinstance(value, str) and sub in value
    return lambda value: value == wanted


def _type_match(wanted: str) -> Callable[[Any], bool]:
    """IMGAPI's type filter: exact, or ``!type`` to exclude one."""
    if wanted.startswith("!"):
        excluded = wanted[1:]
        return lambda value: value != excluded
    return lambda value: value == wanted


def _published_key(image: Image) -> datetime:
    text = image.manifest.get("published_at")
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)  # unpublished images sort first, as in IMGAPI


def filter_images(
    images: list[Image], account: Account, query: Mapping[str, str], api_version: str
) -> list[Image]:
    """ListImages as CloudAPI asks IMGAPI for it: visibility, filters, published_at order.

    Empty query values are ignored (CloudAPI only forwards truthy ones). Without ``type``,
    docker images are left out; below 8.0.0 ``type`` is ``smartmachine``/``virtualmachine``.
    """
    params = {k: v for k, v in query.items() if isinstance(v, str) and v != ""}
    type_param = params.get("type")
    if type_param is None:
        image_type = "!docker"
    elif _version(api_version) >= (8, 0, 0):
        image_type = type_param
    else:
        mapped = LEGACY_TYPES.get(type_param)
        if mapped is None:
            raise InvalidArgument(f"image type {type_param} is not a valid type")
        image_type = mapped

    state = params.get("state", "active")
    if state != "all" and state not in LIST_STATES:
        raise InvalidParameter(
            f'invalid state: "{state}"', errors=[{"field": "state", "code": "Invalid"}]
        )
    public = _bool_param("public", params["public"]) if "public" in params else None
    owner = params.get("owner")

    type_ok = _type_match(image_type)
    checks: list[Callable[[Image], bool]] = [lambda i: type_ok(i.manifest.get("type"))]
    if "name" in params:
        name_ok = _text_match(params["name"])
        checks.append(lambda i: name_ok(i.manifest.get("name")))
    if "version" in params:
        version_ok = _text_match(params["version"])
        checks.append(lambda i: version_ok(i.manifest.get("version")))
    if "os" in params:
        os_wanted = params["os"]
        checks.append(lambda i: i.manifest.get("os") == os_wanted)
    if public is not None:
        checks.append(lambda i: i.public == public)
    if owner is not None:
        checks.append(lambda i: i.owner == owner)
    if state != "all":
        checks.append(lambda i: i.state == state)

    # IMGAPI only adds others' images (public, or shared through the acl) when the query can
    # match activated, enabled images: state=disabled or unactivated lists only your own
    # (apiListImages, sdc-imgapi lib/images.js:1473-1532). One IMGAPI slip is not copied: with
    # owner=<someone else>, its two queries for others' images carry no state (:1553-1592), so
    # state=creating or failed would list that owner's activated images; here they list none.
    others_allowed = state in ("all", "active")

    def visible(image: Image) -> bool:
        if image.owner == account.uuid:
            return True
        if not others_allowed or not is_activated(image):
            return False
        return image.public or account.uuid in image.acl

    selected = [i for i in images if i.state != "destroyed" and visible(i)]
    selected = [i for i in selected if all(check(i) for check in checks)]
    return sorted(selected, key=_published_key)
