"""The S3 storage plugin beyond the shared contract: settings, key mapping, directory emulation,
multipart uploads and error mapping, against moto's server (through the fault proxy)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.settings import Settings
from gateway.storage import (
    AccessDenied,
    ChecksumMismatch,
    CopyingTarget,
    ObjectNotFound,
    PartialUploadsTarget,
    StorageRequestFailed,
    StorageUnavailable,
)
from plugins.storage import s3
from plugins.storage.s3 import S3Config, S3Target, S3TargetFactory, path_to_key
from tests.support.storage_targets import (
    BUCKET,
    S3_PART_SIZE,
    MotoS3,
    TargetHarness,
    moto_s3,
    s3_target,
)

__all__ = ["moto_s3"]  # the session fixture, re-exported for pytest

MiB = 1024 * 1024
GiB = 1024 * MiB


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def body_of(data: bytes, chunk: int = MiB) -> Any:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return chunks


@pytest.fixture
async def harness(moto_s3: MotoS3) -> AsyncIterator[TargetHarness]:
    async with s3_target(moto_s3) as harness:
        yield harness


def raw(harness: TargetHarness) -> Any:
    """The target's own aiobotocore client, to look at what S3 holds."""
    assert isinstance(harness.target, S3Target)
    return harness.target.client


# --- registration and settings -------------------------------------------------------------


def test_the_gateway_finds_the_s3_kind_among_its_default_plugins() -> None:
    from gateway.server.plugin_manager import Hooks, build_plugin_manager

    pm = build_plugin_manager(Settings(load_entrypoints=False), env={})
    factory = Hooks(pm).provided().storage_targets["s3"]
    assert isinstance(factory, S3TargetFactory)


def test_the_plugin_registers_the_s3_kind() -> None:
    assert [f.name for f in s3.gateway_register_storage_targets()] == ["s3"]


