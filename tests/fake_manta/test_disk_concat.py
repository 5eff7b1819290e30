"""The disk backend's MPU commit join (``DiskBackend.concat``): hard links, and the copy.

Both paths are run: hard links, and the copies taken where the filesystem refuses them,
forced through the backend's documented ``use_hard_links`` switch.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fake_manta.models.backend import concat_blobs
from fake_manta.models.disk import DiskBackend
from fake_manta.models.entry import EMPTY_MD5
from fake_manta.models.running_digest import RunningDigest

MIB = 1 << 20


@pytest.fixture(params=["hard_links", "copies"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DiskBackend]:
    b = DiskBackend(tmp_path / "m")
    b.use_hard_links = request.param == "hard_links"
    await b.open()
    yield b
    await b.close()


async def put(backend: DiskBackend, data: bytes) -> str:
    writer = await backend.new_writer()
    writer.write(data)
    return writer.commit()


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def read_all(backend: DiskBackend, blob: str) -> bytes:
    return b"".join([chunk async for chunk in backend.read_blob(blob)])


def blob_files(backend: DiskBackend) -> set[Path]:
    return {p for p in backend.blob_dir.rglob("*") if p.is_file()}


async def test_join_is_the_parts_back_to_back_with_their_md5(backend: DiskBackend) -> None:
    # sizes around the 4 MiB buffer, and a tiny last part
    parts = [os.urandom(n) for n in (5 * MIB + 3, 4 * MIB, 1, 9 * MIB - 1)]
    blobs = [await put(backend, p) for p in parts]
    whole = b"".join(parts)
    result = await concat_blobs(backend, [blobs[0], None, *blobs[1:]])
    assert result.blob is not None
    assert result.size == len(whole)
    assert result.md5 == b64md5(whole)
    assert await read_all(backend, result.blob) == whole
    for blob, part in zip(blobs, parts, strict=True):  # the parts are left as they were
        assert await read_all(backend, blob) == part
    assert list(backend.tmp_dir.iterdir()) == []


async def test_join_of_nothing_is_an_empty_object(backend: DiskBackend) -> None:
    before = blob_files(backend)
    empty = await put(backend, b"")
    result = await concat_blobs(backend, [None, empty])
    assert (result.blob, result.size, result.md5) == (None, 0, EMPTY_MD5)
    assert blob_files(backend) - before == {backend.blob_path(empty)}
    assert list(backend.tmp_dir.iterdir()) == []


async def test_missing_part_fails_and_leaves_nothing(backend: DiskBackend) -> None:
    blob = await put(backend, os.urandom(MIB))
    before = blob_files(backend)
    with pytest.raises(FileNotFoundError):
        await concat_blobs(backend, [blob, "0" * 32])
    assert blob_files(backend) == before
    assert list(backend.tmp_dir.iterdir()) == []


async def test_cancelled_join_leaves_no_half_object(backend: DiskBackend) -> None:
    part = os.urandom(8 * MIB)
    blobs = [await put(backend, part) for _ in range(8)]
    before = blob_files(backend)
    task = asyncio.ensure_future(concat_blobs(backend, blobs))
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        result = await task
    except asyncio.CancelledError:
        assert blob_files(backend) == before
    else:  # finished before the cancel arrived: then it must be whole
        assert result.blob is not None and result.md5 == b64md5(part * 8)
    assert list(backend.tmp_dir.iterdir()) == []
    for blob in blobs:
        assert await read_all(backend, blob) == part


async def test_ranges_across_the_parts_of_a_joined_blob(backend: DiskBackend) -> None:
    parts = [os.urandom(n) for n in (MIB + 7, 3, 2 * MIB)]
    blobs = [await put(backend, p) for p in parts]
    whole = b"".join(parts)
    result = await concat_blobs(backend, blobs)
    assert result.blob is not None
    for start, end in [(0, 1), (MIB, MIB + 10), (MIB + 7, MIB + 10), (MIB + 8, len(whole)),
                       (5, None), (len(whole) - 1, None)]:
        got = b"".join([c async for c in backend.read_blob(result.blob, start, end)])
        assert got == whole[start:end], (start, end)
    # several files are not one for sendfile: the reader streams them instead
    assert await backend.open_blob_file(result.blob) is None


async def test_joined_blob_outlives_its_parts_and_links_copy_no_bytes(
    backend: DiskBackend,
) -> None:
    parts = [os.urandom(2 * MIB), os.urandom(MIB)]
    blobs = [await put(backend, p) for p in parts]
    inodes = {backend.blob_path(b).stat().st_ino for b in blobs}
    result = await concat_blobs(backend, blobs)
    assert result.blob is not None
    members = sorted(backend.blob_path(result.blob).iterdir())
    shared = {m.stat().st_ino for m in members} == inodes
    assert shared is backend.use_hard_links
    link = await backend.link_blob(result.blob)  # a SnapLink of the joined object
    await backend.drop_blobs(blobs)
    await backend.drop_blobs([result.blob])
    await asyncio.gather(*backend._unlinking)
    assert await read_all(backend, link) == b"".join(parts)


async def test_one_part_is_joined_as_one_file(backend: DiskBackend) -> None:
    part = os.urandom(MIB)
    blob = await put(backend, part)
    result = await concat_blobs(backend, [blob])
    assert result.blob is not None and backend.blob_path(result.blob).is_file()
    f = await backend.open_blob_file(result.blob)
    assert f is not None
    with f:
        assert f.read() == part


async def test_digest_hashed_ahead_is_used_and_checked(backend: DiskBackend) -> None:
    parts = [os.urandom(n) for n in (2 * MIB, MIB, 5)]
    blobs = [await put(backend, p) for p in parts]
    running = RunningDigest(backend)
    for number, blob in enumerate(blobs):
        running.offer(number, blob)
    await asyncio.sleep(0.2)  # hashed in the background meanwhile
    result = await concat_blobs(backend, blobs, running)
    assert result.md5 == b64md5(b"".join(parts))
    # part 1 uploaded again after it was hashed: the digest follows the new bytes
    again = os.urandom(MIB)
    replaced = await put(backend, again)
    running.offer(1, replaced)
    result = await concat_blobs(backend, [blobs[0], replaced, blobs[2]], running)
    assert result.md5 == b64md5(parts[0] + again + parts[2])
    # a commit of other parts than those hashed: still their digest
    result = await concat_blobs(backend, [blobs[2], blobs[0]], running)
    assert result.md5 == b64md5(parts[2] + parts[0])
