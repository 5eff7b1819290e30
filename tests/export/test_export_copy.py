"""Exports from the object-store catalog: a copy inside the store where it can copy (a SnapLink,
CopyObject, UploadPartCopy parts), the streamed PUT where it cannot (Manta v2), and the
previous export kept whole when a copy fails part-way.

The catalog keeps its files in the export's own target (``/operator/stor/imgapi``), so every
target of the harness is "the same store"; the harness's S3 copies above 5 MiB part by part.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import RETRIES, S3_PART_SIZE, MotoS3, open_target

BIG = 2 * S3_PART_SIZE + 1234  # three UploadPartCopy parts on S3, one SnapLink on Manta


@pytest.fixture
def catalog_kind() -> str:
    return "objectstore"


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def export_methods(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str | None]]:
    return [
        (record.outcome, record.method)  # type: ignore[attr-defined]
        for record in caplog.records
        if getattr(record, "export", False)
    ]


async def test_exports_copy_inside_the_store_and_stream_where_it_cannot(
    env: ExportEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plugins.actions.export")
    data = blob(BIG, 1)
    image = await env.image(data)
    answer = await env.export(image.uuid, env.path("copied"))
    assert answer.status == 200, answer.body
    expected = "stream" if env.harness.name == "manta-v2" else "copy"
    assert export_methods(caplog) == [("ok", expected)]
    assert await env.read(env.path("copied.zfs")) == data
    info = await env.harness.target.stat(env.path("copied.zfs"))
    assert info is not None and info.size == len(data)
    assert info.content_md5 == md5_b64(data) == image.files[0].content_md5
    assert await env.harness.leftovers() == []


async def test_manta_v2s_refusal_is_asked_once_per_target(env: ExportEnv) -> None:
    if env.harness.name != "manta-v2":
        pytest.skip("only Manta v2 refuses SnapLinks")
    image = await env.image(blob(4096, 2))
    for name in ("one", "two", "three"):
        assert (await env.export(image.uuid, env.path(name))).status == 200
    links = [r for r in env.harness.server.requests if r.get("route") == "PutLink"]
    assert [r["res"]["statusCode"] for r in links] == [403]


async def test_a_failing_copy_keeps_the_previous_export_whole(env: ExportEnv) -> None:
    """The store refuses the copy (a SnapLink PUT, or an S3 copy request, failing past the
    retries): the export answers an error, and the earlier export is there byte for byte."""
    if env.harness.name == "manta-v2":
        pytest.skip("Manta v2 never copies")
    old, new = blob(8192, 3), blob(8192, 4)  # one SnapLink, or one CopyObject
    first = await env.image(old, name="old")
    second = await env.image(new, name="new")
    assert (await env.export(first.uuid, env.path("img"))).status == 200
    manifest_before = await env.read(env.path("img.imgmanifest"))
    # Manta: the SnapLink is a PUT of the file path; S3: CopyObject and UploadPartCopy are
    # PUTs of the destination key too (the proxy sees the key in the path).
    env.harness.faults.add(method="PUT", path=r".*/img\.zfs.*", status=500, times=RETRIES + 1)
    answer = await env.export(second.uuid, env.path("img"))
    assert answer.status >= 500, answer.body
    assert await env.read(env.path("img.zfs")) == old
    assert await env.read(env.path("img.imgmanifest")) == manifest_before
    assert await env.harness.leftovers() == []
    names = [i.path async for i in await env.harness.target.list_directory(env.path())]
    assert sorted(names) == [env.path("img.imgmanifest"), env.path("img.zfs")]


async def test_a_failing_part_copy_aborts_the_upload(env: ExportEnv) -> None:
    """S3 above the copy threshold: one UploadPartCopy part fails past its retries; the
    multipart upload is aborted (nothing left for S3 to bill) and the previous export stays."""
    if env.harness.name != "s3":
        pytest.skip("only S3 copies in parts")
    old, new = blob(BIG, 5), blob(BIG, 6)
    first = await env.image(old, name="old")
    second = await env.image(new, name="new")
    assert (await env.export(first.uuid, env.path("img"))).status == 200
    # Above the threshold the only PUTs of the key are UploadPartCopy requests: fail them all.
    env.harness.faults.add(method="PUT", path=r"/img\.zfs$", status=500, times=50)
    proxy = env.harness.extra["proxy"]
    proxy.requests.clear()
    answer = await env.export(second.uuid, env.path("img"))
    assert answer.status >= 500, answer.body
    assert await env.read(env.path("img.zfs")) == old
    assert await env.harness.leftovers() == []
    calls = [(method, path) for method, path, _ in proxy.requests if path.endswith("/img.zfs")]
    methods = [method for method, _ in calls]
    assert "POST" in methods  # CreateMultipartUpload ...
    assert "DELETE" in methods[methods.index("POST") :]  # ... then AbortMultipartUpload


async def test_a_store_copy_that_reports_another_md5_is_undone(env: ExportEnv) -> None:
    """The catalog's object was changed in the store behind its back (same size, other
    bytes): the copy carries the store's MD5, which differs from the one recorded at import,
    so the export fails with ImageFileCorrupt and the destination gets its old content back."""
    if env.harness.name == "manta-v2":
        pytest.skip("Manta v2 streams, and the stream is hashed on the way (another test)")
    old, new, tampered = blob(8192, 7), blob(8192, 8), blob(8192, 9)
    first = await env.image(old, name="old")
    second = await env.image(new, name="new")
    assert (await env.export(first.uuid, env.path("img"))).status == 200
    await env.put(await env.stored_file(second), tampered, "application/octet-stream")
    answer = await env.export(second.uuid, env.path("img"))
    assert answer.status == 500 and answer.body["code"] == "ImageFileCorrupt", answer.body
    assert await env.read(env.path("img.zfs")) == old


async def test_a_catalog_in_another_store_is_streamed_through_the_gateway(
    tmp_path: Path,
    aiohttp_client: Any,
    moto_s3: MotoS3,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Files in S3 (``[catalog.storage]``), exports to Manta: no store can copy across, so the
    file streams from S3's GET into Manta's PUT, hashed on the way."""
    caplog.set_level(logging.INFO, logger="plugins.actions.export")
    async with (
        open_target("s3", tmp_path / "s3", moto_s3) as files,
        open_target("manta-memory", tmp_path / "manta") as destination,
    ):
        catalog = {
            "kind": "objectstore",
            "prefix": "/operator/stor/imgapi",
            "storage": files.storage,
        }
        env = await make_env(aiohttp_client, destination, tmp_path / "gateway", catalog=catalog)
        data = blob(BIG, 10)
        image = await env.image(data)
        assert (await env.stored_file(image)).startswith("/operator/stor/imgapi/")
        answer = await env.export(image.uuid, env.path("streamed"))
        assert answer.status == 200, answer.body
        assert export_methods(caplog) == [("ok", "stream")]
        assert await env.read(env.path("streamed.zfs")) == data
        info = await destination.target.stat(env.path("streamed.zfs"))
        assert info is not None and info.content_md5 == md5_b64(data)
