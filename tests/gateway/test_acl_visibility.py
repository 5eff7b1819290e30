"""Who sees an image: its owner, an account in its ``acl``, and a stranger, over HTTP.

The rules are IMGAPI's, which CloudAPI asks with ``?account=<caller>`` (sdc-imgapi 15467c4a,
``lib/images.js``):

- GetImage and every ``/images/:uuid`` route, ``reqGetImage`` (4655-4729): the owner sees
  every image of theirs; nobody else sees an unactivated one; an activated image is seen by
  everyone when it is public (disabled or not), and by the accounts in its ``acl`` otherwise.
- ListImages, ``apiListImages`` (1351-1592): the caller's own images in the asked state, plus,
  only when the query can match activated enabled images (``state`` absent, ``active`` or
  ``all``), others' activated images that are public or list the caller in their ``acl``.
- ExportImage, ``reqEnsureAccountIsImageOwner`` (4737-4751) on the UpdateImage route: seeing
  an image is not owning it, so a shared account gets ``422 NotImageOwner``.

The gateway runs on the fake Manta so the owner's export really happens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from gateway.catalog import Image
from tests.support.export_env import Answer, ExportEnv, make_env
from tests.support.helpers import add_caller
from tests.support.storage_targets import open_target

LOGINS = ("bob", "alice", "carol")  # owner, shared with, stranger


@pytest.fixture
async def env(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[ExportEnv]:
    async with open_target("manta-memory", tmp_path / "target") as harness:
        gateway = await make_env(aiohttp_client, harness, tmp_path / "gateway")
        _, gateway.signers["carol"] = await add_caller(gateway.app, "carol")
        yield gateway


async def call(env: ExportEnv, login: str, path: str) -> Answer:
    signed = env.signers[login].sign("GET", path, {"Accept": "application/json"})
    response = await env.client.request("GET", URL(path, encoded=True), headers=signed)
    raw = await response.read()
    return Answer(response.status, json.loads(raw) if raw else None, raw)


async def listed(env: ExportEnv, login: str, query: str = "") -> list[str]:
    answer = await call(env, login, f"/{login}/images" + (f"?{query}" if query else ""))
    assert answer.status == 200, answer.body
    return [image["id"] for image in answer.body]


async def images(env: ExportEnv) -> dict[str, Image]:
    """bob's images in every visibility case, by name."""
    shared = [env.alice.uuid]
    specs: dict[str, dict[str, Any]] = {
        "private": {},
        "shared": {"acl": shared},
        "shared-disabled": {"acl": shared, "state": "disabled", "disabled": True},
        "shared-unactivated": {"acl": shared, "state": "unactivated"},
        "public": {"public": True},
        "public-disabled": {"public": True, "state": "disabled", "disabled": True},
        "public-unactivated": {"public": True, "state": "unactivated"},
        "public-shared": {"public": True, "acl": shared},
    }
    out = {}
    for name, fields in specs.items():
        out[name] = await env.image(name.encode(), name=name, **fields)
    return out


#: name -> (owner sees it, alice sees it, carol sees it), as reqGetImage decides.
GET_VISIBLE = {
    "private": (True, False, False),
    "shared": (True, True, False),
    "shared-disabled": (True, True, False),  # activated, alice in the acl
    "shared-unactivated": (True, False, False),  # "cannot see others' unactivated images"
    "public": (True, True, True),
    "public-disabled": (True, True, True),  # "Public activated image (might currently be disabled)"
    "public-unactivated": (True, False, False),
    "public-shared": (True, True, True),
}


# --- GetImage -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GET_VISIBLE))
async def test_get_image(env: ExportEnv, name: str) -> None:
    image = (await images(env))[name]
    for login, visible in zip(LOGINS, GET_VISIBLE[name], strict=True):
        answer = await call(env, login, f"/{login}/images/{image.uuid}")
        if visible:
            assert answer.status == 200 and answer.body["id"] == image.uuid, (login, answer)
        else:
            assert answer.status == 404, (login, answer)
            assert answer.body == {"code": "ResourceNotFound", "message": "image not found"}


