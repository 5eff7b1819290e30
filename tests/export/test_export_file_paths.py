"""The two ways the image file leaves the gateway for Manta.

The embedded catalog keeps files on local disk (``LocalFileCatalog``): the Manta target sends
them with sendfile while the export hashes them in a thread. A catalog that can only stream
(one backed by a remote IMGAPI, say) goes through the verified iterator instead. Both must
write the same bytes and refuse a corrupt copy without leaving anything in Manta.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway import hookimpl
from gateway.catalog import Image, LocalFileCatalog
from gateway.server.appkeys import CATALOG
from gateway.settings import Settings
from plugins.catalog.embedded import EmbeddedCatalogFactory
from plugins.catalog.embedded.store import EmbeddedCatalog
from tests.support.export_env import ExportEnv, make_env
from tests.support.storage_targets import open_target


class StreamOnlyCatalog:
    """An ``ImageCatalog`` that only streams: the embedded one behind the bare protocol."""

    def __init__(self, inner: EmbeddedCatalog) -> None:
        self.inner = inner

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def list_images(self) -> list[Image]:
        return await self.inner.list_images()

    async def get_image(self, uuid: str) -> Image | None:
        return await self.inner.get_image(uuid)

    async def delete_image(self, uuid: str) -> bool:
        return await self.inner.delete_image(uuid)

    async def import_image(self, manifest: Mapping[str, Any], body: AsyncIterator[bytes]) -> Image:
        return await self.inner.import_image(manifest, body)

    def open_file(self, uuid: str, index: int = 0) -> AsyncIterator[bytes]:
        return self.inner.open_file(uuid, index)

    def file_path(self, uuid: str, index: int = 0) -> Path:
        """For ``ExportEnv.catalog_file`` (corrupting the copy on purpose)."""
        return self.inner.file_path(uuid, index)


class StreamOnlyCatalogFactory:
    name = "stream-only"

    def create(self, config: Mapping[str, Any], settings: Settings) -> StreamOnlyCatalog:
        inner = EmbeddedCatalogFactory().create({"kind": "embedded"}, settings)
        return StreamOnlyCatalog(inner)


class StreamOnlyPlugin:
    @hookimpl
    def gateway_register_image_catalogs(self) -> list[Any]:
        return [StreamOnlyCatalogFactory()]


@pytest.fixture(params=["local-file", "stream-only"])
async def file_env(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[ExportEnv]:
    """The gateway on the on-disk fake Manta, with each kind of catalog."""
    extra: dict[str, Any] = {}
    if request.param == "stream-only":
        extra = {"plugins": (StreamOnlyPlugin(),), "catalog": {"kind": "stream-only"}}
    async with open_target("manta-disk", tmp_path / "target") as harness:
        env = await make_env(aiohttp_client, harness, tmp_path / "gateway", **extra)
        assert isinstance(env.app[CATALOG], LocalFileCatalog) == (request.param == "local-file")
        yield env


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("size", [1, 65536, 9 * 1024 * 1024 + 3], ids=["1B", "64KiB", "9MiB"])
async def test_the_file_arrives_byte_for_byte(file_env: ExportEnv, size: int) -> None:
    data = blob(size, seed=size)
    image = await file_env.image(data)
    answer = await file_env.export(image.uuid, file_env.path("img"))
    assert answer.status == 200, answer.body
    stored = await file_env.read(answer.body["image_path"])
    assert hashlib.sha1(stored).hexdigest() == image.files[0].sha1
    assert stored == data
    info = await file_env.harness.target.stat(answer.body["image_path"])
    assert info is not None and info.content_md5 == image.files[0].content_md5


@pytest.mark.parametrize("offset", [0, 5 * 1024 * 1024 + 7, -1], ids=["first", "middle", "last"])
async def test_a_corrupt_copy_leaves_nothing(file_env: ExportEnv, offset: int) -> None:
    """Longer than the iterator's read-ahead and the sendfile window: the verdict still comes
    before the last byte, wherever the flipped bit is, so Manta never commits the object."""
    data = blob(13 * 1024 * 1024 + 3, seed=31)
    image = await file_env.image(data)
    stored = file_env.catalog_file(image)
    raw = bytearray(stored.read_bytes())
    raw[offset] ^= 0x10
    stored.write_bytes(bytes(raw))
    answer = await file_env.export(image.uuid, file_env.path("img"))
    assert answer.status == 500
    assert answer.body["code"] == "ImageFileCorrupt"
    assert not await file_env.exists(file_env.path("img.zfs"))
    assert not await file_env.exists(file_env.path("img.imgmanifest"))


async def test_exports_of_one_file_at_once_all_arrive(file_env: ExportEnv) -> None:
    data = blob(5 * 1024 * 1024, seed=41)
    image = await file_env.image(data)
    answers = await asyncio.gather(
        *(file_env.export(image.uuid, file_env.path(f"img{i}")) for i in range(4))
    )
    for answer in answers:
        assert answer.status == 200, answer.body
        assert await file_env.read(answer.body["image_path"]) == data
