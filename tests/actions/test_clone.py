"""CloneImage (``POST /:login/images/:id?action=clone``) over HTTP, through the real app.

Every refusal cites the line of sdc-imgapi ``lib/images.js`` (``apiCloneImage``, 15467c4a) or
sdc-cloudapi ``lib/datasets.js`` (``cloneImage``, 10c39636) whose behaviour it checks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from gateway import PROJECT_NAME, hookimpl
from gateway.catalog import EditableCatalog, Image, ImageCatalog, ImageFile
from gateway.errors import NotImplementedByGateway
from gateway.server.appkeys import ACTIONS, CATALOG
from gateway.settings import Settings
from plugins.actions.clone.action import OPERATOR_OWNER, check_cloneable
from plugins.catalog.embedded import EmbeddedCatalogFactory
from tests.support.export_env import Answer, ExportEnv, make_env
from tests.support.helpers import _chunks, make_manifest
from tests.support.storage_targets import open_target

DATA = bytes(range(256)) * 4099  # just over 1 MiB: two chunks through open_file


async def call(
    env: ExportEnv,
    login: str,
    method: str,
    path: str,
    *,
    version: str | None = None,
) -> Answer:
    """A signed request as ``login``; ``path`` is sent as it is."""
    headers = {"Accept": "application/json"}
    if version:
        headers["Accept-Version"] = version
    signed = env.signers[login].sign(method, path, headers)
    response = await env.client.request(method, URL(path, encoded=True), headers=signed)
    raw = await response.read()
    return Answer(response.status, json.loads(raw) if raw else None, raw)


async def clone(env: ExportEnv, uuid: str, login: str = "alice", **kw: Any) -> Answer:
    return await env.post(uuid, query={"action": "clone"}, login=login, **kw)


async def file_bytes(env: ExportEnv, uuid: str) -> bytes:
    """The image's file as the catalog streams it (``open_file``)."""
    return b"".join([chunk async for chunk in env.app[CATALOG].open_file(uuid)])


async def shared(env: ExportEnv, data: bytes = DATA, **manifest: Any) -> Image:
    """An image of bob's shared with alice."""
    manifest.setdefault("acl", [env.alice.uuid])
    return await env.image(data, **manifest)


async def import_as(env: ExportEnv, owner: str, data: bytes, **manifest: Any) -> Image:
    image: Image = await env.app[CATALOG].import_image(
        make_manifest(owner, data, **manifest), _chunks(data)
    )
    return image


async def uuids(env: ExportEnv) -> set[str]:
    return {image.uuid for image in await env.app[CATALOG].list_images()}


# --- registration -------------------------------------------------------------------------


def test_the_entry_point_registers_the_plugin(env: ExportEnv) -> None:
    (ep,) = [ep for ep in entry_points(group=PROJECT_NAME) if ep.name == "clone"]
    assert ep.value == "plugins.actions.clone"
    assert env.app[ACTIONS]["clone"].name == "clone"


# --- success ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["query", "body"])
async def test_clone_makes_the_callers_own_copy(env: ExportEnv, style: str) -> None:
    original = await shared(
        env, description="shared", tags={"role": "db"}, homepage="https://example.com/i"
    )
    before = dict(original.manifest)
    if style == "query":
        answer = await clone(env, original.uuid)
    else:
        answer = await env.post(original.uuid, body={"action": "clone"}, login="alice")
    assert answer.status == 200, answer.body
    body = answer.body
    new = body["id"]
    assert new != original.uuid

    # CloudAPI answers translate(req, img) (lib/datasets.js:673): what GetImage answers.
    assert body == (await call(env, "alice", "GET", f"/alice/images/{new}")).body

    made = await env.app[CATALOG].get_image(new)
    assert made is not None
    m = made.manifest
    # lib/images.js:4521-4525: acl, uuid and published_at dropped, the caller owns it.
    assert m["owner"] == env.alice.uuid and "acl" not in m
    assert m["published_at"] != before["published_at"] and m["published_at"].endswith("Z")
    # :407-425 activate(): state from disabled; everything else as it was (:1086-1098).
    assert (m["state"], m["disabled"], m["public"]) == ("active", False, False)
    unchanged = {"uuid", "owner", "acl", "published_at"}
    assert {k: v for k, v in m.items() if k not in unchanged} == {
        k: v for k, v in before.items() if k not in unchanged
    }
    assert list(m) == [k for k in before if k != "acl"]  # IMGAPI's key order
    assert made.files == original.files  # same sha1, size, compression and MD5

    # The bytes: equal through the catalog, and the same file on disk (a hard link).
    assert await file_bytes(env, new) == DATA
    assert env.catalog_file(made).stat().st_ino == env.catalog_file(original).stat().st_ino

    # The original is untouched, and its owner still sees it as before.
    assert (await env.app[CATALOG].get_image(original.uuid)).manifest == before
    assert await file_bytes(env, original.uuid) == DATA