# --- ListImages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "query", "expected"),
    [
        # Default state=active: own active images, others' activated enabled public/shared ones.
        ("bob", "", {"private", "shared", "public", "public-shared"}),
        ("alice", "", {"shared", "public", "public-shared"}),
        ("carol", "", {"public", "public-shared"}),
        # state=all: disabled ones too; never others' unactivated ones.
        ("alice", "state=all", {"shared", "shared-disabled", "public", "public-disabled",
                                "public-shared"}),
        ("carol", "state=all", {"public", "public-disabled", "public-shared"}),
        # state=disabled / unactivated: only your own (apiListImages adds others' images only
        # when `activated !== false && disabled !== true`).
        ("bob", "state=disabled", {"shared-disabled", "public-disabled"}),
        ("alice", "state=disabled", set()),
        ("bob", "state=unactivated", {"shared-unactivated", "public-unactivated"}),
        ("alice", "state=unactivated", set()),
        # public=false keeps the acl branch only; public=true drops it.
        ("alice", "public=false", {"shared"}),
        ("alice", "public=true", {"public", "public-shared"}),
        ("carol", "public=false", set()),
    ],
)  # fmt: skip
async def test_list_images(env: ExportEnv, login: str, query: str, expected: set[str]) -> None:
    by_uuid = {image.uuid: name for name, image in (await images(env)).items()}
    assert {by_uuid[u] for u in await listed(env, login, query)} == expected


async def test_list_with_owner(env: ExportEnv) -> None:
    # `owner` and `account` both given (apiListImages 1533-1592): owner == account lists your
    # own images; another owner lists theirs that are public or shared with you.
    made = await images(env)
    by_uuid = {image.uuid: name for name, image in made.items()}
    bob = env.bob.uuid
    own = await listed(env, "bob", f"owner={bob}&state=all")
    assert {by_uuid[u] for u in own} == set(made)
    assert {by_uuid[u] for u in await listed(env, "alice", f"owner={bob}")} == {
        "shared",
        "public",
        "public-shared",
    }
    assert {by_uuid[u] for u in await listed(env, "alice", f"owner={bob}&public=false")} == {
        "shared"
    }
    assert await listed(env, "alice", f"owner={env.alice.uuid}") == []


@pytest.mark.parametrize("login", LOGINS)
async def test_list_state_all_agrees_with_get_image(env: ExportEnv, login: str) -> None:
    # For state=all, apiListImages' three filters select exactly what reqGetImage admits.
    made = await images(env)
    seen = set(await listed(env, login, "state=all"))
    column = LOGINS.index(login)
    assert {n for n, i in made.items() if i.uuid in seen} == {
        n for n, flags in GET_VISIBLE.items() if flags[column]
    }


# --- ExportImage ----------------------------------------------------------------------------


async def test_export_needs_ownership_not_visibility(env: ExportEnv) -> None:
    made = await images(env)
    image = made["shared"]
    owner = await env.export(image.uuid, env.path("shared-export"))
    assert owner.status == 200, owner.body
    assert await env.exists(env.path("shared-export.imgmanifest"))

    # Shared with alice: visible, but not hers (reqEnsureAccountIsImageOwner, 4746-4748).
    alice = await env.export(image.uuid, "/alice/stor/x", login="alice")
    assert alice.status == 422
    assert alice.body == {
        "code": "NotImageOwner",
        "message": f"account {env.alice.uuid} is not the owner of image {image.uuid}",
    }
    # A stranger does not see it at all (reqGetImage, 4698-4705).
    carol = await env.export(image.uuid, "/carol/stor/x", login="carol")
    assert carol.status == 404 and carol.body["code"] == "ResourceNotFound"


@pytest.mark.parametrize(
    ("name", "login", "status", "code"),
    [
        ("public", "carol", 422, "NotImageOwner"),  # visible to all, owned by bob
        ("public-shared", "alice", 422, "NotImageOwner"),
        ("shared-disabled", "alice", 422, "NotImageOwner"),
        ("shared-unactivated", "alice", 404, "ResourceNotFound"),  # invisible to her
        ("private", "alice", 404, "ResourceNotFound"),
    ],
)
async def test_export_by_others(
    env: ExportEnv, name: str, login: str, status: int, code: str
) -> None:
    image = (await images(env))[name]
    answer = await env.export(image.uuid, f"/{login}/stor/x", login=login)
    assert (answer.status, answer.body["code"]) == (status, code)
