"""ListImages, GetImage, HEAD and DeleteImage over HTTP, through the real ``create_app``.

Requests are signed with Ed25519 keys generated here and registered in the real account
store; images are imported into the real embedded catalog.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.catalog import ImageCatalog
from gateway.httpsig import RequestSigner, ssh_public_key_line
from gateway.server.accounts import AccountStore
from gateway.server.app import create_app
from gateway.server.appkeys import CATALOG
from gateway.settings import Settings

ALICE, BOB, CAROL = (
    "5a1ce000-0000-4000-8000-000000000001",
    "b0b00000-0000-4000-8000-000000000002",
    "ca201000-0000-4000-8000-000000000003",
)
PUB = "a0000000-0000-4000-8000-00000000000a"  # alice: public, active, zone-dataset
PRIV = "b0000000-0000-4000-8000-00000000000b"  # alice: private zvol shared with bob
UNACT = "c0000000-0000-4000-8000-00000000000c"  # alice: public but never activated
DISABLED = "d0000000-0000-4000-8000-00000000000d"  # alice: public, activated, disabled
DOCKER = "e0000000-0000-4000-8000-00000000000e"  # alice: public docker layer
CAROLS = "f0000000-0000-4000-8000-00000000000f"  # carol: private, no acl
CHILD = "0c000000-0000-4000-8000-0000000000c0"  # carol: incremental on CAROLS


def manifest(uuid: str, owner: str, data: bytes, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "v": 2,
        "uuid": uuid,
        "owner": owner,
        "name": "base-64",
        "version": "1.0.0",
        "type": "zone-dataset",
        "os": "smartos",
        "files": [
            {"sha1": hashlib.sha1(data).hexdigest(), "size": len(data), "compression": "gzip"}
        ],
    }
    m.update(extra)
    return m


IMAGES: list[tuple[str, str, dict[str, Any]]] = [
    (
        PRIV,
        ALICE,
        {
            "type": "zvol", "os": "linux", "name": "ubuntu", "version": "22.04",
            "nic_driver": "virtio", "disk_driver": "virtio", "cpu_type": "host",
            "image_size": 10240, "acl": [BOB], "published_at": "2021-01-01T00:00:00Z",
            "requirements": {"min_ram": 512, "max_ram": 4096, "brand": "bhyve",
                             "bootrom": "uefi", "ssh_key": True, "networks": []},
            "description": "Ubuntu", "homepage": "https://example.com/u",
            "eula": "https://example.com/eula", "tags": {"role": "vm"},
        },
    ),
    (PUB, ALICE, {"public": True, "published_at": "2020-01-01T00:00:00.000Z"}),
    (UNACT, ALICE, {"public": True, "activated": False, "name": "draft"}),
    (DISABLED, ALICE, {"public": True, "disabled": True, "published_at": "2019-01-01T00:00:00Z"}),
    (DOCKER, ALICE, {"public": True, "type": "docker", "os": "linux", "name": "docker-layer"}),
    (CAROLS, CAROL, {"published_at": "2022-01-01T00:00:00Z", "name": "carol-base"}),
    (CHILD, CAROL, {"published_at": "2023-01-01T00:00:00Z", "origin": CAROLS}),
]  # fmt: skip


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    catalog: ImageCatalog
    signers: dict[str, RequestSigner]

    async def call(
        self, login: str, method: str, path: str, version: str | None = None
    ) -> ClientResponse:
        headers = {"Accept-Version": version} if version else {}
        signed = self.signers[login].sign(method, path, headers)
        return await self.client.request(method, path, headers=signed)

    async def json(self, login: str, path: str, version: str | None = None) -> Any:
        resp = await self.call(login, "GET", path, version)
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def gw(tmp_path: Path, aiohttp_client: Any) -> Gateway:
    settings = Settings(
        data_dir=tmp_path,
        load_entrypoints=False,
        disabled_plugins=("export", "manta", "s3"),
    )
    store = AccountStore(settings.accounts_db)
    signers = {}
    for login, uuid in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        await store.add_account(login, uuid=uuid)
        key = ed25519.Ed25519PrivateKey.generate()
        await store.add_key(login, ssh_public_key_line(key), name="test")
        signers[login] = RequestSigner.for_login(key, login)
    await store.close()
    app = create_app(settings)
    client = await aiohttp_client(app)
    catalog = app[CATALOG]
    for uuid, owner, extra in IMAGES:
        data = uuid.encode() * 3
        await catalog.import_image(manifest(uuid, owner, data, **extra), _body(data))
    return Gateway(client, catalog, signers)


def ids(images: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in images]


# --- GetImage ------------------------------------------------------------------------------


async def test_get_image_is_cloudapi_object(gw: Gateway) -> None:
    img = await gw.json("alice", f"/alice/images/{PRIV}")
    assert list(img) == [
        "id", "name", "version", "os", "requirements", "type", "image_size", "description",
        "files", "tags", "homepage", "published_at", "owner", "public", "state", "eula", "acl",
    ]  # fmt: skip
    assert img["id"] == PRIV and "uuid" not in img
    assert img["requirements"] == {
        "max_memory": 4096, "max_ram": 4096, "min_memory": 512, "min_ram": 512,
        "brand": "bhyve", "bootrom": "uefi",
    }  # fmt: skip
    data = PRIV.encode() * 3
    assert img["files"] == [
        {"compression": "gzip", "sha1": hashlib.sha1(data).hexdigest(), "size": len(data)}
    ]
    assert (img["type"], img["state"], img["public"], img["acl"]) == (
        "zvol",
        "active",
        False,
        [BOB],
    )


@pytest.mark.parametrize(
    ("version", "served_type", "has_owner"),
    [
        ("7.0.0", "virtualmachine", False),
        ("~7.1", "virtualmachine", True),
        ("~7", "virtualmachine", True),
        ("8.0.0", "zvol", True),
        ("~9||~8", "zvol", True),
    ],
)
async def test_get_image_fields_depend_on_version(
    gw: Gateway, version: str, served_type: str, has_owner: bool
) -> None:
    img = await gw.json("alice", f"/alice/images/{PRIV}", version)
    assert img["type"] == served_type
    for field in ("owner", "public", "state", "eula", "acl"):
        assert (field in img) is has_owner
    assert "homepage" in img and "published_at" in img and "tags" in img


async def test_legacy_type_of_a_dataset_is_smartmachine(gw: Gateway) -> None:
    assert (await gw.json("alice", f"/alice/images/{PUB}", "~7"))["type"] == "smartmachine"


@pytest.mark.parametrize(
    ("login", "uuid", "visible"),
    [
        ("alice", UNACT, True),  # owner sees everything
        ("bob", PRIV, True),  # in the acl
        ("carol", PRIV, False),  # private, not in the acl
        ("carol", PUB, True),  # public and activated
        ("carol", DISABLED, True),  # public and activated, even if disabled
        ("carol", UNACT, False),  # public but not activated
        ("alice", CAROLS, False),
    ],
)
async def test_get_image_visibility(gw: Gateway, login: str, uuid: str, visible: bool) -> None:
    resp = await gw.call(login, "GET", f"/{login}/images/{uuid}")
    body = await resp.json()
    if visible:
        assert resp.status == 200 and body["id"] == uuid
    else:
        assert resp.status == 404
        assert body == {"code": "ResourceNotFound", "message": "image not found"}


async def test_get_image_bad_ids(gw: Gateway) -> None:
    resp = await gw.call("alice", "GET", "/alice/images/not-a-uuid")
    assert resp.status == 404
    assert await resp.json() == {"code": "ResourceNotFound", "message": "not-a-uuid not found"}
    resp = await gw.call("alice", "GET", "/alice/images/" + "9" * 8 + PUB[8:])
    assert resp.status == 404
    assert (await resp.json())["message"] == "image not found"


async def test_head_get_image(gw: Gateway) -> None:
    resp = await gw.call("bob", "HEAD", f"/bob/images/{PRIV}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.read() == b""
    assert (await gw.call("carol", "HEAD", f"/carol/images/{PRIV}")).status == 404


async def test_my_resolves_and_signature_required(gw: Gateway) -> None:
    assert (await gw.json("alice", f"/my/images/{PUB}"))["id"] == PUB
    resp = await gw.client.get(f"/alice/images/{PUB}")
    assert resp.status == 401
    assert (await resp.json())["code"] == "InvalidCredentials"


# --- ListImages ----------------------------------------------------------------------------


async def test_list_defaults(gw: Gateway) -> None:
    # Active only, docker excluded, oldest published_at first.
    assert ids(await gw.json("alice", "/alice/images")) == [PUB, PRIV]
    assert ids(await gw.json("bob", "/bob/images")) == [PUB, PRIV]
    assert ids(await gw.json("carol", "/carol/images")) == [PUB, CAROLS, CHILD]


@pytest.mark.parametrize(
    ("login", "query", "expected"),
    [
        ("alice", "state=all", [UNACT, DISABLED, PUB, PRIV]),
        ("carol", "state=all", [DISABLED, PUB, CAROLS, CHILD]),
        ("alice", "state=disabled", [DISABLED]),
        ("carol", "state=disabled", []),  # others' images only with active or all
        ("alice", "state=unactivated", [UNACT]),
        ("alice", "name=ubuntu", [PRIV]),
        ("alice", "name=~untu", [PRIV]),
        ("alice", "name=~UNTU", []),
        ("alice", "version=~22", [PRIV]),
        ("alice", "os=linux", [PRIV]),
        ("alice", "public=false", [PRIV]),
        ("alice", "public=true&state=all", [UNACT, DISABLED, PUB]),
        ("carol", f"owner={ALICE}", [PUB]),
        ("bob", f"owner={ALICE}", [PUB, PRIV]),
        ("alice", "type=docker", [DOCKER]),
        ("alice", "type=zvol", [PRIV]),
        ("alice", "name=", [PUB, PRIV]),  # empty values are ignored
    ],
)
async def test_list_filters(gw: Gateway, login: str, query: str, expected: list[str]) -> None:
    assert ids(await gw.json(login, f"/{login}/images?{query}")) == expected


async def test_list_legacy_types(gw: Gateway) -> None:
    assert ids(await gw.json("alice", "/alice/images?type=virtualmachine", "~7")) == [PRIV]
    assert ids(await gw.json("alice", "/alice/images?type=smartmachine", "7.3.0")) == [PUB]
    resp = await gw.call("alice", "GET", "/alice/images?type=zvol", "~7")
    assert resp.status == 409
    assert await resp.json() == {
        "code": "InvalidArgument",
        "message": "image type zvol is not a valid type",
    }
    images = await gw.json("alice", "/alice/images", "7.0.0")
    assert ids(images) == [PUB, PRIV] and "owner" not in images[0]


@pytest.mark.parametrize("query", ["state=bogus", "public=yes"])
async def test_list_bad_filter_values(gw: Gateway, query: str) -> None:
    resp = await gw.call("alice", "GET", f"/alice/images?{query}")
    body = await resp.json()
    assert resp.status == 422
    assert body["code"] == "InvalidParameter"
    assert body["errors"][0]["field"] == query.split("=")[0]


async def test_head_list_images(gw: Gateway) -> None:
    resp = await gw.call("alice", "HEAD", "/alice/images")
    assert resp.status == 200
    assert await resp.read() == b""


# --- DeleteImage ---------------------------------------------------------------------------


async def test_delete_by_owner_removes_file(gw: Gateway, tmp_path: Path) -> None:
    file0 = tmp_path / "images" / PUB / "file0"
    assert file0.exists()
    resp = await gw.call("alice", "DELETE", f"/alice/images/{PUB}")
    assert resp.status == 204
    assert await resp.read() == b""
    assert not file0.exists()
    assert await gw.catalog.get_image(PUB) is None
    assert (await gw.call("alice", "GET", f"/alice/images/{PUB}")).status == 404


async def test_delete_by_non_owner(gw: Gateway) -> None:
    resp = await gw.call("carol", "DELETE", f"/carol/images/{PUB}")  # visible, not hers
    assert resp.status == 422
    assert await resp.json() == {
        "code": "NotImageOwner",
        "message": f"account {CAROL} is not the owner of image {PUB}",
    }
    resp = await gw.call("carol", "DELETE", f"/carol/images/{PRIV}")  # invisible to her
    assert resp.status == 404
    assert (await gw.call("bob", "DELETE", f"/bob/images/{PRIV}")).status == 422
    assert await gw.catalog.get_image(PUB) is not None
    assert await gw.catalog.get_image(PRIV) is not None


async def test_delete_refuses_an_origin_of_other_images(gw: Gateway) -> None:
    resp = await gw.call("carol", "DELETE", f"/carol/images/{CAROLS}")
    assert resp.status == 422
    assert (await resp.json())["code"] == "ImageHasDependentImages"
    assert (await gw.call("carol", "DELETE", f"/carol/images/{CHILD}")).status == 204
    assert (await gw.call("carol", "DELETE", f"/carol/images/{CAROLS}")).status == 204


async def test_delete_bad_id(gw: Gateway) -> None:
    resp = await gw.call("alice", "DELETE", "/alice/images/nope")
    assert resp.status == 404
    assert (await resp.json())["code"] == "ResourceNotFound"


async def test_routes_share_the_image_path(gw: Gateway) -> None:
    resp = await gw.call("alice", "GET", f"/alice/images/{PUB}")
    methods = {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "HEAD", "DELETE"} <= methods
    resp = await gw.call("alice", "PUT", f"/alice/images/{PUB}")
    assert resp.status == 405


HOSTILE_PATHS = [
    "/carol/images/%00",
    "/carol/images/..%2F..%2Fetc",
    "/carol/images/" + "a" * 5000,
    "/carol/images/%E2%98%83",
    "/carol/images/" + PUB.upper(),
    "/carol/images/" + PUB + "%20",
    "/carol/images?state=all&state=nope",
    "/carol/images?type=!",
    "/carol/images?type=%00",
    "/carol/images?name=~",
    "/carol/images?public=TRUE",
    "/carol/images?owner=../../x",
    "/carol/images?version=" + "9" * 5000,
    "/carol/images?limit=-1&marker=x&sort=nope",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
async def test_hostile_input_is_never_a_500(gw: Gateway, method: str, path: str) -> None:
    if method == "DELETE" and "?" in path:
        path = path.replace("/images?", f"/images/{PRIV}?")
    resp = await gw.call("carol", method, path)
    assert resp.status != 403  # reached the image views, not refused by auth
    assert resp.status < 500
    if resp.status >= 400 and method != "HEAD":
        body = await resp.json()
        assert set(body) >= {"code", "message"}
    assert await gw.catalog.get_image(PRIV) is not None
