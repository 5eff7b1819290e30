"""The storage-target contract (``gateway.storage.StorageTarget``), once per target.

Written only against the protocol and the harness's capability flags: a target passes by
being added to ``storage_targets.TARGET_NAMES``, never by editing these tests.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from gateway.storage import (
    BodyFactory,
    ChecksumMismatch,
    DirectoryDoesNotExist,
    ObjectNotFound,
    ParentNotDirectory,
    StorageTarget,
    StorageUnavailable,
)
from tests.support.storage_targets import RETRIES, TargetHarness


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def body_of(data: bytes, chunk: int = 64 * 1024) -> BodyFactory:
    """A BodyFactory over ``data``, in ``chunk``-sized pieces."""

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return chunks


class SourceCorrupt(Exception):
    """What a body iterator raises; it must come out of put_object unchanged."""


def failing_body(data: bytes, fail_after: int, error: BaseException) -> BodyFactory:
    """Yields ``fail_after`` bytes of ``data`` in small chunks, then raises ``error``."""

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < fail_after:
            piece = data[sent : min(fail_after, sent + 16 * 1024)]
            sent += len(piece)
            yield piece
        raise error

    return chunks


async def read_all(target: StorageTarget, path: str) -> bytes:
    return b"".join([chunk async for chunk in await target.get_object(path)])


async def put(
    target: StorageTarget, path: str, data: bytes, content_type: str = "application/octet-stream"
) -> None:
    await target.put_object(
        path, body_of(data), size=len(data), content_md5=md5_b64(data), content_type=content_type
    )


# --- stat ----------------------------------------------------------------------------------


async def test_stat_of_a_missing_path_is_none(harness: TargetHarness) -> None:
    assert await harness.target.stat(harness.path("nothing-here")) is None


async def test_the_account_trees_are_directories(harness: TargetHarness) -> None:
    info = await harness.target.stat(f"/{harness.login}/stor")
    assert info is not None and info.is_directory


async def test_stat_of_an_object(harness: TargetHarness) -> None:
    data = b'{"v": 2}'
    path = harness.path("manifest.json")
    await put(harness.target, path, data, "application/json")
    info = await harness.target.stat(path)
    assert info is not None
    assert info.type == "object" and not info.is_directory
    assert info.size == len(data)
    assert info.content_md5 == md5_b64(data)
    assert info.content_type == "application/json"
    assert info.path == path


async def test_stat_of_a_directory(harness: TargetHarness) -> None:
    await harness.target.mkdir(harness.path("images"))
    info = await harness.target.stat(harness.path("images"))
    assert info is not None and info.is_directory


# --- put / get -----------------------------------------------------------------------------


async def test_put_returns_what_was_written_and_get_reads_it_back(harness: TargetHarness) -> None:
    data = os.urandom(300 * 1024 + 7)
    path = harness.path("blob.bin")
    info = await harness.target.put_object(
        path,
        body_of(data, chunk=50_000),
        size=len(data),
        content_md5=md5_b64(data),
        content_type="application/octet-stream",
    )
    assert info.path == path and info.type == "object" and info.size == len(data)
    assert info.content_md5 == md5_b64(data)
    assert await read_all(harness.target, path) == data


async def test_put_without_md5_still_records_the_md5(harness: TargetHarness) -> None:
    data = b"no checksum given"
    path = harness.path("plain.txt")
    await harness.target.put_object(
        path, body_of(data), size=len(data), content_md5=None, content_type="text/plain"
    )
    info = await harness.target.stat(path)
    assert info is not None and info.content_md5 == md5_b64(data)


async def test_put_of_an_empty_object(harness: TargetHarness) -> None:
    path = harness.path("empty")
    await put(harness.target, path, b"")
    info = await harness.target.stat(path)
    assert info is not None and info.size == 0
    assert await read_all(harness.target, path) == b""


async def test_put_overwrites(harness: TargetHarness) -> None:
    path = harness.path("twice")
    await put(harness.target, path, b"first version")
    await put(harness.target, path, b"second")
    assert await read_all(harness.target, path) == b"second"


async def test_names_that_need_encoding(harness: TargetHarness) -> None:
    await harness.target.mkdir(harness.path("with space"))
    path = harness.path("with space", "ünïcode & 100%?#.txt")
    await put(harness.target, path, b"odd name")
    assert await read_all(harness.target, path) == b"odd name"
    names = [e.path async for e in await harness.target.list_directory(harness.path("with space"))]
    assert names == [path]


async def test_get_of_a_missing_object_raises_object_not_found(harness: TargetHarness) -> None:
    with pytest.raises(ObjectNotFound):
        await read_all(harness.target, harness.path("missing"))


async def test_a_large_object_streams_through(harness: TargetHarness) -> None:
    """12 MiB: a multipart upload on S3 (5 MiB parts), a single streaming PUT on Manta."""
    data = os.urandom(12 * 1024 * 1024 + 123)
    path = harness.path("big.zfs.gz")
    await harness.target.put_object(
        path,
        body_of(data, chunk=1024 * 1024),
        size=len(data),
        content_md5=md5_b64(data),
        content_type="application/octet-stream",
    )
    digest = hashlib.md5()
    size = 0
    async for chunk in await harness.target.get_object(path):
        digest.update(chunk)
        size += len(chunk)
    assert size == len(data)
    assert digest.digest() == hashlib.md5(data).digest()
    info = await harness.target.stat(path)
    assert info is not None and info.content_md5 == md5_b64(data)
    assert await harness.leftovers() == []


# --- directories ---------------------------------------------------------------------------


async def test_mkdir_is_idempotent_and_keeps_contents(harness: TargetHarness) -> None:
    directory = harness.path("exports")
    await harness.target.mkdir(directory)
    await put(harness.target, f"{directory}/a", b"a")
    await harness.target.mkdir(directory)
    info = await harness.target.stat(directory)
    assert info is not None and info.is_directory
    assert await read_all(harness.target, f"{directory}/a") == b"a"


async def test_list_directory(harness: TargetHarness) -> None:
    directory = harness.path("listing")
    await harness.target.mkdir(directory)
    await put(harness.target, f"{directory}/b.imgmanifest", b"{}")
    await put(harness.target, f"{directory}/a.zfs", b"12345")
    await harness.target.mkdir(f"{directory}/sub")
    await put(harness.target, f"{directory}/sub/deeper", b"not listed")
    entries = {e.path: e async for e in await harness.target.list_directory(directory)}
    assert sorted(entries) == [
        f"{directory}/a.zfs",
        f"{directory}/b.imgmanifest",
        f"{directory}/sub",
    ]
    assert entries[f"{directory}/a.zfs"].type == "object"
    assert entries[f"{directory}/a.zfs"].size == 5
    assert entries[f"{directory}/sub"].is_directory


async def test_list_of_an_empty_directory(harness: TargetHarness) -> None:
    await harness.target.mkdir(harness.path("void"))
    assert [e async for e in await harness.target.list_directory(harness.path("void"))] == []


async def test_list_of_a_missing_directory_raises_object_not_found(
    harness: TargetHarness,
) -> None:
    with pytest.raises(ObjectNotFound):
        await harness.target.list_directory(harness.path("no-such-dir"))


async def test_put_into_a_missing_parent(harness: TargetHarness) -> None:
    path = harness.path("missing-dir", "image.zfs")
    if harness.has_parents:
        with pytest.raises(DirectoryDoesNotExist) as raised:
            await put(harness.target, path, b"data")
        assert raised.value.path == harness.path("missing-dir")
        assert await harness.target.stat(path) is None
    else:  # S3: no parents; the write succeeds and the "directory" appears (docs/storage.md)
        await put(harness.target, path, b"data")
        info = await harness.target.stat(harness.path("missing-dir"))
        assert info is not None and info.is_directory


async def test_put_under_an_object(harness: TargetHarness) -> None:
    await put(harness.target, harness.path("plain"), b"an object")
    path = harness.path("plain", "child")
    if harness.has_parents:
        with pytest.raises(ParentNotDirectory) as raised:
            await put(harness.target, path, b"data")
        assert raised.value.path == harness.path("plain")
    else:  # S3: the key and the "directory" of the same name coexist (docs/storage.md)
        await put(harness.target, path, b"data")
        assert await read_all(harness.target, harness.path("plain")) == b"an object"


async def test_mkdir_in_a_missing_parent(harness: TargetHarness) -> None:
    path = harness.path("nope", "sub")
    if harness.has_parents:
        with pytest.raises(DirectoryDoesNotExist):
            await harness.target.mkdir(path)
    else:
        await harness.target.mkdir(path)
    info = await harness.target.stat(path)
    assert (info is None) == harness.has_parents


# --- delete --------------------------------------------------------------------------------


async def test_delete_object(harness: TargetHarness) -> None:
    path = harness.path("doomed")
    await put(harness.target, path, b"bye")
    await harness.target.delete_object(path)
    assert await harness.target.stat(path) is None


async def test_delete_of_a_missing_object_is_not_an_error(harness: TargetHarness) -> None:
    await harness.target.delete_object(harness.path("never-was"))
    assert await harness.target.stat(harness.path("never-was")) is None


# --- failed uploads leave nothing behind ---------------------------------------------------


async def test_a_wrong_md5_is_a_checksum_mismatch_and_leaves_nothing(
    harness: TargetHarness,
) -> None:
    data = b"the real bytes"
    path = harness.path("bad-md5")
    with pytest.raises(ChecksumMismatch):
        await harness.target.put_object(
            path,
            body_of(data),
            size=len(data),
            content_md5=md5_b64(b"other bytes"),
            content_type="application/octet-stream",
        )
    assert await harness.target.stat(path) is None
    assert await harness.leftovers() == []


@pytest.mark.parametrize(
    ("size", "fail_after"),
    [(200 * 1024, 100 * 1024), (200 * 1024, 200 * 1024), (11 * 1024 * 1024, 7 * 1024 * 1024)],
    ids=["midway", "after-the-last-byte", "large-midway"],
)
async def test_a_body_error_propagates_unchanged_and_leaves_nothing(
    harness: TargetHarness, size: int, fail_after: int
) -> None:
    data = os.urandom(size)
    path = harness.path("corrupt.zfs")
    error = SourceCorrupt("sha1 mismatch")
    with pytest.raises(SourceCorrupt) as raised:
        await harness.target.put_object(
            path,
            failing_body(data, fail_after, error),
            size=size,
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
    assert raised.value is error
    assert await harness.target.stat(path) is None
    assert await harness.leftovers() == []


async def test_a_body_error_keeps_the_previous_version(harness: TargetHarness) -> None:
    path = harness.path("kept")
    await put(harness.target, path, b"old and good")
    data = os.urandom(64 * 1024)
    with pytest.raises(SourceCorrupt):
        await harness.target.put_object(
            path,
            failing_body(data, 32 * 1024, SourceCorrupt()),
            size=len(data),
            content_md5=md5_b64(data),
            content_type="application/octet-stream",
        )
    assert await read_all(harness.target, path) == b"old and good"


# --- transient failures are retried --------------------------------------------------------


async def test_put_is_retried_after_a_503(harness: TargetHarness) -> None:
    data = os.urandom(100 * 1024)
    path = harness.path("retried.zfs")
    rule = harness.faults.add(
        method="PUT", path=r"retried\.zfs$", status=503, code="ServiceUnavailable"
    )
    await put(harness.target, path, data)
    assert rule.hits == 1
    assert await read_all(harness.target, path) == data


async def test_put_is_retried_after_a_cut_connection(harness: TargetHarness) -> None:
    data = os.urandom(256 * 1024)
    path = harness.path("cut.zfs")
    rule = harness.faults.add(method="PUT", path=r"cut\.zfs$", cut_after=64 * 1024)
    await put(harness.target, path, data)
    assert rule.hits == 1
    assert await read_all(harness.target, path) == data


async def test_a_lasting_503_is_storage_unavailable(harness: TargetHarness) -> None:
    path = harness.path("down.zfs")
    harness.faults.add(
        method="PUT", path=r"down\.zfs$", status=503, code="ServiceUnavailable", times=RETRIES + 1
    )
    with pytest.raises(StorageUnavailable):
        await put(harness.target, path, b"never stored")
    assert await harness.target.stat(path) is None


async def test_reads_are_retried_after_a_503(harness: TargetHarness) -> None:
    path = harness.path("read-me")
    await put(harness.target, path, b"content")
    on_get = harness.faults.add(
        method="GET", path=r"read-me$", status=503, code="ServiceUnavailable"
    )
    on_head = harness.faults.add(
        method="HEAD", path=r"read-me$", status=503, code="ServiceUnavailable"
    )
    assert await read_all(harness.target, path) == b"content"
    info = await harness.target.stat(path)
    assert info is not None and info.size == len(b"content")
    assert (on_get.hits, on_head.hits) == (1, 1)


async def test_a_lasting_503_on_reads_is_storage_unavailable(harness: TargetHarness) -> None:
    harness.faults.add(path=r"unreachable", status=503, code="ServiceUnavailable", times=99)
    with pytest.raises(StorageUnavailable):
        await harness.target.stat(harness.path("unreachable"))
