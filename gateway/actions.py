"""The image-action contract: ImageAction, ActionContext and the Account a caller sees.

``POST /:login/images/:id?action=NAME`` dispatches to the plugin action of that name.

The gateway authenticates the caller, resolves the image (404 when invisible to the caller),
merges query and JSON-body parameters (body wins, as restify's mapParams does), validates them
against the action's JSON Schema, and only then calls ``run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.catalog import Image, ImageCatalog
    from gateway.settings import Settings
    from gateway.storage import StorageTarget


@dataclass(frozen=True)
class Account:
    """A CloudAPI account: what an action knows about its caller."""

    uuid: str
    login: str
    disabled: bool = False
    created: str = ""  # ISO 8601, UTC


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may use. ``storage`` is ``None`` when no target is configured."""

    request: web.Request
    account: Account
    image: Image
    catalog: ImageCatalog
    storage: StorageTarget | None
    settings: Settings
    api_version: str  # the version the request was served at, e.g. "9.0.0"


@runtime_checkable
class ImageAction(Protocol):
    """One action on an image, provided by a plugin."""

    #: The value of ``action=`` that selects this action; unique across plugins.
    name: str

    #: A JSON Schema (2020-12) for the merged parameters, ``action`` included. Ship it as a JSON
    #: file beside the plugin; the gateway checks it against the metaschema at start.
    schema: Mapping[str, Any]

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """Do the work; the returned mapping is sent as the 200 JSON body, in its key order.

        Raise ``gateway.errors.GatewayError`` subclasses for every failure the caller should see.
        """
