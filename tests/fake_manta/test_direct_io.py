"""Parts written around the page cache (``O_DIRECT``) and through it: the same bytes.

Sizes straddle the alignment and the staging buffer, where the padded last block and the cut
that follows it could go wrong.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fake_manta.models.direct_io import ALIGN, BUFFER, DirectFile, open_direct
from fake_manta.models.disk import DiskBackend

SIZES = [1, ALIGN - 1, ALIGN, ALIGN + 1, BUFFER - 1, BUFFER, BUFFER + 1, 2 * BUFFER + ALIGN + 3]


@pytest.fixture(params=["direct", "buffered"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DiskBackend]:
    b = DiskBackend(tmp_path / "m")
    b.use_direct_io = request.param == "direct"
    await b.open()
    yield b
    await b.close()


@pytest.mark.parametrize("size", SIZES)
async def test_blob_holds_exactly_the_bytes_written(backend: DiskBackend, size: int) -> None:
    data = os.urandom(size)
    writer = await backend.new_writer(read_once=True)
    for start in range(0, size, 100_003):  # pieces of odd sizes, as the socket hands them over
        writer.write(data[start : start + 100_003])
    blob = writer.commit()
    assert backend.blob_path(blob).stat().st_size == size
    assert b"".join([c async for c in backend.read_blob(blob)]) == data
    assert list(backend.tmp_dir.iterdir()) == []


async def test_discarded_upload_leaves_nothing(backend: DiskBackend) -> None:
    writer = await backend.new_writer(read_once=True)
    writer.write(os.urandom(BUFFER + 5))
    writer.discard()
    assert list(backend.tmp_dir.iterdir()) == []


def test_direct_file_pads_and_cuts(tmp_path: Path) -> None:
    fd = open_direct(tmp_path / "f")
    if fd is None:
        pytest.skip(f"{tmp_path} refuses O_DIRECT")
    f = DirectFile(fd, buffer_size=2 * ALIGN)
    f.write(b"a" * (3 * ALIGN + 1))
    assert f.finish() == 3 * ALIGN + 1
    f.close()
    assert (tmp_path / "f").read_bytes() == b"a" * (3 * ALIGN + 1)

