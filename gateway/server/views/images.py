"""ListImages, GetImage (and their HEADs) and DeleteImage, as CloudAPI serves them.

``POST /{login}/images/{id}`` (image actions) is a separate resource on the same path, added
by ``gateway.server.views.actions``; aiohttp tries both, so each view owns only its methods.
"""

from __future__ import annotations

from aiohttp import web

from gateway.catalog import ImageCatalog
from gateway.errors import ImageHasDependentImages, NotAvailableHere, NotImageOwner
from gateway.server import auth
from gateway.server.appkeys import API_VERSION, CATALOG
from gateway.server.image_view import (
    RenderedImages,
    filter_images,
    get_visible_image,
    to_cloudapi_image,
)
from gateway.server.responses import json_response
from gateway.server.versioning import LATEST_VERSION

#: This app's encoded GetImage bodies (``add_routes``).
RENDERED_IMAGES = web.AppKey("rendered_images", RenderedImages)


def _catalog(request: web.Request) -> ImageCatalog:
    return request.config_dict[CATALOG]


def _api_version(request: web.Request) -> str:
    return request.get(API_VERSION, LATEST_VERSION)


async def list_images(request: web.Request) -> web.Response:
    """ListImages: the caller's visible images, filtered as CloudAPI asks IMGAPI to."""
    account = await auth.authenticate(request)
    version = _api_version(request)
    images = filter_images(await _catalog(request).list_images(), account, request.query, version)
    return json_response([to_cloudapi_image(image, version) for image in images])


async def get_image(request: web.Request) -> web.Response:
    """GetImage: 404 for a non-UUID id, an invisible image or a destroyed one."""
    account = await auth.authenticate(request)
    image = await get_visible_image(_catalog(request), account, request.match_info["id"])
    body = request.config_dict[RENDERED_IMAGES].body(image, _api_version(request))
    return web.Response(body=body, content_type="application/json")


async def delete_image(request: web.Request) -> web.Response:
    """DeleteImage: visible-but-not-yours is IMGAPI's 422 NotImageOwner, passed through."""
    account = await auth.authenticate(request)
    catalog = _catalog(request)
    image = await get_visible_image(catalog, account, request.match_info["id"])
    if image.owner != account.uuid:
        raise NotImageOwner(f"account {account.uuid} is not the owner of image {image.uuid}")
    dependents = [
        i.uuid for i in await catalog.list_images() if i.manifest.get("origin") == image.uuid
    ]
    if dependents:
        raise ImageHasDependentImages(
            f"image {image.uuid} has dependent incremental images: {', '.join(dependents)}"
        )
    await catalog.delete_image(image.uuid)
    return web.Response(status=204)


async def create_image(request: web.Request) -> web.Response:
    """CreateImageFromMachine: authenticated, then refused: there are no machines here."""
    await auth.authenticate(request)
    raise NotAvailableHere(
        "CreateImageFromMachine is not available: this gateway serves images only and has no "
        "machines to create them from"
    )


def add_routes(app: web.Application) -> None:
    """Register ``GET|HEAD|POST /{login}/images``, ``GET|HEAD|DELETE /{login}/images/{id}``."""
    app[RENDERED_IMAGES] = RenderedImages()
    images = app.router.add_resource("/{login}/images", name="images")
    images.add_route("GET", list_images)
    images.add_route("HEAD", list_images)
    images.add_route("POST", create_image)
    image = app.router.add_resource("/{login}/images/{id}", name="image")
    image.add_route("GET", get_image)
    image.add_route("HEAD", get_image)
    image.add_route("DELETE", delete_image)
