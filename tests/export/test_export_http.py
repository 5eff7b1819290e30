"""ExportImage over HTTP on every storage target: both parameter styles, both modes, names,
extensions, the exact bytes and MD5s written, and every error that needs no fault injection."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

import pytest

from tests.support.export_env import CATALOG_KINDS, ExportEnv

#: (catalog, database engine): each catalog, and each engine, with no four-way product.
#: The object-store catalog on PostgreSQL is what several gateway instances run.
SETUPS = (("embedded", "sqlite"), ("objectstore", "sqlite"), ("objectstore", "postgresql"))


@pytest.fixture(params=SETUPS, ids=["-".join(setup) for setup in SETUPS])
def setup(request: pytest.FixtureRequest) -> tuple[str, str]:
    return tuple(request.param)  # type: ignore[return-value]


@pytest.fixture
def catalog_kind(setup: tuple[str, str]) -> str:
    """Every test here runs on each catalog (and each target: see ``env``)."""
    assert setup[0] in CATALOG_KINDS
    return setup[0]


@pytest.fixture
def export_database(request: pytest.FixtureRequest, setup: tuple[str, str]) -> dict[str, Any]:
    """... and on both database engines (the journal, accounts and image records on each)."""
    if setup[1] == "sqlite":
        return {}
    return {"url": request.getfixturevalue("postgres_url")}


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def expected_manifest(manifest: Any) -> bytes:
    """IMGAPI's ``JSON.stringify(manifest, null, 4)``: 4 spaces, UTF-8, no trailing newline."""
    return json.dumps(manifest, indent=4, ensure_ascii=False).encode()


async def assert_exported(env: ExportEnv, answer: Any, image: Any, data: bytes) -> None:
    """Both objects are there, byte for byte, with the right MD5 and content type."""
    assert answer.status == 200, answer.body
    assert list(answer.body) == ["manta_url", "image_path", "manifest_path"]
    assert answer.body["manta_url"] == env.harness.storage["public_url"]
    file_path, manifest_path = answer.body["image_path"], answer.body["manifest_path"]
    assert await env.read(file_path) == data
    stored_manifest = await env.read(manifest_path)
    assert stored_manifest == expected_manifest(image.manifest)
    assert not stored_manifest.endswith(b"\n")
    assert json.loads(stored_manifest) == image.manifest
    file_info = await env.harness.target.stat(file_path)
    manifest_info = await env.harness.target.stat(manifest_path)
    assert file_info is not None and manifest_info is not None
    assert file_info.size == len(data)
    assert file_info.content_md5 == md5_b64(data) == image.files[0].content_md5
    assert manifest_info.content_md5 == md5_b64(stored_manifest)
    assert (file_info.content_type or "").startswith("application/octet-stream")
    assert (manifest_info.content_type or "").startswith("application/json")


# --- the two parameter styles, the two modes -----------------------------------------------


async def test_query_style_into_a_directory(env: ExportEnv) -> None:
    """``sdc-exportimage``: parameters in the query string; an existing directory."""
    # Several catalog chunks (hashed off the loop), and a multipart upload on S3.
    data = blob(6 * 1024 * 1024 + 123)
    image = await env.image(data, name="foo", version="1.0.0", compression="gzip")
    await env.mkdir(env.path("cloudapi"))
    answer = await env.export(image.uuid, env.path("cloudapi"), style="query")
    assert answer.body["image_path"] == env.path("cloudapi", "foo-1.0.0.zfs.gz")
    assert answer.body["manifest_path"] == env.path("cloudapi", "foo-1.0.0.imgmanifest")
    await assert_exported(env, answer, image, data)


async def test_json_body_style_template(env: ExportEnv) -> None:
    """``triton image export``: parameters in a JSON body; a path that does not exist yet."""
    data = blob(70_000, seed=2)
    image = await env.image(data, compression="gzip", description="caf\u00e9 \u2603")
    answer = await env.export(image.uuid, env.path("my-image"), style="body")
    assert answer.body == {
        "manta_url": env.harness.storage["public_url"],
        "image_path": env.path("my-image.zfs.gz"),
        "manifest_path": env.path("my-image.imgmanifest"),
    }
    await assert_exported(env, answer, image, data)
    # Non-ASCII is written as UTF-8, as JSON.stringify does, not as \\u escapes.
    assert "caf\u00e9 \u2603".encode() in await env.read(env.path("my-image.imgmanifest"))


