"""UpdateImage (``POST /:login/images/:id?action=update``) over HTTP, through the real app.

Every request is signed and sent to ``create_app`` on loopback; images live in the real
embedded catalog, and the ``update`` action is loaded through its ``cloudapi_gateway`` entry
point. Each rule row cites the source it keeps:

- CloudAPI: sdc-cloudapi 10c39636 ``lib/datasets.js`` (``update``, 526-568);
- IMGAPI: sdc-imgapi 15467c4a ``lib/images.js`` (``apiUpdateImage``, 4043-4236), ``lib/errors.js``;
- imgmanifest: node-imgmanifest 3.2.1 ``lib/imgmanifest.js`` (the validators);
- the clients: node-triton a71ef902 (``lib/tritonapi.js`` ``shareImage``/``unshareImage``,
  ``lib/do_image/do_tag.js``, ``lib/cloudapi2.js`` ``updateImage``) and node-smartdc df1a92ff
  (``bin/sdc-updateimage``, ``lib/cloudapi.js`` ``updateImage``).
"""

from __future__ import annotations

import json
import uuid as uuid_mod
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway import PROJECT_NAME, hookimpl
from gateway.actions import Account
from gateway.catalog import Image, ImageNotFound, InvalidManifest
from gateway.httpsig import RequestSigner
from gateway.server.app import create_app
from gateway.server.appkeys import ACTIONS, CATALOG
from gateway.settings import Settings
from plugins.actions.update import fields
from tests.support.helpers import _chunks, add_caller, make_manifest

#: node-triton's default (lib/tritonapi.js:135) and node-smartdc's (lib/cloudapi.js:29).
TRITON_VERSION = "~9||~8"
SMARTDC_VERSION = "~7.2"

NOT_OWNER = "account {account} is not the owner of image {image}"


@dataclass
class Reply:
    status: int
    body: Any


