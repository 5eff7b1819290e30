"""ExportImage when things go wrong: injected storage faults, a corrupt catalog, concurrency,
images the action refuses, a client that goes away. Nothing half-written may remain."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.server.appkeys import CATALOG, SWEEPER
from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import RETRIES

BEYOND_RETRIES = RETRIES + 1


def blob(size: int, seed: int = 11) -> bytes:
    return random.Random(seed).randbytes(size)


async def assert_nothing_at(env: ExportEnv, *paths: str) -> None:
    for path in paths:
        assert not await env.exists(path), f"{path} was left behind"
    assert await env.harness.leftovers() == []


# --- storage faults ----------------------------------------------------------------------------


async def test_file_put_503_beyond_retries(env: ExportEnv) -> None:
    image = await env.image(blob(64 * 1024))
    env.harness.faults.add(method="PUT", path=r"\.zfs$", status=503, times=BEYOND_RETRIES)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 503
    assert answer.body["code"] == "StorageIsDown"
    assert env.path("img.zfs") in answer.body["message"]
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_file_put_503_once_is_retried(env: ExportEnv) -> None:
    data = blob(64 * 1024, seed=12)
    image = await env.image(data)
    rule = env.harness.faults.add(method="PUT", path=r"\.zfs$", status=503, times=1)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    assert rule.hits == 1
    assert await env.read(env.path("img.zfs")) == data  # restarted from the first byte
    assert json.loads(await env.read(env.path("img.imgmanifest"))) == image.manifest


async def test_connection_cut_mid_file(env: ExportEnv) -> None:
    image = await env.image(blob(256 * 1024, seed=13))
    env.harness.faults.add(method="PUT", path=r"\.zfs$", cut_after=100_000, times=20)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "StorageIsDown"
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_connection_cut_once_is_retried(env: ExportEnv) -> None:
    data = blob(256 * 1024, seed=14)
    image = await env.image(data)
    env.harness.faults.add(method="PUT", path=r"\.zfs$", cut_after=100_000, times=1)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    assert await env.read(env.path("img.zfs")) == data


async def test_manifest_put_failure_removes_the_file(env: ExportEnv) -> None:
    image = await env.image(blob(8000, seed=15))
    env.harness.faults.add(
        method="PUT", path=r"\.imgmanifest$", status=400, code="InvalidArgument", times=20
    )
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 502, answer.body
    assert answer.body == {
        "code": "StorageError",
        "message": f"error exporting image manifest to {env.path('img.imgmanifest')}: "
        "storage answered InvalidArgument",
    }
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_manifest_put_503_beyond_retries(env: ExportEnv) -> None:
    image = await env.image(blob(8000, seed=16))
    env.harness.faults.add(method="PUT", path=r"\.imgmanifest$", status=503, times=BEYOND_RETRIES)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 503
    assert answer.body["code"] == "StorageIsDown"
    assert "manifest" in answer.body["message"]
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_failed_cleanup_is_reported(env: ExportEnv) -> None:
    image = await env.image(blob(8000, seed=17))
    env.harness.faults.add(
        method="PUT", path=r"\.imgmanifest$", status=400, code="InvalidArgument", times=20
    )
    env.harness.faults.add(method="DELETE", path=r"\.zfs$", status=503, times=20)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 502
    assert answer.body["message"].endswith("; the gateway finishes undoing it once storage allows")
    env.harness.faults.reset()
    assert await env.app[SWEEPER].sweep() == 1  # the released entry is due at once
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_failed_overwrite_keeps_the_previous_export(env: ExportEnv) -> None:
    """An overwrite whose file upload fails leaves the previous export as it was."""
    old_data = blob(1000, seed=18)
    old = await env.image(old_data, name="old")
    new = await env.image(blob(2000, seed=19), name="new")
    assert (await env.export(old.uuid, env.path("img"))).status == 200
    env.harness.faults.add(method="PUT", path=r"\.zfs$", status=503, times=BEYOND_RETRIES)
    answer = await env.export(new.uuid, env.path("img"))
    assert answer.status == 503
    assert await env.read(env.path("img.zfs")) == old_data
    assert json.loads(await env.read(env.path("img.imgmanifest"))) == old.manifest


async def test_stat_failure_is_storage_is_down(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(blob(100))
    env.harness.faults.add(method="HEAD", path=".*", status=503, times=100)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 503
    assert answer.body["code"] == "StorageIsDown"
    assert env.path("img") in answer.body["message"]


@pytest.mark.parametrize(
    ("code", "status", "error", "detail"),
    [
        ("DirectoryDoesNotExist", 422, "InvalidParameter", "does not exist"),
        ("ParentNotDirectory", 422, "InvalidParameter", "not a directory"),
        ("AuthorizationFailed", 502, "StorageError", "storage refused access"),
    ],
)
async def test_refusals_of_the_file_put(
    manta_env: ExportEnv, code: str, status: int, error: str, detail: str
) -> None:
    """Manta's own refusals (e.g. the directory removed after our check) map to clean errors."""
    env = manta_env
    image = await env.image(blob(1000))
    env.harness.faults.add(method="PUT", path=r"\.zfs$", code=code, times=20)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == status, answer.body
    assert answer.body["code"] == error
    assert detail in answer.body["message"]
    if error == "InvalidParameter":
        assert answer.body["errors"] == [{"field": "manta_path", "code": "DirectoryDoesNotExist"}]
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