async def test_body_wins_over_query(env: ExportEnv) -> None:
    image = await env.image(blob(1000))
    answer = await env.post(
        image.uuid,
        query={"action": "export", "manta_path": env.path("from-query")},
        body={"manta_path": env.path("from-body")},
    )
    assert answer.status == 200, answer.body
    assert answer.body["manifest_path"] == env.path("from-body.imgmanifest")
    assert not await env.exists(env.path("from-query.imgmanifest"))


async def test_unknown_parameters_are_ignored(env: ExportEnv) -> None:
    image = await env.image(blob(1000))
    answer = await env.post(
        image.uuid,
        query={"action": "export", "manta_path": env.path("x"), "channel": "dev"},
    )
    assert answer.status == 200, answer.body


async def test_template_over_an_existing_object(env: ExportEnv) -> None:
    """An existing object is a template, as the API doc says (Triton answers 500 here)."""
    data = blob(5000, seed=3)
    image = await env.image(data)
    await env.put(env.path("existing"), b"hello")
    answer = await env.export(image.uuid, env.path("existing"))
    assert answer.body["image_path"] == env.path("existing.zfs")
    await assert_exported(env, answer, image, data)
    assert await env.read(env.path("existing")) == b"hello"


@pytest.mark.parametrize(
    ("compression", "extension"),
    [("gzip", ".gz"), ("bzip2", ".bz2"), ("xz", ".xz"), ("none", "")],
)
async def test_extension_by_compression(env: ExportEnv, compression: str, extension: str) -> None:
    data = blob(2048, seed=4)
    image = await env.image(data, name="img", version="2.0", compression=compression)
    await env.mkdir(env.path("d"))
    answer = await env.export(image.uuid, env.path("d"))
    assert answer.body["image_path"] == env.path("d", f"img-2.0.zfs{extension}")
    await assert_exported(env, answer, image, data)


async def test_trailing_slash_on_a_directory(env: ExportEnv) -> None:
    image = await env.image(blob(100), name="n", version="v")
    await env.mkdir(env.path("dir"))
    answer = await env.export(image.uuid, env.path("dir") + "/")
    assert answer.status == 200, answer.body
    assert answer.body["manifest_path"] == env.path("dir", "n-v.imgmanifest")


async def test_trailing_slash_without_a_directory(env: ExportEnv) -> None:
    image = await env.image(blob(100))
    answer = await env.export(image.uuid, env.path("nodir") + "/")
    assert answer.status == 422
    assert answer.body["code"] == "InvalidParameter"
    assert answer.body["errors"] == [{"field": "manta_path", "code": "DirectoryDoesNotExist"}]
    assert env.path("nodir") in answer.body["message"]
    assert not await env.exists(env.path("nodir.imgmanifest"))
    assert not await env.exists(env.path("nodir", ".imgmanifest"))


async def test_dot_dot_is_resolved_before_the_checks(env: ExportEnv) -> None:
    image = await env.image(blob(100), name="n", version="v")
    await env.mkdir(env.path("dir"))
    answer = await env.export(image.uuid, env.path("a", "..", "b", "..", "dir"))
    assert answer.status == 200, answer.body
    assert answer.body["image_path"] == env.path("dir", "n-v.zfs")
    # /bob/stor/../../alice/stor belongs to alice, whatever it starts with.
    escape = await env.export(image.uuid, env.path("..", "..", "alice", "stor", "x"))
    assert escape.status == 422
    assert escape.body == {
        "code": "NotMantaPathOwner",
        "message": f"account {env.bob.uuid} is not the owner of Manta path /alice/stor/x",
    }


async def test_names_with_slashes_stay_in_the_directory(env: ExportEnv) -> None:
    data = blob(300, seed=5)
    image = await env.image(data, name="a/b c", version="1/2+3")
    await env.mkdir(env.path("dir"))
    answer = await env.export(image.uuid, env.path("dir"))
    assert answer.body["manifest_path"] == env.path("dir", "a_b c-1_2+3.imgmanifest")
    assert answer.body["image_path"] == env.path("dir", "a_b c-1_2+3.zfs")
    await assert_exported(env, answer, image, data)