async def test_the_clone_is_listed_for_its_owner_only(env: ExportEnv) -> None:
    original = await shared(env)
    new = (await clone(env, original.uuid)).body["id"]
    listed = await call(env, "alice", "GET", "/alice/images")
    assert new in [i["id"] for i in listed.body]
    for login in ("bob", "carol"):
        assert (await call(env, login, "GET", f"/{login}/images/{new}")).status == 404


async def test_the_clone_survives_the_deletion_of_the_original(env: ExportEnv) -> None:
    original = await shared(env)
    new = (await clone(env, original.uuid)).body["id"]
    assert (await call(env, "bob", "DELETE", f"/bob/images/{original.uuid}")).status == 204
    assert await env.app[CATALOG].get_image(original.uuid) is None
    assert (await call(env, "alice", "GET", f"/alice/images/{new}")).status == 200
    assert await file_bytes(env, new) == DATA


async def test_the_original_survives_the_deletion_of_the_clone(env: ExportEnv) -> None:
    original = await shared(env)
    new = (await clone(env, original.uuid)).body["id"]
    assert (await call(env, "alice", "DELETE", f"/alice/images/{new}")).status == 204
    assert await env.app[CATALOG].get_image(new) is None
    assert (await call(env, "bob", "GET", f"/bob/images/{original.uuid}")).status == 200
    assert await file_bytes(env, original.uuid) == DATA
    assert env.catalog_file(original).stat().st_nlink == 1


async def test_a_public_image_shared_with_the_caller_clones_public(env: ExportEnv) -> None:
    # Image.create keeps `public: data.public || false` (lib/images.js:1093); the CloudAPI docs'
    # example answer is public too.
    original = await shared(env, public=True)
    answer = await clone(env, original.uuid)
    assert answer.status == 200
    assert answer.body["public"] is True and "acl" not in answer.body


async def test_a_disabled_image_clones_disabled(env: ExportEnv) -> None:
    # Only `activated` is checked (:4428); disabled is carried (:1094), and activate() derives
    # the state from it (:425).
    original = await shared(env, state="disabled", disabled=True)
    answer = await clone(env, original.uuid)
    assert answer.status == 200
    assert answer.body["state"] == "disabled"


async def test_clone_has_no_version_check(env: ExportEnv) -> None:
    # lib/datasets.js:650-677 checks no version; the answer is rendered at the request's.
    original = await shared(env)
    path = f"/alice/images/{original.uuid}?action=clone"
    headers = env.signers["alice"].sign("POST", path, {"Accept-Version": "7.0.0"})
    response = await env.client.request("POST", URL(path, encoded=True), headers=headers)
    body = await response.json()
    assert response.status == 200
    assert body["type"] == "smartmachine" and "owner" not in body


# --- the origin chain (lib/images.js:4454-4545) -------------------------------------------


async def test_an_incremental_image_clones_its_origins_disabled(env: ExportEnv) -> None:
    base = await env.image(b"base", name="base")
    middle = await env.image(b"middle", name="middle", origin=base.uuid)
    top = await shared(env, b"top", name="top", origin=middle.uuid)
    before = await uuids(env)
    answer = await clone(env, top.uuid)
    assert answer.status == 200
    made = {u: await env.app[CATALOG].get_image(u) for u in await uuids(env) - before}
    assert len(made) == 3
    new_top = made[answer.body["id"]]
    new_middle = made[new_top.manifest["origin"]]
    new_base = made[new_middle.manifest["origin"]]
    assert [i.name for i in (new_base, new_middle, new_top)] == ["base", "middle", "top"]
    assert "origin" not in new_base.manifest
    # Intermediate clones are disabled, "so they are not shown as provisionable" (:4529-4535).
    for image in (new_base, new_middle):
        assert (image.manifest["state"], image.manifest["disabled"]) == ("disabled", True)
    assert new_top.manifest["state"] == "active"
    assert {i.owner for i in made.values()} == {env.alice.uuid}
    for image, source in ((new_base, b"base"), (new_middle, b"middle"), (new_top, b"top")):
        assert await file_bytes(env, image.uuid) == source


