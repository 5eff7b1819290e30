"""The optional copy capability (``gateway.storage.CopyingTarget``), once per target.

Written only against the protocol and the harness's capability flags: a target that copies
(``can_copy``) must keep what ``copy_object`` promises; one whose store refuses copies (Manta
v2) must raise ``CopyUnsupported`` and leave the destination alone.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from gateway.server.plugin_manager import Hooks, build_plugin_manager, create_component
from gateway.settings import Settings
from gateway.storage import (
    BodyFactory,
    CopyingTarget,
    CopyUnsupported,
    DirectoryDoesNotExist,
    ObjectNotFound,
    StorageRequestFailed,
    StorageTarget,
    StorageUnavailable,
)
from tests.support.storage_targets import TargetHarness

#: A copy in one request, and one above every target's multipart threshold (S3: 5 MiB).
SIZES = {"small": 100 * 1024 + 1, "large": 12 * 1024 * 1024 + 123}
CONTENT_TYPE = "application/x-bzip2"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def body_of(data: bytes, chunk: int = 1024 * 1024) -> BodyFactory:
    """A BodyFactory over ``data``, in ``chunk``-sized pieces."""

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return chunks


async def read_all(target: StorageTarget, path: str) -> bytes:
    return b"".join([chunk async for chunk in await target.get_object(path)])


async def put(
    target: StorageTarget, path: str, data: bytes, content_type: str = CONTENT_TYPE
) -> None:
    await target.put_object(
        path, body_of(data), size=len(data), content_md5=md5_b64(data), content_type=content_type
    )


@pytest.fixture
def copier(harness: TargetHarness) -> CopyingTarget:
    """The target, for the tests of a store that copies; the others skip."""
    if not harness.can_copy:
        pytest.skip("this store refuses copies (can_copy is False)")
    assert isinstance(harness.target, CopyingTarget)
    return harness.target


async def test_every_target_offers_copy(harness: TargetHarness) -> None:
    assert isinstance(harness.target, CopyingTarget)


# --- a store that copies -------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_copy_keeps_bytes_size_md5_and_content_type(
    harness: TargetHarness, copier: CopyingTarget, size: int
) -> None:
    data = os.urandom(size)
    source, destination = harness.path("original.zfs"), harness.path("copy.zfs")
    await put(copier, source, data)
    info = await copier.copy_object(source, destination)
    assert info.path == destination and info.type == "object"
    assert info.size == size
    assert info.content_md5 == md5_b64(data)
    assert info.content_type == CONTENT_TYPE
    stat = await copier.stat(destination)
    assert stat is not None and stat.type == "object"
    assert (stat.size, stat.content_md5, stat.content_type) == (size, md5_b64(data), CONTENT_TYPE)
    assert await read_all(copier, destination) == data
    assert await read_all(copier, source) == data
    assert await harness.leftovers() == []


async def test_copy_replaces_an_existing_object(
    harness: TargetHarness, copier: CopyingTarget
) -> None:
    source, destination = harness.path("new"), harness.path("existing")
    await put(copier, destination, b"the previous, longer content", "text/plain")
    await put(copier, source, b"replacement")
    info = await copier.copy_object(source, destination)
    assert (info.size, info.content_md5) == (len(b"replacement"), md5_b64(b"replacement"))
    assert await read_all(copier, destination) == b"replacement"
    stat = await copier.stat(destination)
    assert stat is not None and stat.content_type == CONTENT_TYPE


async def test_the_copy_is_independent_of_its_source(
    harness: TargetHarness, copier: CopyingTarget
) -> None:
    source, destination = harness.path("source"), harness.path("snapshot")
    await put(copier, source, b"version one")
    await copier.copy_object(source, destination)
    await put(copier, source, b"version two, after the copy")
    assert await read_all(copier, destination) == b"version one"
    assert await read_all(copier, source) == b"version two, after the copy"
    await copier.delete_object(source)
    assert await read_all(copier, destination) == b"version one"
    stat = await copier.stat(destination)
    assert stat is not None and stat.content_md5 == md5_b64(b"version one")


async def test_copy_between_names_that_need_encoding(
    harness: TargetHarness, copier: CopyingTarget
) -> None:
    await copier.mkdir(harness.path("with space"))
    source = harness.path("with space", "ünïcode & 100%?#.txt")
    destination = harness.path("with space", "copy of ünïcode & 100%?#.txt")
    await put(copier, source, b"odd names")
    info = await copier.copy_object(source, destination)
    assert info.path == destination
    assert await read_all(copier, destination) == b"odd names"


async def test_copy_of_a_missing_source_is_object_not_found(
    harness: TargetHarness, copier: CopyingTarget
) -> None:
    destination = harness.path("from-nothing")
    with pytest.raises(ObjectNotFound):
        await copier.copy_object(harness.path("no-such-source"), destination)
    assert await copier.stat(destination) is None


async def test_copy_of_a_directory_is_refused(
    harness: TargetHarness, copier: CopyingTarget
) -> None:
    await copier.mkdir(harness.path("a-directory"))
    destination = harness.path("from-a-directory")
    with pytest.raises(StorageRequestFailed):
        await copier.copy_object(harness.path("a-directory"), destination)
    assert await copier.stat(destination) is None


async def test_copy_into_a_missing_parent(harness: TargetHarness, copier: CopyingTarget) -> None:
    source, destination = harness.path("here"), harness.path("missing-dir", "there")
    await put(copier, source, b"data")
    if harness.has_parents:
        with pytest.raises(DirectoryDoesNotExist) as raised:
            await copier.copy_object(source, destination)
        assert raised.value.path == harness.path("missing-dir")
        assert await copier.stat(destination) is None
    else:  # S3: no parents, as for put_object (docs/storage.md)
        await copier.copy_object(source, destination)
        assert await read_all(copier, destination) == b"data"


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_copy_is_retried_after_a_503(
    harness: TargetHarness, copier: CopyingTarget, size: int
) -> None:
    data = os.urandom(size)
    source, destination = harness.path("stable.zfs"), harness.path("retried-copy.zfs")
    await put(copier, source, data)
    rule = harness.faults.add(
        method="PUT", path=r"retried-copy\.zfs$", status=503, code="ServiceUnavailable"
    )
    info = await copier.copy_object(source, destination)
    assert rule.hits == 1
    assert (info.size, info.content_md5) == (size, md5_b64(data))
    assert await read_all(copier, destination) == data
    assert await harness.leftovers() == []


@pytest.mark.parametrize("previous", [b"what was there before", None], ids=["over", "into-none"])
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_a_lasting_503_is_storage_unavailable_and_keeps_the_destination(
    harness: TargetHarness, copier: CopyingTarget, size: int, previous: bytes | None
) -> None:
    source, destination = harness.path("stable.zfs"), harness.path("down-copy.zfs")
    await put(copier, source, os.urandom(size))
    if previous is not None:
        await put(copier, destination, previous)
    # Every PUT fails, more often than one request is retried (RETRIES): a multipart copy
    # retries each part on its own, so RETRIES + 1 failures spread over its parts would pass.
    harness.faults.add(
        method="PUT", path=r"down-copy\.zfs$", status=503, code="ServiceUnavailable", times=99
    )
    with pytest.raises(StorageUnavailable):
        await copier.copy_object(source, destination)
    if previous is None:
        assert await copier.stat(destination) is None
    else:
        assert await read_all(copier, destination) == previous
    assert await harness.leftovers() == []


# --- a store that refuses copies -------------------------------------------------------------


@pytest.mark.parametrize("previous", [b"what was there before", None], ids=["over", "into-none"])
async def test_a_store_that_cannot_copy_says_so_and_keeps_the_destination(
    harness: TargetHarness, previous: bytes | None
) -> None:
    if harness.can_copy:
        pytest.skip("this store copies (can_copy is True)")
    target = harness.target
    assert isinstance(target, CopyingTarget)
    source, destination = harness.path("source"), harness.path("refused-copy")
    await put(target, source, b"the source")
    if previous is not None:
        await put(target, destination, previous)
    with pytest.raises(CopyUnsupported):
        await target.copy_object(source, destination)
    if previous is None:
        assert await target.stat(destination) is None
    else:
        assert await read_all(target, destination) == previous
    assert await read_all(target, source) == b"the source"


async def test_a_target_can_copy_from_itself_and_its_twin_not_from_another_store(
    harness: TargetHarness,
) -> None:
    """``can_copy_from``: the same store reached with the same credentials (another target
    built from the same section, as a catalog's own target is) yes; another store no."""
    target = harness.target
    assert isinstance(target, CopyingTarget)
    assert target.can_copy_from(target)
    plugins = Hooks(build_plugin_manager(Settings())).provided().storage_targets
    twin = create_component("storage", harness.storage, plugins, Settings())
    assert target.can_copy_from(twin)
    elsewhere = dict(harness.storage)
    if harness.storage["kind"] == "s3":
        elsewhere["bucket"] = "another-bucket"
    else:
        elsewhere["user"] = "someone-else"
    stranger = create_component("storage", elsewhere, plugins, Settings())
    assert not target.can_copy_from(stranger)