async def test_public_and_reports_trees(env: ExportEnv) -> None:
    image = await env.image(blob(100))
    for tree in ("public", "reports"):
        answer = await env.export(image.uuid, f"/bob/{tree}/img")
        assert answer.status == 200, answer.body
        assert answer.body["manifest_path"] == f"/bob/{tree}/img.imgmanifest"


async def test_overwrite_replaces_a_previous_export_completely(env: ExportEnv) -> None:
    first, second = blob(4000, seed=6), blob(9000, seed=7)
    old = await env.image(first, name="old")
    new = await env.image(second, name="new")
    assert (await env.export(old.uuid, env.path("same"))).status == 200
    answer = await env.export(new.uuid, env.path("same"))
    await assert_exported(env, answer, new, second)


async def test_unactivated_and_disabled_images_export(env: ExportEnv) -> None:
    """IMGAPI has no state check on export."""
    for state, extra in (("unactivated", {"published_at": None}), ("disabled", {"disabled": True})):
        manifest: dict[str, Any] = {"state": state, **extra}
        manifest = {k: v for k, v in manifest.items() if v is not None}
        if state == "unactivated":
            manifest["activated"] = False
        image = await env.image(blob(100), name=state, **manifest)
        answer = await env.export(image.uuid, env.path(state))
        assert answer.status == 200, answer.body


# --- errors found before any storage request: one target is enough ------------------------


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ({"action": "export"}, None),
        ({"action": "export", "manta_path": ""}, None),
        (None, {"action": "export"}),
        (None, {"action": "export", "manta_path": None}),
        (None, {"action": "export", "manta_path": ""}),
    ],
)
async def test_missing_manta_path(manta_env: ExportEnv, query: Any, body: Any) -> None:
    image = await manta_env.image(blob(100))
    answer = await manta_env.post(image.uuid, query=query, body=body)
    assert answer.status == 409
    assert answer.body == {
        "code": "MissingParameter",
        "message": "Image destination manta_path is a required argument",
    }


async def test_manta_path_must_be_a_string(manta_env: ExportEnv) -> None:
    image = await manta_env.image(blob(100))
    answer = await manta_env.post(image.uuid, body={"action": "export", "manta_path": 12})
    assert answer.status == 409
    assert answer.body["code"] == "InvalidArgument"


async def test_not_the_image_owner(manta_env: ExportEnv) -> None:
    """A public image of another account is visible but not exportable."""
    image = await manta_env.image(blob(100), owner=manta_env.alice, public=True)
    answer = await manta_env.export(image.uuid, manta_env.path("x"))
    assert answer.status == 422
    assert answer.body == {
        "code": "NotImageOwner",
        "message": f"account {manta_env.bob.uuid} is not the owner of image {image.uuid}",
    }


async def test_invisible_image_is_not_found(manta_env: ExportEnv) -> None:
    image = await manta_env.image(blob(100), owner=manta_env.alice)
    answer = await manta_env.export(image.uuid, manta_env.path("x"))
    assert answer.status == 404
    assert answer.body["code"] == "ResourceNotFound"


@pytest.mark.parametrize("manta_path", ["/", "//", "/..", "bob/stor/x", "stor/x", ".", "/bob/\x00"])
async def test_invalid_manta_path(manta_env: ExportEnv, manta_path: str) -> None:
    image = await manta_env.image(blob(100))
    answer = await manta_env.export(image.uuid, manta_path, style="body")
    assert answer.status == 422, answer.body
    assert answer.body["code"] == "InvalidParameter"
    assert answer.body["errors"] == [{"field": "manta_path", "code": "Invalid"}]


@pytest.mark.parametrize("manta_path", ["/alice/stor/x", "/Bob/stor/x", "//alice/stor/x"])
async def test_not_the_manta_path_owner(manta_env: ExportEnv, manta_path: str) -> None:
    image = await manta_env.image(blob(100))
    answer = await manta_env.export(image.uuid, manta_path)
    assert answer.status == 422
    normalized = "/" + manta_path.lstrip("/")
    assert answer.body == {
        "code": "NotMantaPathOwner",
        "message": f"account {manta_env.bob.uuid} is not the owner of Manta path {normalized}",
    }