async def test_the_chain_stops_at_an_operator_image(env: ExportEnv) -> None:
    # :4474-4480: an image owned by UNSET_OWNER_UUID is not cloned; the clone keeps it as origin.
    operator = await import_as(env, OPERATOR_OWNER, b"os", public=True)
    top = await shared(env, b"top", origin=operator.uuid)
    before = await uuids(env)
    answer = await clone(env, top.uuid)
    assert answer.status == 200
    assert await uuids(env) - before == {answer.body["id"]}
    assert answer.body["origin"] == operator.uuid


async def test_a_missing_origin_is_not_found(env: ExportEnv) -> None:
    # Image.get of the origin fails with lib/database.js:324's 404 "image <uuid> not found".
    gone = "0dd00000-0000-4000-8000-000000000000"
    top = await shared(env, origin=gone)
    before = await uuids(env)
    answer = await clone(env, top.uuid)
    assert answer.status == 404
    assert answer.body == {"code": "ResourceNotFound", "message": f"image {gone} not found"}
    assert await uuids(env) == before


async def test_a_failed_chain_leaves_no_clone_behind(
    env: ExportEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # :4566-4592: on failure the images cloned so far are deleted.
    base = await env.image(b"base")
    top = await shared(env, b"top", origin=base.uuid)
    catalog = env.app[CATALOG]
    real = catalog.clone_image
    calls: list[str] = []

    async def second_fails(uuid: str, **kw: Any) -> Image:
        calls.append(uuid)
        if len(calls) == 2:
            raise OSError("disk full")
        result: Image = await real(uuid, **kw)
        return result

    monkeypatch.setattr(catalog, "clone_image", second_fails)
    before = await uuids(env)
    files_before = sorted(p.name for p in catalog.root.iterdir())
    answer = await clone(env, top.uuid)
    assert answer.status == 500 and answer.body["code"] == "InternalError"
    assert calls == [base.uuid, top.uuid]
    assert await uuids(env) == before
    assert sorted(p.name for p in catalog.root.iterdir()) == files_before


# --- refusals -------------------------------------------------------------------------------


async def test_a_stranger_gets_not_found(env: ExportEnv) -> None:
    # reqGetImage (lib/images.js:4698-4705): a private image not shared with you is a 404.
    original = await shared(env)
    answer = await clone(env, original.uuid, login="carol")
    assert answer.status == 404
    assert answer.body == {"code": "ResourceNotFound", "message": "image not found"}


async def test_the_owner_cannot_clone_an_image_not_shared_with_them(env: ExportEnv) -> None:
    # The CloneImage route has no owner check (lib/images.js:4974-4980); apiCloneImage only
    # asks for the caller in the acl (:4434-4437), so the owner is refused with ImageNotShared.
    # IMGAPI swaps the two arguments of the message (lib/errors.js:386); kept as it is sent.
    original = await shared(env)
    before = await uuids(env)
    answer = await clone(env, original.uuid, login="bob")
    assert answer.status == 422
    assert answer.body == {
        "code": "ImageNotShared",
        "message": f"Image {env.bob.uuid} is not shared with account {original.uuid}",
    }
    assert await uuids(env) == before


async def test_the_owner_in_their_own_acl_may_clone(env: ExportEnv) -> None:
    original = await shared(env, acl=[env.bob.uuid])
    answer = await clone(env, original.uuid, login="bob")
    assert answer.status == 200 and answer.body["owner"] == env.bob.uuid


async def test_a_public_image_not_shared_is_refused(env: ExportEnv) -> None:
    # Visible (public, :4692-4694), but not in the acl (:4434-4437).
    original = await env.image(DATA, public=True)
    carol = (await call(env, "carol", "GET", f"/carol/images/{original.uuid}")).body
    assert carol["id"] == original.uuid
    answer = await clone(env, original.uuid, login="carol")
    assert answer.status == 422 and answer.body["code"] == "ImageNotShared"


async def test_an_unactivated_image_is_refused(env: ExportEnv) -> None:
    # :4428-4432 ValidationFailed "image is not active" (only its owner can see it at all).
    original = await shared(env, state="unactivated", acl=[env.bob.uuid, env.alice.uuid])
    answer = await clone(env, original.uuid, login="bob")
    assert answer.status == 422
    assert answer.body == {
        "code": "ValidationFailed",
        "message": "image is not active",
        "errors": [{"field": "active", "code": "Invalid"}],
    }
    # Shared with alice, but not activated: invisible to her (reqGetImage :4687-4691).
    assert (await clone(env, original.uuid)).status == 404


async def test_a_docker_image_is_refused(env: ExportEnv) -> None:
    # :4439-4444.
    original = await shared(env, type="docker", os="linux")
    answer = await clone(env, original.uuid)
    assert answer.status == 422
    assert answer.body == {
        "code": "ValidationFailed",
        "message": "docker images cannot be cloned",
        "errors": [{"field": "type", "code": "Invalid"}],
    }


async def test_an_image_with_an_urn_is_refused(env: ExportEnv) -> None:
    # serialize() keeps urn (:215) but Image.create takes it only on import (:1179-1182), so
    # it is an extra parameter (:1200-1210).
    original = await shared(env, urn="sdc:bob:base:1.0.0")
    before = await uuids(env)
    answer = await clone(env, original.uuid)
    assert answer.status == 422
    assert answer.body == {
        "code": "InvalidParameter",
        "message": 'invalid extra parameters: "urn"',
        "errors": [{"field": "urn", "code": "Invalid"}],
    }
    assert await uuids(env) == before


def test_several_files_are_not_implemented() -> None:
    # :4446-4450 400 NotImplemented. The embedded catalog stores one file per image, so this
    # rule is checked on an Image made here.
    owner = "b0b00000-0000-4000-8000-000000000002"
    one = ImageFile(sha1="0" * 40, size=1, compression="none", content_md5="")
    uuid = "a0000000-0000-4000-8000-000000000000"
    manifest = {"uuid": uuid, "owner": owner, "state": "active", "acl": [owner], "type": "lxd"}
    image = Image(manifest=manifest, files=(one, one))
    with pytest.raises(NotImplementedByGateway) as info:
        check_cloneable(image, owner)
    assert (info.value.status, info.value.code) == (400, "NotImplemented")
    assert info.value.message == "cannot clone images with multiple files"


# --- a catalog that cannot clone ----------------------------------------------------------


class ReadOnlyCatalog:
    """An ``ImageCatalog`` without ``update_image``/``clone_image`` (the embedded one inside)."""

    def __init__(self, inner: ImageCatalog) -> None:
        self.inner = inner

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def list_images(self) -> list[Image]:
        return await self.inner.list_images()

    async def get_image(self, uuid: str) -> Image | None:
        return await self.inner.get_image(uuid)

    async def delete_image(self, uuid: str) -> bool:
        return await self.inner.delete_image(uuid)

    async def import_image(self, manifest: Mapping[str, Any], body: AsyncIterator[bytes]) -> Image:
        return await self.inner.import_image(manifest, body)

    def open_file(self, uuid: str, index: int = 0) -> AsyncIterator[bytes]:
        return self.inner.open_file(uuid, index)


class ReadOnlyFactory:
    name = "read-only"

    def create(self, config: Mapping[str, Any], settings: Settings) -> ReadOnlyCatalog:
        return ReadOnlyCatalog(EmbeddedCatalogFactory().create({}, settings))


class ReadOnlyPlugin:
    @hookimpl
    def gateway_register_image_catalogs(self) -> list[Any]:
        return [ReadOnlyFactory()]


async def test_a_catalog_that_cannot_clone_answers_501(tmp_path: Path, aiohttp_client: Any) -> None:
    async with open_target("manta-memory", tmp_path / "target") as harness:
        env = await make_env(
            aiohttp_client,
            harness,
            tmp_path / "gateway",
            plugins=(ReadOnlyPlugin(),),
            catalog={"kind": "read-only"},
        )
        assert not isinstance(env.app[CATALOG], EditableCatalog)
        original = await shared(env)
        answer = await clone(env, original.uuid)
        assert answer.status == 501
        assert answer.body["code"] == "NotImplemented"
        assert len(await env.app[CATALOG].list_images()) == 1
