"""The image-action contract: ImageAction, ActionContext and the Account a caller sees.

``POST /:login/images/:id?action=NAME`` dispatches to the plugin action of that name.

The gateway authenticates the caller, resolves the image (404 when invisible to the caller),
merges query and JSON-body parameters (body wins, as restify's mapParams does), validates them
against the action's JSON Schema, and only then calls ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.catalog import Image, ImageCatalog
    from gateway.journal import Journal, JournalEntry
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
    #: The host's intent journal: record before writing, so a crash is repaired (None in
    #: hosts that keep none; an action that needs one answers 503 then).
    journal: Journal | None = None
    #: Renders an image as GetImage answers it at this request's API version: what an action
    #: that changes an image (UpdateImage, CloneImage) returns.
    render_image: Callable[[Image], dict[str, Any]] | None = None


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


@dataclass(frozen=True)
class RecoveryContext:
    """What ``recover`` gets: an entry this process has just taken over, and the resources."""

    entry: JournalEntry
    journal: Journal
    catalog: ImageCatalog
    storage: StorageTarget | None
    settings: Settings


@runtime_checkable
class RecoverableAction(ImageAction, Protocol):
    """An action that records its writes in the journal, and so can repair them.

    The host's sweeper calls ``recover`` for each expired entry the action wrote, after taking
    it over: finish the work or undo it, then ``finish`` the entry. Raising leaves the entry
    to be tried again at the next sweep.
    """

    async def recover(self, ctx: RecoveryContext) -> None:
        """Bring the entry's destination to "as before" or "as after", never between."""
