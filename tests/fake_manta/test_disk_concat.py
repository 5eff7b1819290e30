"""The disk backend's MPU commit join (``DiskBackend.concat``), in-kernel copy and fallback.

Both paths are run: ``copy_file_range`` and the plain read/write one taken where the kernel
refuses it, forced through the backend's documented ``use_copy_file_range`` switch.
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

MIB = 1 << 20


@pytest.fixture(params=["copy_file_range", "read_write"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DiskBackend]:
    b = DiskBackend(tmp_path / "m")
    b.use_copy_file_range = request.param == "copy_file_range" and hasattr(os, "copy_file_range")
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