@pytest.mark.parametrize("manta_path", ["/bob", "/bob/jobs/x", "/bob/uploads/x", "/bob/x"])
async def test_outside_the_writable_trees(manta_env: ExportEnv, manta_path: str) -> None:
    image = await manta_env.image(blob(100))
    # Nothing may reach storage: any request to it would fail with a 500.
    manta_env.harness.faults.add(path=".*", status=500, code="InternalError", times=100)
    answer = await manta_env.export(image.uuid, manta_path)
    assert answer.status == 422, answer.body
    assert answer.body["code"] == "InvalidParameter"
    assert "/bob/stor" in answer.body["message"]


async def test_checks_come_before_any_storage_request(manta_env: ExportEnv) -> None:
    image = await manta_env.image(blob(100))
    manta_env.harness.faults.add(path=".*", status=500, code="InternalError", times=100)
    assert (await manta_env.export(image.uuid, "/alice/stor/x")).status == 422
    assert (await manta_env.export(image.uuid, "/")).status == 422
    assert (await manta_env.export(image.uuid, "")).status == 409


async def test_a_destination_that_is_a_directory(env: ExportEnv) -> None:
    image = await env.image(blob(100))
    await env.mkdir(env.path("t.imgmanifest"))
    answer = await env.export(image.uuid, env.path("t"))
    assert answer.status == 422, answer.body
    assert answer.body["code"] == "InvalidParameter"
    assert env.path("t.imgmanifest") in answer.body["message"]
    assert not await env.exists(env.path("t.zfs"))


async def test_the_tree_root_is_a_directory(env: ExportEnv) -> None:
    """``/bob/stor`` itself selects directory mode."""
    image = await env.image(blob(100), name="n", version="v")
    answer = await env.export(image.uuid, "/bob/stor")
    assert answer.status == 200, answer.body
    assert answer.body["manifest_path"] == "/bob/stor/n-v.imgmanifest"


async def test_missing_parent_directory(manta_env: ExportEnv) -> None:
    image = await manta_env.image(blob(100))
    answer = await manta_env.export(image.uuid, manta_env.path("nodir", "sub", "img"))
    assert answer.status == 422
    assert answer.body["code"] == "InvalidParameter"
    assert answer.body["errors"] == [{"field": "manta_path", "code": "DirectoryDoesNotExist"}]
    assert manta_env.path("nodir", "sub") in answer.body["message"]


async def test_parent_is_an_object(manta_env: ExportEnv) -> None:
    image = await manta_env.image(blob(100))
    await manta_env.put(manta_env.path("file"), b"x")
    answer = await manta_env.export(image.uuid, manta_env.path("file", "img"))
    assert answer.status == 422
    assert answer.body["errors"] == [{"field": "manta_path", "code": "DirectoryDoesNotExist"}]
    assert manta_env.path("file") in answer.body["message"]
    assert await manta_env.read(manta_env.path("file")) == b"x"


async def test_template_parent_must_exist_on_every_target(env: ExportEnv) -> None:
    """Every target: a template's parent must be a directory (on S3: a marker or keys)."""
    image = await env.image(blob(100))
    answer = await env.export(image.uuid, env.path("nodir", "img"))
    assert answer.status == 422
    assert answer.body["errors"] == [{"field": "manta_path", "code": "DirectoryDoesNotExist"}]
    assert not await env.exists(env.path("nodir", "img.zfs"))


async def test_my_is_the_callers_login(manta_env: ExportEnv) -> None:
    """``/my/images/:id`` works as ``/bob/images/:id``; the path is still checked against bob."""
    image = await manta_env.image(blob(100))
    answer = await manta_env.export(image.uuid, manta_env.path("mine"), url_login="my")
    assert answer.status == 200, answer.body
    assert answer.body["manifest_path"] == manta_env.path("mine.imgmanifest")
    refused = await manta_env.export(image.uuid, "/my/stor/x", url_login="my")
    assert refused.status == 422
    assert refused.body["code"] == "NotMantaPathOwner"