@dataclass
class Gateway:
    """The running app, its callers (alice owns the images; bob and carol do not)."""

    client: TestClient[Any, Any]
    accounts: dict[str, Account]
    signers: dict[str, RequestSigner]

    def uuid(self, login: str) -> str:
        return self.accounts[login].uuid

    async def image(self, owner: str = "alice", **manifest: Any) -> Image:
        data = uuid_mod.uuid4().bytes * 4
        fields_ = make_manifest(self.uuid(owner), data, **manifest)
        image: Image = await self.client.app[CATALOG].import_image(fields_, _chunks(data))
        return image

    async def send(
        self,
        method: str,
        path: str,
        *,
        login: str = "alice",
        body: Any = None,
        data: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """``path`` is sent exactly as given (already encoded), signed by ``login``."""
        out = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            out["Content-Type"] = content_type
        signed = self.signers[login].sign(method, path, out)
        resp = await self.client.request(method, URL(path, encoded=True), headers=signed, data=data)
        raw = await resp.read()
        return Reply(resp.status, json.loads(raw) if raw else None)

    async def update(
        self,
        image: str,
        body: Any = None,
        *,
        query: dict[str, str] | list[tuple[str, str]] | None = None,
        login: str = "alice",
        **kw: Any,
    ) -> Reply:
        """``POST /<login>/images/<id>?action=update[&query]`` with ``body`` as JSON."""
        extra = list(query.items()) if isinstance(query, dict) else list(query or [])
        pairs = [("action", "update"), *extra]
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
        path = f"/{login}/images/{image}?{qs}"
        return await self.send("POST", path, login=login, body=body, **kw)

    async def get(self, image: str, *, login: str = "alice", version: str | None = None) -> Reply:
        headers = {"Accept-Version": version} if version else None
        return await self.send("GET", f"/{login}/images/{image}", login=login, headers=headers)


@pytest.fixture
async def gw(tmp_path: Path, aiohttp_client: Any) -> Gateway:
    """Default plugins from the entry points (``update`` among them), no storage."""
    app = create_app(Settings(data_dir=tmp_path / "data", load_entrypoints=True))
    client = await aiohttp_client(app)
    accounts, signers = {}, {}
    for login in ("alice", "bob", "carol"):
        accounts[login], signers[login] = await add_caller(app, login)
    return Gateway(client, accounts, signers)


# --- Loading ---------------------------------------------------------------------------------


async def test_update_is_a_first_party_entry_point(gw: Gateway) -> None:
    found = {ep.name: ep.value for ep in entry_points(group=PROJECT_NAME)}
    assert found.get("update") == "plugins.actions.update"
    assert "update" in gw.client.app[ACTIONS]


# --- The field rules -------------------------------------------------------------------------

U1 = "5a1ce000-0000-4000-8000-000000000001"
U2 = "b0b00000-0000-4000-8000-000000000002"


def invalid(field: str, message: str) -> dict[str, Any]:
    """IMGAPI's answer for one bad field (images.js:1046-1049, errors.js:41-66)."""
    return {
        "code": "ValidationFailed",
        "message": f"invalid image data: {field}",
        "errors": [{"field": field, "code": "Invalid", "message": message}],
    }


def missing(field: str) -> dict[str, Any]:
    """A required field sent as null: deleted, then missing (imgmanifest.js:645-646, 668-669)."""
    return {
        "code": "ValidationFailed",
        "message": f"invalid image data: {field}",
        "errors": [{"field": field, "code": "MissingParameter"}],
    }


NAME_CHARS = (
    'image name has invalid characters (only alpha-numeric characters and " ", ".", "-", "_" '
    'and "/" are allowed)'
)
VERSION_CHARS = (
    'image version has invalid characters (only alpha-numeric characters and ".", "-", "_" and '
    '"/" are allowed)'
)

#: (body, field, what GetImage shows for it afterwards): accepted updates.
ACCEPTED: list[Any] = [
    # imgmanifest.js:32 NAME_RE = /^[A-Za-z0-9._/ -]+$/ (spaces and slashes too)
    pytest.param({"name": "my image/2 x_y-z.1"}, "name", "my image/2 x_y-z.1", id="name-charset"),
    # imgmanifest.js:33 VERSION_RE = /^[A-Za-z0-9._/+-]+$/ ("+" since OS-5798)
    pytest.param({"version": "1.0.0+b/7_a-b"}, "version", "1.0.0+b/7_a-b", id="version-plus"),
    # imgmanifest.js:688-701: any string up to the limit
    pytest.param({"description": "Ünïcode ✓"}, "description", "Ünïcode ✓", id="description"),
    # imgmanifest.js:703-727: an http: or https: URL
    pytest.param({"homepage": "https://example.com/x?y=1"}, "homepage", "https://example.com/x?y=1", id="homepage"),  # noqa: E501
    # imgmanifest.js:729-752: same rule for the EULA
    pytest.param({"eula": "http://example.com/eula"}, "eula", "http://example.com/eula", id="eula"),
    # imgmanifest.js:1202-1228: an array of lowercase UUIDs
    pytest.param({"acl": [U1, U2]}, "acl", [U1, U2], id="acl-array"),
    # images.js:1011-1012: a lone string becomes [string]
    pytest.param({"acl": U1}, "acl", [U1], id="acl-string"),
    # imgmanifest.js:1535-1575: any JSON object, nested values too
    pytest.param({"tags": {"a": "b", "n": 1, "t": True, "o": {"x": [1]}}}, "tags",
                 {"a": "b", "n": 1, "t": True, "o": {"x": [1]}}, id="tags-object"),
    # images.js:4146 `if (data.tags)`: {} is truthy, so the tags become {} (and show so)
    pytest.param({"tags": {}}, "tags", {}, id="tags-empty-object"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field", "shown"), ACCEPTED)
async def test_accepted_field(gw: Gateway, body: dict[str, Any], field: str, shown: Any) -> None:
    image = await gw.image(description="before", tags={"old": "tag"})
    reply = await gw.update(image.uuid, body)
    assert reply.status == 200, reply.body
    assert reply.body[field] == shown
    assert reply.body["id"] == image.uuid
    after = await gw.get(image.uuid)
    assert after.body == reply.body  # UpdateImage answers what GetImage shows (datasets.js:565)


#: (body, IMGAPI's exact 422 body): refused updates; nothing is stored.
REFUSED: list[Any] = [
    # imgmanifest.js:654-661: "" does not match NAME_RE (+ needs one character)
    pytest.param({"name": ""}, invalid("name", NAME_CHARS), id="name-empty"),
    pytest.param({"name": "bad!name"}, invalid("name", NAME_CHARS), id="name-charset"),
    # JavaScript's $ never matches before a final newline
    pytest.param({"name": "name\n"}, invalid("name", NAME_CHARS), id="name-newline"),
    # imgmanifest.js:647-653: length first (MAX_NAME_LENGTH = 1024, imgmanifest.js:40)
    pytest.param({"name": "n" * 1025}, invalid("name", "image name is too long, max 1024 characters"), id="name-long"),  # noqa: E501
    pytest.param({"name": "é" * 1025}, invalid("name", "image name is too long, max 1024 characters"), id="name-long-beats-charset"),  # noqa: E501
    # images.js:4169-4170 deletes a null field; imgmanifest.js:645-646 then has no message
    pytest.param({"name": None}, missing("name"), id="name-null"),
    # the gateway stores strings only (IMGAPI would coerce 5 through NAME_RE.test)
    pytest.param({"name": 5}, invalid("name", "image name must be a string"), id="name-number"),
    pytest.param({"version": "1.0 beta"}, invalid("version", VERSION_CHARS), id="version-space"),
    # imgmanifest.js:670-676 (MAX_VERSION_LENGTH = 512, imgmanifest.js:41)
    pytest.param({"version": "1" * 513}, invalid("version", "image version is too long, max 512 characters"), id="version-long"),  # noqa: E501
    pytest.param({"version": None}, missing("version"), id="version-null"),
    # imgmanifest.js:692-698 (MAX_DESCRIPTION_LENGTH = 10 * 1024, imgmanifest.js:42)
    pytest.param({"description": "d" * 10241}, invalid("description", "image description is too long, max 10240 characters"), id="description-long"),  # noqa: E501
    # imgmanifest.js:709-716: only http: and https:
    pytest.param({"homepage": "ftp://example.com"}, invalid("homepage", "invalid image homepage URL protocol"), id="homepage-ftp"),  # noqa: E501
    pytest.param({"homepage": "example.com"}, invalid("homepage", "invalid image homepage URL protocol"), id="homepage-no-scheme"),  # noqa: E501
    # "" is not null: it is stored and validated, and url.parse("").protocol is null
    pytest.param({"homepage": ""}, invalid("homepage", "invalid image homepage URL protocol"), id="homepage-empty"),  # noqa: E501
    # imgmanifest.js:717-723: the protocol first, then MAX_URL_LENGTH = 1024 (imgmanifest.js:39)
    pytest.param({"homepage": "https://e.com/" + "p" * 1011}, invalid("homepage", "image homepage URL is too long (max 1024 characters)"), id="homepage-long"),  # noqa: E501
    pytest.param({"eula": "file:///etc/eula"}, invalid("eula", "invalid image EULA URL protocol"), id="eula-file"),  # noqa: E501
    pytest.param({"eula": "http://e.com/" + "p" * 1012}, invalid("eula", "image EULA URL is too long (max 1024 characters)"), id="eula-long"),  # noqa: E501
    # imgmanifest.js:1207-1212: not an array (%s of the value)
    pytest.param({"acl": {"a": 1}}, invalid("acl", 'invalid image "acl" (not an array): [object Object]'), id="acl-object"),  # noqa: E501
    # imgmanifest.js:1214-1224: the first item that is not a UUID, then stop
    pytest.param({"acl": [U1, "bob", "x"]}, invalid("acl", 'invalid image "acl" (item 1 is not a UUID): bob'), id="acl-item"),  # noqa: E501
    # imgmanifest.js:30 UUID_RE is lowercase only
    pytest.param({"acl": [U1.upper()]}, invalid("acl", f'invalid image "acl" (item 0 is not a UUID): {U1.upper()}'), id="acl-uppercase"),  # noqa: E501
    # imgmanifest.js:1545-1551: an array is no tags object (%j of the value)
    pytest.param({"tags": ["a", 1]}, invalid("tags", 'invalid image "tags" (not an object): ["a",1]'), id="tags-array"),  # noqa: E501
    # a truthy scalar crashes IMGAPI (utils.js:223 assert.object); the validator's words here
    pytest.param({"tags": "role=db"}, invalid("tags", 'invalid image "tags" (not an object): "role=db"'), id="tags-string"),  # noqa: E501
    # imgmanifest.js:1552-1559: JSON.stringify(tags).length <= 100 * 1024 (imgmanifest.js:44)
    pytest.param({"tags": {"k": "v" * 102393}}, invalid("tags", 'image "tags" object is too big: 102401 characters (max 102400)'), id="tags-big"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), REFUSED)
async def test_refused_field(gw: Gateway, body: dict[str, Any], expected: dict[str, Any]) -> None:
    image = await gw.image(homepage="https://example.com/keep")
    before = await gw.get(image.uuid)
    reply = await gw.update(image.uuid, body)
    assert (reply.status, reply.body) == (422, expected)
    assert (await gw.get(image.uuid)).body == before.body


async def test_deep_nesting_is_refused_not_a_crash(gw: Gateway) -> None:
    """A hostile body nests as deep as the JSON parser allows. An acl item prints as JavaScript
    joins arrays (``String([[[]]])`` is ``""``); tags deeper than 64 levels are the gateway's
    own refusal (IMGAPI's limit is V8's stack)."""
    image = await gw.image()
    deep = json.loads("[" * 900 + "]" * 900)
    reply = await gw.update(image.uuid, {"acl": [deep]})
    assert (reply.status, reply.body) == (
        422,
        invalid("acl", 'invalid image "acl" (item 0 is not a UUID): '),
    )
    reply = await gw.update(image.uuid, {"tags": {"a": deep}})
    assert (reply.status, reply.body) == (
        422,
        invalid("tags", 'invalid image "tags": nested more than 64 levels deep'),
    )
    deep_but_fine = {"a": json.loads("[" * 63 + "]" * 63)}
    reply = await gw.update(image.uuid, {"tags": deep_but_fine})
    assert (reply.status, reply.body["tags"]) == (200, deep_but_fine)


async def test_every_bad_field_is_reported_in_imgapi_order(gw: Gateway) -> None:
    """Required fields first, then the optional ones in imgmanifest's ``fields`` order
    (imgmanifest.js:1666-1682); the message lists them (images.js:1046-1048)."""
    image = await gw.image()
    reply = await gw.update(
        image.uuid,
        {"tags": [], "acl": ["no"], "eula": "x", "version": "", "name": None, "homepage": "y"},
    )
    assert reply.status == 422
    assert reply.body["message"] == "invalid image data: name, version, homepage, eula, acl, tags"
    assert [(e["field"], e["code"]) for e in reply.body["errors"]] == [
        ("name", "MissingParameter"),
        ("version", "Invalid"),
        ("homepage", "Invalid"),
        ("eula", "Invalid"),
        ("acl", "Invalid"),
        ("tags", "Invalid"),
    ]


async def test_null_removes_optional_fields(gw: Gateway) -> None:
    """images.js:4169-4170 deletes a null field; serialize then leaves it out, and an acl that
    was deleted becomes [] (images.js:1008-1009), which is not shown either (images.js:210)."""
    image = await gw.image(
        description="d", homepage="https://e.com", eula="https://e.com/eula", acl=[U1]
    )
    reply = await gw.update(
        image.uuid, {"description": None, "homepage": None, "eula": None, "acl": None}
    )
    assert reply.status == 200, reply.body
    for field in ("description", "homepage", "eula", "acl"):
        assert field not in reply.body
    assert (await gw.get(image.uuid)).body == reply.body


async def test_empty_description_and_acl_are_not_shown(gw: Gateway) -> None:
    """``""`` and ``[]`` are stored by IMGAPI but ``serialize`` drops them (images.js:210-211)."""
    image = await gw.image(description="d", acl=[U1])
    reply = await gw.update(image.uuid, {"description": "", "acl": []})
    assert reply.status == 200, reply.body
    assert "description" not in reply.body and "acl" not in reply.body


@pytest.mark.parametrize("value", [None, "", 0, False], ids=["null", "empty", "zero", "false"])
async def test_falsy_tags_leave_the_tags_alone(gw: Gateway, value: Any) -> None:
    """images.js:4146 converts only a truthy ``tags`` into ``raw.tagsObj``, the object IMGAPI
    shows (images.js:137); a falsy one only touches the search array: the tags stay."""
    image = await gw.image(tags={"keep": "me"})
    reply = await gw.update(image.uuid, {"tags": value, "name": "renamed"})
    assert reply.status == 200, reply.body
    assert reply.body["tags"] == {"keep": "me"}
    assert reply.body["name"] == "renamed"


async def test_fields_cloudapi_does_not_pass_are_ignored(gw: Gateway) -> None:
    """datasets.js:543-556 copies only the seven fields; the rest never reach IMGAPI."""
    image = await gw.image()
    reply = await gw.update(
        image.uuid,
        {"name": "renamed", "public": True, "state": "disabled", "owner": gw.uuid("bob"),
         "os": "linux", "type": "zvol", "uuid": str(uuid_mod.uuid4()), "files": []},
    )  # fmt: skip
    assert reply.status == 200, reply.body
    shown = reply.body
    assert shown["name"] == "renamed"
    assert (shown["public"], shown["state"], shown["owner"]) == (False, "active", gw.uuid("alice"))
    assert (shown["os"], shown["type"], shown["id"]) == ("smartos", "zone-dataset", image.uuid)


@pytest.mark.parametrize(
    "body",
    [None, {}, {"public": True, "state": "disabled"}],
    ids=["no-body", "empty-object", "only-ignored-fields"],
)
async def test_no_fields_is_imgapis_no_parameters_error(gw: Gateway, body: Any) -> None:
    """CloudAPI sends ``{}`` then (datasets.js:552-558) and IMGAPI answers images.js:4078-4082,
    with ``errors: []`` in the body (errors.js:54-58)."""
    image = await gw.image()
    reply = await gw.update(image.uuid, body)
    assert (reply.status, reply.body) == (
        422,
        {
            "code": "ValidationFailed",
            "message": "invalid image update data: no parameters provided",
            "errors": [],
        },
    )
    assert (await gw.get(image.uuid)).body["public"] is False


# --- Who may update ----------------------------------------------------------------------------


async def test_owner_only_public_image(gw: Gateway) -> None:
    """A public image of alice is visible to bob, but IMGAPI's reqEnsureAccountIsImageOwner
    (images.js:4737-4751) refuses him: 422 NotImageOwner (errors.js:361-379)."""
    image = await gw.image(public=True)
    reply = await gw.update(image.uuid, {"name": "mine"}, login="bob")
    assert (reply.status, reply.body) == (
        422,
        {
            "code": "NotImageOwner",
            "message": NOT_OWNER.format(account=gw.uuid("bob"), image=image.uuid),
        },
    )
    assert (await gw.get(image.uuid)).body["name"] == "base64"


async def test_owner_only_shared_image_and_before_field_checks(gw: Gateway) -> None:
    """Shared with bob through the acl: visible, still not his. The owner check runs before
    apiUpdateImage (images.js:4909, 4915), so bad fields do not change the answer."""
    image = await gw.image(acl=[gw.uuid("bob")])
    reply = await gw.update(image.uuid, {"name": "bad!", "acl": []}, login="bob")
    assert reply.status == 422
    assert reply.body["code"] == "NotImageOwner"
    assert (await gw.get(image.uuid)).body["acl"] == [gw.uuid("bob")]


async def test_invisible_image_is_not_found(gw: Gateway) -> None:
    """A private image of alice does not exist for carol (IMGAPI reqGetImage: 404)."""
    image = await gw.image()
    reply = await gw.update(image.uuid, {"name": "x"}, login="carol")
    assert (reply.status, reply.body) == (
        404,
        {"code": "ResourceNotFound", "message": "image not found"},
    )


async def test_unknown_image(gw: Gateway) -> None:
    missing = str(uuid_mod.uuid4())
    reply = await gw.update(missing, {"name": "x"})
    assert (reply.status, reply.body) == (
        404,
        {"code": "ResourceNotFound", "message": "image not found"},
    )
    reply = await gw.update("not-a-uuid", {"name": "x"})
    assert (reply.status, reply.body["code"]) == (404, "ResourceNotFound")


async def test_my_resolves_to_the_caller(gw: Gateway) -> None:
    image = await gw.image()
    reply = await gw.send("POST", f"/my/images/{image.uuid}?action=update", body={"version": "2.0"})
    assert (reply.status, reply.body["version"]) == (200, "2.0")


# --- The clients' exact requests ---------------------------------------------------------------


async def test_triton_image_share_then_unshare(gw: Gateway) -> None:
    """``triton image share IMG ACCOUNT`` (tritonapi.js:875-905): GetImage, then
    ``POST /<login>/images/<id>?action=update`` with the JSON body ``{"acl": [...]}`` (the
    old acl plus the account; cloudapi2.js:1386-1411). ``unshare`` (tritonapi.js:919-952) sends
    the acl without it, ``[]`` for the last one."""
    alice, bob, carol = gw.uuid("alice"), gw.uuid("bob"), gw.uuid("carol")
    image = await gw.image()
    path = f"/alice/images/{image.uuid}?action=update"
    version = {"Accept-Version": TRITON_VERSION}

    got = await gw.get(image.uuid, version=TRITON_VERSION)
    assert "acl" not in got.body
    assert (await gw.get(image.uuid, login="bob")).status == 404
    shared = await gw.send("POST", path, body={"acl": [bob]}, headers=version)
    assert (shared.status, shared.body["acl"]) == (200, [bob])
    assert (await gw.get(image.uuid, login="bob")).status == 200  # the acl lets bob see it

    got = await gw.get(image.uuid, version=TRITON_VERSION)
    shared = await gw.send("POST", path, body={"acl": [*got.body["acl"], carol]}, headers=version)
    assert (shared.status, shared.body["acl"]) == (200, [bob, carol])

    unshared = await gw.send("POST", path, body={"acl": [carol]}, headers=version)
    assert (unshared.status, unshared.body["acl"]) == (200, [carol])
    assert (await gw.get(image.uuid, login="bob")).status == 404
    unshared = await gw.send("POST", path, body={"acl": []}, headers=version)
    assert unshared.status == 200 and "acl" not in unshared.body
    assert (await gw.get(image.uuid, login="carol")).status == 404
    assert (await gw.get(image.uuid)).body["owner"] == alice


async def test_triton_image_tag_replaces_the_tags(gw: Gateway) -> None:
    """``triton image tag IMG foo=bar n=42 ready=true``: the values are typed
    (metadataandtags.js ``_addMetadataFromKvStr``) and the JSON body ``{"tags": {...}}``
    replaces every tag ("Set new image tags, removes existing tags", do_tag.js)."""
    image = await gw.image(tags={"old": "gone"})
    reply = await gw.send(
        "POST",
        f"/alice/images/{image.uuid}?action=update",
        body={"tags": {"foo": "bar", "n": 42, "ready": True}},
        headers={"Accept-Version": TRITON_VERSION},
    )
    assert reply.status == 200, reply.body
    assert reply.body["tags"] == {"foo": "bar", "n": 42, "ready": True}
    assert (await gw.get(image.uuid)).body["tags"] == {"foo": "bar", "n": 42, "ready": True}


async def test_triton_image_update(gw: Gateway) -> None:
    """``triton image update IMG name=N version=V description=D``: a JSON body of strings
    (do_update.js, ``UPDATE_IMAGE_FIELDS`` in cloudapi2.js:1368-1376, acl left out)."""
    image = await gw.image()
    reply = await gw.send(
        "POST",
        f"/alice/images/{image.uuid}?action=update",
        body={"name": "web", "version": "2.1.0", "description": "A web image"},
        headers={"Accept-Version": TRITON_VERSION},
    )
    assert reply.status == 200, reply.body
    shown = {k: reply.body[k] for k in ("name", "version", "description")}
    assert shown == {"name": "web", "version": "2.1.0", "description": "A web image"}


async def test_sdc_updateimage_every_option(gw: Gateway) -> None:
    """``sdc-updateimage --name N --imageVersion V --description D --homepage H --eula E
    --acl U1 --acl U2 --tags '{"foo": "bar"}' IMG``: ``?action=update`` in the query and the
    options as a JSON body (lib/cloudapi.js:689-716, bin/sdc-updateimage: ``--acl`` is an
    Array, ``--tags`` is ``JSON.parse``d), ``Accept-Version: ~7.2``, and ``api-version`` too."""
    bob, carol = gw.uuid("bob"), gw.uuid("carol")
    image = await gw.image()
    body = {
        "name": "db",
        "version": "3.0",
        "description": "A database",
        "homepage": "https://example.com/db",
        "eula": "https://example.com/eula",
        "acl": [bob, carol],
        "tags": {"foo": "bar"},
    }
    reply = await gw.send(
        "POST",
        f"/alice/images/{image.uuid}?action=update",
        body=body,
        headers={"Accept-Version": SMARTDC_VERSION, "api-version": SMARTDC_VERSION},
    )
    assert reply.status == 200, reply.body
    assert {k: reply.body[k] for k in body} == body
    assert reply.body["type"] == "smartmachine"  # answered at 7.2.0, as GetImage is
    again = await gw.get(image.uuid, version=SMARTDC_VERSION)
    assert again.body == reply.body


async def test_sdc_updateimage_error_is_imgapis_body(gw: Gateway) -> None:
    """``sdc-updateimage`` prints ``error (<code>): <message>`` from the body; it is IMGAPI's."""
    image = await gw.image()
    reply = await gw.send(
        "POST",
        f"/alice/images/{image.uuid}?action=update",
        body={"homepage": "www.example.com"},
        headers={"Accept-Version": SMARTDC_VERSION},
    )
    assert (reply.status, reply.body) == (
        422,
        invalid("homepage", "invalid image homepage URL protocol"),
    )


async def test_fields_in_the_query_string(gw: Gateway) -> None:
    """restify maps query parameters into ``req.params`` as strings, ``acl=A&acl=B`` as an
    array (datasets.js:552-556 takes them from there); ``description=`` is ``""``."""
    bob, carol = gw.uuid("bob"), gw.uuid("carol")
    image = await gw.image(description="old")
    reply = await gw.update(
        image.uuid,
        query=[("name", "from query"), ("acl", bob), ("acl", carol), ("description", "")],
    )
    assert reply.status == 200, reply.body
    assert (reply.body["name"], reply.body["acl"]) == ("from query", [bob, carol])
    assert "description" not in reply.body
    one = await gw.update(image.uuid, query={"acl": carol})
    assert (one.status, one.body["acl"]) == (200, [carol])  # images.js:1011-1012


async def test_body_wins_over_the_query(gw: Gateway) -> None:
    image = await gw.image()
    reply = await gw.update(image.uuid, {"name": "from body"}, query={"name": "from query"})
    assert (reply.status, reply.body["name"]) == (200, "from body")


async def test_urlencoded_body(gw: Gateway) -> None:
    bob = gw.uuid("bob")
    image = await gw.image()
    reply = await gw.update(
        image.uuid,
        data=f"version=4.0&acl={bob}".encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert reply.status == 200, reply.body
    assert (reply.body["version"], reply.body["acl"]) == ("4.0", [bob])


async def test_answer_follows_the_api_version(gw: Gateway) -> None:
    """datasets.js:565 ``translate``: below 7.1.0 no owner/acl/state; below 8.0.0 old types."""
    image = await gw.image()
    reply = await gw.update(image.uuid, {"name": "v7"}, headers={"Accept-Version": "~7.0"})
    assert reply.status == 200, reply.body
    assert reply.body["name"] == "v7" and reply.body["type"] == "smartmachine"
    assert "owner" not in reply.body and "state" not in reply.body
    reply = await gw.update(image.uuid, {"name": "v9"}, headers={"Accept-Version": "~9"})
    assert (reply.body["type"], reply.body["owner"]) == ("zone-dataset", gw.uuid("alice"))


# --- Catalogs --------------------------------------------------------------------------------


class ReadOnlyCatalog:
    """An ``ImageCatalog`` without ``update_image``: UpdateImage cannot be offered."""

    def __init__(self, image_id: str) -> None:
        self.uuid, self.owner = image_id, ""

    @property
    def image(self) -> Image:
        return Image({"uuid": self.uuid, "owner": self.owner, "name": "ro", "version": "1",
                      "state": "active", "type": "zone-dataset", "os": "smartos"}, ())  # fmt: skip

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_images(self) -> list[Image]:
        return [self.image]

    async def get_image(self, uuid: str) -> Image | None:
        return self.image if uuid == self.image.uuid else None

    async def delete_image(self, uuid: str) -> bool:
        return False

    async def import_image(self, manifest: Any, body: Any) -> Image:
        raise NotImplementedError

    async def open_file(self, uuid: str, index: int = 0) -> Any:
        yield b""


async def test_a_catalog_that_cannot_change_images_is_501(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    image_id = str(uuid_mod.uuid4())
    catalog = ReadOnlyCatalog(image_id)

    class Factory:
        name = "read-only"

        def create(self, config: Any, settings: Any) -> ReadOnlyCatalog:
            return catalog

    class Plugin:
        @hookimpl
        def gateway_register_image_catalogs(self) -> list[Any]:
            return [Factory()]

    settings = Settings(data_dir=tmp_path / "data", catalog={"kind": "read-only"})
    app = create_app(settings, plugins=(Plugin(),))
    client = await aiohttp_client(app)
    account, signer = await add_caller(app, "alice")
    catalog.owner = account.uuid
    gw = Gateway(client, {"alice": account}, {"alice": signer})
    reply = await gw.update(image_id, {"name": "x"})
    assert (reply.status, reply.body["code"]) == (501, "NotImplemented")
    assert "cannot change images" in reply.body["message"]


async def test_a_catalog_refusal_is_validation_failed(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog stricter than IMGAPI refuses with ``InvalidManifest``: the caller gets the
    ValidationFailed shape of IMGAPI's revalidation (images.js:4175-4181) with its errors."""
    image = await gw.image()
    error = {"field": "name", "code": "Invalid", "message": 'invalid "name": too long here'}

    async def refuse(uuid: str, changes: Any) -> Image:
        raise InvalidManifest("invalid image manifest: name", [error])

    monkeypatch.setattr(gw.client.app[CATALOG], "update_image", refuse)
    reply = await gw.update(image.uuid, {"name": "fine"})
    assert (reply.status, reply.body) == (
        422,
        {"code": "ValidationFailed", "message": "invalid image data: name", "errors": [error]},
    )


async def test_image_deleted_meanwhile_is_not_found(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = await gw.image()

    async def gone(uuid: str, changes: Any) -> Image:
        raise ImageNotFound(uuid)

    monkeypatch.setattr(gw.client.app[CATALOG], "update_image", gone)
    reply = await gw.update(image.uuid, {"name": "x"})
    assert (reply.status, reply.body["code"]) == (404, "ResourceNotFound")


async def test_only_the_given_fields_reach_the_catalog(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two updates of different fields never undo each other: only given fields are sent."""
    image = await gw.image()
    catalog = gw.client.app[CATALOG]
    seen: list[dict[str, Any]] = []
    real = catalog.update_image

    async def spy(uuid: str, changes: Any) -> Image:
        seen.append(dict(changes))
        result: Image = await real(uuid, changes)
        return result

    monkeypatch.setattr(catalog, "update_image", spy)
    await gw.update(image.uuid, {"tags": None, "name": "n", "public": True, "acl": []})
    assert seen == [{"name": "n", "acl": None}]
    seen.clear()
    reply = await gw.update(image.uuid, {"tags": ""})  # nothing IMGAPI would change
    assert reply.status == 200 and seen == []


# --- The pure rules at their limits (plugins/actions/update/fields.py) -------------------------


@pytest.mark.parametrize(
    ("check", "ok", "too_long"),
    [
        (fields.check_name, "n" * 1024, "n" * 1025),  # imgmanifest.js:40
        (fields.check_version, "1" * 512, "1" * 513),  # imgmanifest.js:41
        (fields.check_description, "d" * 10240, "d" * 10241),  # imgmanifest.js:42
        (fields.check_homepage, "http://" + "h" * 1017, "http://" + "h" * 1018),  # :39
        (fields.check_eula, "https://" + "e" * 1016, "https://" + "e" * 1017),  # :39
    ],
    ids=["name", "version", "description", "homepage", "eula"],
)
def test_length_limits(check: Any, ok: str, too_long: str) -> None:
    assert check(ok) is None
    error = check(too_long)
    assert error is not None and "too long" in error["message"]


def test_lengths_are_utf16_code_units() -> None:
    """JavaScript's ``length``: an astral character counts two (descriptions are free text)."""
    assert fields.js_length("a😀") == 3
    assert fields.check_description("😀" * 5120) is None
    assert fields.check_description("😀" * 5120 + "x") is not None


@pytest.mark.parametrize(
    ("url", "protocol"),
    [
        ("http://a", "http:"),
        ("HTTPS://a", "https:"),
        ("  http://a", "http:"),  # url.parse trims first
        ("http:a", "http:"),  # a protocol without slashes is still one
        ("ftp://a", "ftp:"),
        ("//a/b", None),
        ("", None),
    ],
)
def test_url_protocol_is_nodes(url: str, protocol: str | None) -> None:
    assert fields.url_protocol(url) == protocol


def test_tags_size_limit_is_the_compact_json() -> None:
    """imgmanifest.js:1552: ``JSON.stringify(tags).length``; integral floats print as ints."""
    at_limit = {"k": "v" * (102400 - len('{"k":""}'))}
    assert fields.check_tags(at_limit) is None
    assert fields.check_tags({**at_limit, "k": at_limit["k"] + "v"}) is not None
    assert fields.js_json({"n": 1.0, "m": 1.5, "s": "é"}) == '{"n":1,"m":1.5,"s":"é"}'