# --- the catalog's copy ----------------------------------------------------------------------


async def test_corrupt_catalog_file(env: ExportEnv) -> None:
    data = blob(6 * 1024 * 1024, seed=20)  # multipart on S3: the first part is sent before
    image = await env.image(data)
    stored = env.catalog_file(image)
    raw = bytearray(stored.read_bytes())
    raw[-100] ^= 0x01
    stored.write_bytes(bytes(raw))
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 500
    assert answer.body["code"] == "ImageFileCorrupt"
    assert image.files[0].sha1 in answer.body["message"]
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_truncated_catalog_file(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(blob(5000, seed=21))
    stored = env.catalog_file(image)
    stored.write_bytes(stored.read_bytes()[:-10])
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 500
    assert answer.body["code"] == "ImageFileCorrupt"
    assert "4990 bytes" in answer.body["message"]
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_longer_catalog_file(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(blob(5000, seed=22))
    stored = env.catalog_file(image)
    stored.write_bytes(stored.read_bytes() + b"extra")
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 500
    assert answer.body["code"] == "ImageFileCorrupt"
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


async def test_missing_catalog_file(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(blob(5000, seed=23))
    env.catalog_file(image).unlink()
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 500
    assert answer.body == {
        "code": "InternalError",
        "message": f"error reading the image file of {image.uuid} from the catalog",
    }
    await assert_nothing_at(env, env.path("img.zfs"), env.path("img.imgmanifest"))


# --- images the action refuses -------------------------------------------------------------


def _store_files(env: ExportEnv, uuid: str, files: list[dict[str, Any]]) -> None:
    """Give a stored image 0 or 2 files, which no import can produce (placeholder, lxd)."""
    db = env.app[CATALOG].db  # type: ignore[attr-defined]
    db.execute("UPDATE images SET files = ? WHERE uuid = ?", (json.dumps(files), uuid))


async def test_image_without_a_file(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(blob(100))
    _store_files(env, image.uuid, [])
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 422
    assert answer.body == {
        "code": "ImageHasNoFile",
        "message": f"image {image.uuid} has no file to export",
    }


async def test_image_with_two_files(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(blob(100))
    one = {"sha1": "0" * 40, "size": 1, "compression": "none", "content_md5": "x"}
    _store_files(env, image.uuid, [one, one])
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 400
    assert answer.body == {
        "code": "NotImplemented",
        "message": "cannot export images with multiple files",
    }


async def test_no_storage_configured(
    manta_env: ExportEnv, tmp_path: Path, aiohttp_client: Any
) -> None:
    env = await make_env(aiohttp_client, manta_env.harness, tmp_path / "gw", storage={})
    image = await env.image(blob(100))
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 503
    assert answer.body == {"code": "StorageUnsupported", "message": "storage type is unsupported"}


# --- concurrency and a client that leaves --------------------------------------------------


async def test_concurrent_exports_of_one_image(env: ExportEnv) -> None:
    data = blob(512 * 1024, seed=24)
    image = await env.image(data, name="c", version="1")
    await env.mkdir(env.path("d"))
    destinations = [env.path("same")] * 4 + [env.path("other"), env.path("d")]
    answers = await asyncio.gather(*(env.export(image.uuid, d) for d in destinations))
    assert [a.status for a in answers] == [200] * len(destinations)
    for answer in answers:
        assert await env.read(answer.body["image_path"]) == data
        assert json.loads(await env.read(answer.body["manifest_path"])) == image.manifest


async def test_a_failing_export_never_removes_a_concurrent_success(env: ExportEnv) -> None:
    """Two exports to one destination; whichever writes its manifest first fails. The
    failure's cleanup must not remove what the other export wrote."""
    data = blob(128 * 1024, seed=25)
    image = await env.image(data)
    env.harness.faults.add(method="PUT", path=r"\.imgmanifest$", status=503, times=BEYOND_RETRIES)
    answers = await asyncio.gather(*(env.export(image.uuid, env.path("img")) for _ in range(2)))
    assert sorted(a.status for a in answers) == [200, 503]
    assert await env.read(env.path("img.zfs")) == data
    assert json.loads(await env.read(env.path("img.imgmanifest"))) == image.manifest


async def test_export_finishes_when_the_client_leaves(
    manta_env: ExportEnv, tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a server that cancels handlers of departed clients finishes the export."""
    env = await make_env(
        aiohttp_client,
        manta_env.harness,
        tmp_path / "gw",
        server_kwargs={"handler_cancellation": True},
    )
    caplog.set_level(logging.INFO, logger="plugins.actions.export.action")
    data = blob(256 * 1024, seed=26)
    image = await env.image(data)
    rule = env.harness.faults.add(method="PUT", path=r"\.zfs$", stall=0.3, times=1)
    request = asyncio.create_task(env.export(image.uuid, env.path("img")))
    while rule.hits == 0:  # the file upload has started  # noqa: ASYNC110 - a fake's counter
        await asyncio.sleep(0.01)
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    for _ in range(3000):  # the export completes on its own; wait for its last write
        if await env.exists(env.path("img.imgmanifest")):
            break
        await asyncio.sleep(0.01)
    assert await env.read(env.path("img.zfs")) == data
    assert json.loads(await env.read(env.path("img.imgmanifest"))) == image.manifest
    assert "client left" in caplog.text  # the handler was cancelled; the export was not