def test_settings_defaults() -> None:
    target = S3TargetFactory().create(
        {"kind": "s3", "bucket": "images", "endpoint_url": "http://127.0.0.1:5000"}, Settings()
    )
    assert isinstance(target, S3Target)
    assert target.public_url == "http://127.0.0.1:5000/images"
    assert target.config.part_size == 16 * MiB
    assert target.config.copy_multipart_threshold == 5 * GiB
    assert target.config.copy_part_size == 512 * MiB
    aws = S3Config.from_mapping({"bucket": "images", "region": "eu-west-1"})
    assert aws.public_url == "https://images.s3.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bucket": None}, "bucket is required"),
        ({"part_size": MiB}, "part_size must be an integer >= 5242880"),
        ({"max_concurrency": 0}, "max_concurrency must be an integer >= 1"),
        ({"addressing_style": "sideways"}, "addressing_style must be"),
        ({"access_key": "AKIA"}, "both access_key and secret_key"),
        ({"colour": "blue"}, "unknown setting"),
        ({"copy_multipart_threshold": 0}, "copy_multipart_threshold must be an integer from 1 to"),
        ({"copy_multipart_threshold": 5 * GiB + 1}, r"to 5368709120, got 5368709121"),
        ({"copy_multipart_threshold": "1GiB"}, "copy_multipart_threshold must be an integer"),
        ({"copy_part_size": MiB}, "copy_part_size must be an integer from 5242880 to 5368709120"),
        ({"copy_part_size": 5 * GiB + 1}, "copy_part_size must be an integer from 5242880 to"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(change: dict[str, Any], message: str) -> None:
    config: dict[str, Any] = {"kind": "s3", "bucket": "images"}
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        S3TargetFactory().create(config, Settings())


def test_copy_settings_take_s3s_limits_and_environment_strings() -> None:
    config = S3Config.from_mapping(
        {"bucket": "images", "copy_multipart_threshold": 5 * GiB, "copy_part_size": "6291456"}
    )
    assert config.copy_multipart_threshold == 5 * GiB  # CopyObject's own limit, inclusive
    assert config.copy_part_size == 6 * MiB


def test_manta_paths_map_to_keys() -> None:
    assert path_to_key("/bob/stor/a/b") == "bob/stor/a/b"
    assert path_to_key("/bob//stor/a/") == "bob/stor/a"
    for bad in ("bob/stor", "/bob/stor/../alice", "/"):
        with pytest.raises(ValueError):
            path_to_key(bad)


# --- directories over S3 -------------------------------------------------------------------


async def test_mkdir_writes_a_zero_byte_marker(harness: TargetHarness) -> None:
    await harness.target.mkdir(harness.path("exports"))
    head = await raw(harness).head_object(Bucket=BUCKET, Key="bob/stor/exports/")
    assert head["ContentLength"] == 0


async def test_keys_under_a_prefix_make_a_directory_without_a_marker(
    harness: TargetHarness,
) -> None:
    await raw(harness).put_object(Bucket=BUCKET, Key="bob/stor/implicit/deep/x", Body=b"x")
    for path in (harness.path("implicit"), harness.path("implicit", "deep")):
        info = await harness.target.stat(path)
        assert info is not None and info.is_directory, path
    listed = [e async for e in await harness.target.list_directory(harness.path("implicit"))]
    assert [(e.path, e.type) for e in listed] == [(harness.path("implicit", "deep"), "directory")]


async def test_objects_are_written_at_the_mapped_key(harness: TargetHarness) -> None:
    data = b"mapped"
    await harness.target.put_object(
        harness.path("a", "b.txt"),
        body_of(data),
        size=len(data),
        content_md5=md5_b64(data),
        content_type="text/plain",
    )
    got = await raw(harness).get_object(Bucket=BUCKET, Key="bob/stor/a/b.txt")
    assert await got["Body"].read() == data
    assert got["ContentType"] == "text/plain"


# --- uploads -------------------------------------------------------------------------------


async def test_below_the_threshold_one_put_is_made(harness: TargetHarness) -> None:
    data = os.urandom(S3_PART_SIZE - 1)
    info = await harness.target.put_object(
        harness.path("small"),
        body_of(data),
        size=len(data),
        content_md5=md5_b64(data),
        content_type="application/octet-stream",
    )
    assert info.etag is not None and "-" not in info.etag
    assert info.etag == hashlib.md5(data).hexdigest()


async def test_above_the_threshold_a_multipart_upload_with_bounded_parts(
    harness: TargetHarness,
) -> None:
    data = os.urandom(2 * S3_PART_SIZE + 1000)
    md5 = md5_b64(data)
    info = await harness.target.put_object(
        harness.path("big"),
        body_of(data, chunk=700_000),  # chunks that straddle part boundaries
        size=len(data),
        content_md5=md5,
        content_type="application/octet-stream",
    )
    assert info.etag is not None and info.etag.endswith("-3")
    assert info.content_md5 == md5
    assert harness.extra["proxy"].max_in_flight["PUT"] <= harness.storage["max_concurrency"]
    stat = await harness.target.stat(harness.path("big"))
    assert stat is not None and stat.content_md5 == md5 and stat.size == len(data)
    assert await harness.leftovers() == []


async def test_parts_in_flight_never_exceed_max_concurrency(moto_s3: MotoS3) -> None:
    data = os.urandom(2 * S3_PART_SIZE + 10)
    async with s3_target(moto_s3, max_concurrency=1) as harness:
        await harness.target.put_object(
            harness.path("one-at-a-time"),
            body_of(data),
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
        assert harness.extra["proxy"].max_in_flight["PUT"] == 1
        info = await harness.target.stat(harness.path("one-at-a-time"))
        assert info is not None and info.etag is not None and info.etag.endswith("-3")


async def test_a_failing_part_is_retried(harness: TargetHarness) -> None:
    data = os.urandom(S3_PART_SIZE + 10)
    rule = harness.faults.add(method="PUT", path=r"/retried-part$", status=503, code="SlowDown")
    await harness.target.put_object(
        harness.path("retried-part"),
        body_of(data),
        size=len(data),
        content_md5=md5_b64(data),
        content_type="application/octet-stream",
    )
    assert rule.hits == 1
    got = await raw(harness).get_object(Bucket=BUCKET, Key="bob/stor/retried-part")
    assert hashlib.md5(await got["Body"].read()).digest() == hashlib.md5(data).digest()


# Only the plugin's own loop retries: botocore's retries (and aiohttp's silent resend of an
# idempotent request on a dropped connection) would multiply ``retries``.
@pytest.mark.parametrize("fault", ["cut", "503"])
@pytest.mark.parametrize("size", [1024, S3_PART_SIZE + 10], ids=["single", "multipart"])
async def test_a_lasting_failure_is_tried_exactly_retries_plus_one_times(
    harness: TargetHarness, fault: str, size: int
) -> None:
    data = os.urandom(size)
    path = harness.path(f"counted-{fault}")
    # The multipart upload's parts go to the same key with ?partNumber=..&uploadId=..
    spec: dict[str, Any] = {"cut_after": 512} if fault == "cut" else {"status": 503}
    rule = harness.faults.add(method="PUT", path=rf"/counted-{fault}$", times=99, **spec)
    with pytest.raises(StorageUnavailable):
        await harness.target.put_object(
            path,
            body_of(data),
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
    retries = harness.storage["retries"]
    if size <= S3_PART_SIZE:
        assert rule.hits == retries + 1
    else:  # two parts in flight, each tried retries + 1 times at most
        assert retries + 1 <= rule.hits <= 2 * (retries + 1)
    assert await harness.leftovers() == []


async def test_a_lasting_failure_on_a_read_is_tried_exactly_retries_plus_one_times(
    harness: TargetHarness,
) -> None:
    rule = harness.faults.add(method="HEAD", path=r"/counted-head$", status=503, times=99)
    harness.faults.add(method="GET", path=r"/bucket-never-listed$", status=503, times=99)
    with pytest.raises(StorageUnavailable):
        await harness.target.stat(harness.path("counted-head"))
    assert rule.hits == harness.storage["retries"] + 1


async def test_a_part_that_keeps_failing_aborts_the_upload(harness: TargetHarness) -> None:
    data = os.urandom(2 * S3_PART_SIZE)
    harness.faults.add(method="PUT", path=r"/doomed$", status=500, code="InternalError", times=50)
    with pytest.raises(StorageUnavailable):
        await harness.target.put_object(
            harness.path("doomed"),
            body_of(data),
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
    assert await harness.leftovers() == []
    assert await harness.target.stat(harness.path("doomed")) is None


async def test_a_wrong_md5_on_a_multipart_upload_is_caught_before_completion(
    harness: TargetHarness,
) -> None:
    data = os.urandom(S3_PART_SIZE + 10)
    with pytest.raises(ChecksumMismatch):
        await harness.target.put_object(
            harness.path("bad-md5"),
            body_of(data),
            size=len(data),
            content_md5=md5_b64(b"something else"),
            content_type="application/octet-stream",
        )
    assert await harness.leftovers() == []
    assert await harness.target.stat(harness.path("bad-md5")) is None


async def test_a_body_shorter_than_its_size_is_refused(harness: TargetHarness) -> None:
    with pytest.raises(StorageRequestFailed, match="ended after 3 of 10 bytes"):
        await harness.target.put_object(
            harness.path("short"),
            body_of(b"abc"),
            size=10,
            content_md5=None,
            content_type="application/octet-stream",
        )
    assert await harness.target.stat(harness.path("short")) is None


# --- copies --------------------------------------------------------------------------------


async def put(harness: TargetHarness, name: str, data: bytes, content_type: str) -> str:
    path = harness.path(name)
    await harness.target.put_object(
        path, body_of(data), size=len(data), content_md5=md5_b64(data), content_type=content_type
    )
    return path


async def read(harness: TargetHarness, path: str) -> bytes:
    return b"".join([chunk async for chunk in await harness.target.get_object(path)])


def record_calls(harness: TargetHarness) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 operation the target makes from now on (each attempt), with its parameters."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    raw(harness).meta.events.register("provide-client-params.s3", record)
    return calls


def copy_of(harness: TargetHarness) -> CopyingTarget:
    assert isinstance(harness.target, CopyingTarget)
    return harness.target


async def test_up_to_the_copy_threshold_one_copy_object_keeps_bytes_md5_and_type(
    harness: TargetHarness,
) -> None:
    data = os.urandom(S3_PART_SIZE)  # at the threshold: still one CopyObject
    source = await put(harness, "src", data, "text/plain")
    destination = await put(harness, "dst", b"replaced", "application/octet-stream")
    source_etag = (await raw(harness).head_object(Bucket=BUCKET, Key="bob/stor/src"))["ETag"]
    calls = record_calls(harness)
    info = await copy_of(harness).copy_object(source, destination)
    assert [name for name, _ in calls] == ["HeadObject", "CopyObject"]
    params = calls[1][1]
    assert params["CopySourceIfMatch"] == source_etag
    assert params["MetadataDirective"] == "COPY"
    assert info.path == destination and info.type == "object" and info.size == len(data)
    assert info.content_md5 == md5_b64(data) and info.content_type == "text/plain"
    assert info.etag == hashlib.md5(data).hexdigest()
    assert await read(harness, destination) == data
    stat = await harness.target.stat(destination)
    assert stat is not None
    assert (stat.size, stat.content_md5, stat.content_type, stat.etag) == (
        len(data),
        md5_b64(data),
        "text/plain",
        info.etag,
    )


async def test_above_the_copy_threshold_parts_are_copied_by_range(harness: TargetHarness) -> None:
    data = os.urandom(12 * MiB)
    md5 = md5_b64(data)
    source = await put(harness, "big-src", data, "application/x-gzip")
    source_etag = (await raw(harness).head_object(Bucket=BUCKET, Key="bob/stor/big-src"))["ETag"]
    calls = record_calls(harness)
    destination = harness.path("big-dst")
    info = await copy_of(harness).copy_object(source, destination)
    names = [name for name, _ in calls]
    assert names[:2] == ["HeadObject", "CreateMultipartUpload"]
    assert names[-1] == "CompleteMultipartUpload" and names.count("UploadPartCopy") == 3
    created = calls[1][1]
    assert created["Metadata"] == {"content-md5": md5}
    assert created["ContentType"] == "application/x-gzip"
    part_copies = [params for name, params in calls if name == "UploadPartCopy"]
    by_number = sorted(part_copies, key=lambda p: p["PartNumber"])
    assert [p["CopySourceRange"] for p in by_number] == [
        f"bytes=0-{5 * MiB - 1}",
        f"bytes={5 * MiB}-{10 * MiB - 1}",
        f"bytes={10 * MiB}-{12 * MiB - 1}",
    ]
    assert {p["CopySourceIfMatch"] for p in part_copies} == {source_etag}
    assert harness.extra["proxy"].max_in_flight["PUT"] <= harness.storage["max_concurrency"]
    assert info.etag is not None and info.etag.endswith("-3")
    assert (info.size, info.content_md5, info.content_type) == (
        len(data),
        md5,
        "application/x-gzip",
    )
    assert await read(harness, destination) == data
    stat = await harness.target.stat(destination)
    assert stat is not None and stat.content_md5 == md5 and stat.etag == info.etag
    assert stat.content_type == "application/x-gzip"
    assert await harness.leftovers() == []


async def test_a_multipart_copy_keeps_an_md5_the_source_had_only_as_its_etag(
    harness: TargetHarness,
) -> None:
    data = os.urandom(S3_PART_SIZE + 10)  # written by someone else: one PUT, no MD5 metadata
    await raw(harness).put_object(Bucket=BUCKET, Key="bob/stor/foreign", Body=data)
    info = await copy_of(harness).copy_object(harness.path("foreign"), harness.path("mine"))
    assert info.etag is not None and info.etag.endswith("-2")
    stat = await harness.target.stat(harness.path("mine"))
    assert stat is not None and stat.content_md5 == md5_b64(data) == info.content_md5


async def test_the_copy_part_size_grows_to_stay_within_s3s_part_count(
    harness: TargetHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("plugins.storage.s3.copy.MAX_PARTS", 2)
    data = os.urandom(12 * MiB)
    source = await put(harness, "src", data, "application/octet-stream")
    info = await copy_of(harness).copy_object(source, harness.path("dst"))
    assert info.etag is not None and info.etag.endswith("-2")  # 6 MiB parts, not 5 MiB
    assert await read(harness, harness.path("dst")) == data


# UploadPartCopy is a PUT on the destination key (with ?partNumber=..&uploadId=..); the
# multipart upload's create and complete are POSTs, its abort a DELETE.
@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ({"status": 503, "code": "SlowDown", "times": 99}, StorageUnavailable),
        ({"status": 400, "code": "InvalidRequest", "times": 1}, StorageRequestFailed),
    ],
    ids=["lasting-503", "one-400"],
)
async def test_a_failing_part_copy_aborts_and_keeps_the_destination(
    harness: TargetHarness, fault: dict[str, Any], raised: type[Exception]
) -> None:
    data = os.urandom(12 * MiB)
    source = await put(harness, "src", data, "application/octet-stream")
    destination = await put(harness, "kept", b"what was there", "text/plain")
    rule = harness.faults.add(method="PUT", path=r"/kept$", **fault)
    with pytest.raises(raised):
        await copy_of(harness).copy_object(source, destination)
    if fault["times"] > 1:  # two part copies in flight, each tried retries + 1 times at most
        retries = harness.storage["retries"]
        assert retries + 1 <= rule.hits <= 2 * (retries + 1)
    else:
        assert rule.hits == 1
    assert await harness.leftovers() == []
    assert await read(harness, destination) == b"what was there"
    stat = await harness.target.stat(destination)
    assert stat is not None and stat.content_md5 == md5_b64(b"what was there")


# moto ignores x-amz-copy-source-if-match (it implements only -if-none-match, on CopyObject):
# the 412 that S3 answers when the source changed is injected here.
@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["single", "multipart"])
async def test_a_source_replaced_during_the_copy_fails_it(
    harness: TargetHarness, size: int
) -> None:
    source = await put(harness, "src", os.urandom(size), "application/octet-stream")
    harness.faults.add(method="PUT", path=r"/dst$", status=412, code="PreconditionFailed")
    with pytest.raises(StorageRequestFailed, match="changed while it was being copied") as raised:
        await copy_of(harness).copy_object(source, harness.path("dst"))
    assert raised.value.code == "PreconditionFailed" and raised.value.path == source
    assert await harness.leftovers() == []
    assert await harness.target.stat(harness.path("dst")) is None


async def test_a_source_deleted_during_a_multipart_copy_is_not_found(
    harness: TargetHarness,
) -> None:
    source = await put(harness, "src", os.urandom(12 * MiB), "application/octet-stream")
    harness.faults.add(method="PUT", path=r"/dst$", status=404, code="NoSuchKey")
    with pytest.raises(ObjectNotFound) as raised:
        await copy_of(harness).copy_object(source, harness.path("dst"))
    assert raised.value.path == source
    assert await harness.leftovers() == []


async def test_only_objects_are_copied(harness: TargetHarness) -> None:
    await harness.target.mkdir(harness.path("marked"))
    await raw(harness).put_object(Bucket=BUCKET, Key="bob/stor/implicit/x", Body=b"x")
    target = copy_of(harness)
    with pytest.raises(ObjectNotFound):
        await target.copy_object(harness.path("missing"), harness.path("dst"))
    for directory in ("marked", "implicit"):
        with pytest.raises(StorageRequestFailed, match="is a directory"):
            await target.copy_object(harness.path(directory), harness.path("dst"))
    with pytest.raises(StorageRequestFailed, match="is a directory"):
        await target.copy_object(f"/{harness.login}/stor", harness.path("dst"))
    assert await harness.target.stat(harness.path("dst")) is None


async def test_copying_an_object_onto_itself_leaves_it_as_it_is(harness: TargetHarness) -> None:
    data = os.urandom(1000)
    source = await put(harness, "self", data, "text/plain")
    calls = record_calls(harness)
    info = await copy_of(harness).copy_object(source, source)
    assert [name for name, _ in calls] == ["HeadObject"]  # S3 refuses an unchanged self-copy
    assert (info.size, info.content_md5, info.content_type) == (
        len(data),
        md5_b64(data),
        "text/plain",
    )
    assert await read(harness, source) == data


# --- errors --------------------------------------------------------------------------------


async def test_a_missing_bucket_is_a_clear_error(moto_s3: MotoS3) -> None:
    async with s3_target(moto_s3, bucket="no-such-bucket") as harness:
        with pytest.raises(StorageRequestFailed, match="no-such-bucket") as raised:
            await harness.target.put_object(
                harness.path("x"), body_of(b"x"), size=1, content_md5=None, content_type="a/b"
            )
        assert raised.value.code == "NoSuchBucket"
        with pytest.raises(StorageRequestFailed):
            await harness.target.stat(harness.path("x"))


async def test_access_denied_is_mapped_and_not_retried(harness: TargetHarness) -> None:
    rule = harness.faults.add(path=r"/secret$", status=403, code="AccessDenied", times=5)
    with pytest.raises(AccessDenied):
        await harness.target.put_object(
            harness.path("secret"), body_of(b"x"), size=1, content_md5=None, content_type="a/b"
        )
    assert rule.hits == 1


async def test_an_unreachable_endpoint_is_storage_unavailable(tmp_path: Path) -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()  # the port is now closed: connections are refused
    target = S3TargetFactory().create(
        {
            "bucket": BUCKET,
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "retries": 1,
            "retry_delay": 0.01,
        },
        Settings(),
    )
    await target.open()
    try:
        with pytest.raises(StorageUnavailable):
            await target.stat("/bob/stor/x")
    finally:
        await target.close()


async def test_partial_uploads_of_exactly_one_path_are_discarded(harness: TargetHarness) -> None:
    """What a dead writer left at one key is aborted; a neighbour's upload is not touched."""
    target = harness.target
    assert isinstance(target, PartialUploadsTarget)
    for key in ("bob/stor/img.zfs", "bob/stor/img.zfs", "bob/stor/img.zfs.other"):
        await raw(harness).create_multipart_upload(Bucket=BUCKET, Key=key)
    assert await target.discard_partial_uploads("/bob/stor/img.zfs") == 2
    assert await harness.leftovers() == ["bob/stor/img.zfs.other"]
    assert await target.discard_partial_uploads("/bob/stor/img.zfs") == 0
