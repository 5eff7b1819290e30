"""The embedded catalog against real files and a real SQLite database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import (
    CatalogError,
    ImageAlreadyExists,
    ImageCatalog,
    ImageFileMismatch,
    InvalidManifest,
    LocalFileCatalog,
)
from gateway.server.plugin_manager import Hooks, build_plugin_manager
from gateway.settings import Settings
from plugins.catalog.embedded import EmbeddedCatalog, EmbeddedCatalogFactory
from plugins.catalog.embedded.store import CHUNK_SIZE, RECHECK_AFTER, STALE_AFTER

MiB = 1024 * 1024
UUID = "0b5e7b0c-1111-4222-8333-944444444444"
OWNER = "930896af-bf8c-48d4-885c-6573a94b1853"
DATA = bytes(range(256)) * (10 * 1024 + 3)  # 2.5 MiB and a bit: three 1 MiB reads


def manifest(data: bytes = DATA, **changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "v": 2,
        "uuid": UUID,
        "owner": OWNER,
        "name": "base-64",
        "version": "1.0.0",
        "type": "zone-dataset",
        "os": "smartos",
        "files": [
            {"sha1": hashlib.sha1(data).hexdigest(), "size": len(data), "compression": "gzip"}
        ],
        "tags": {"role": "test"},
        "description": "a test image",
        "requirements": {"min_ram": 256},
    }
    m.update(changes)
    return {k: v for k, v in m.items() if v is not None}


async def chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[EmbeddedCatalog]:
    cat = EmbeddedCatalogFactory().create({}, Settings(data_dir=tmp_path))
    await cat.open()
    yield cat
    await cat.close()


def leftovers(root: Path) -> list[str]:
    """What an import may leave behind besides the database."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("catalog.sqlite"))


def schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_nodes(value)


# --- the plugin -----------------------------------------------------------------------------


def test_hook_registers_embedded_factory(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, load_entrypoints=False, disabled_plugins=("export", "manta", "s3")
    )
    provided = Hooks(build_plugin_manager(settings, env={})).provided()
    factory = provided.image_catalogs["embedded"]
    assert isinstance(factory, EmbeddedCatalogFactory)
    catalog = factory.create({}, settings)
    assert isinstance(catalog, ImageCatalog)
    assert catalog.root == tmp_path / "images"


def test_factory_path_and_unknown_options(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert (
        EmbeddedCatalogFactory().create({"path": str(tmp_path / "x")}, settings).root
        == tmp_path / "x"
    )
    assert EmbeddedCatalogFactory().create({"path": "cat"}, settings).root == tmp_path / "cat"
    with pytest.raises(ValueError, match="unknown setting"):
        EmbeddedCatalogFactory().create({"paht": "x"}, settings)
    with pytest.raises(ValueError, match="path"):
        EmbeddedCatalogFactory().create({"path": 3}, settings)


def test_every_format_sits_beside_type_string() -> None:
    path = Path(__file__).parents[2] / "gateway" / "plugin_kit" / "manifest.schema.json"
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    with_format = [n for n in schema_nodes(schema) if "format" in n]
    assert len(with_format) >= 3
    assert all(n.get("type") == "string" for n in with_format)


# --- import -------------------------------------------------------------------------------


async def test_import_stores_imgapi_manifest_and_file(catalog: EmbeddedCatalog) -> None:
    image = await catalog.import_image(manifest(), chunks(DATA))
    m = image.manifest
    assert list(m) == [
        "v", "uuid", "owner", "name", "version", "state", "disabled", "public", "published_at",
        "type", "os", "files", "description", "requirements", "tags",
    ]  # fmt: skip
    assert (m["state"], m["disabled"], m["public"]) == ("active", False, False)
    assert m["published_at"].endswith("Z")
    assert m["files"] == [manifest()["files"][0]]
    (f,) = image.files
    assert f.content_md5 == base64.b64encode(hashlib.md5(DATA).digest()).decode()
    assert (f.sha1, f.size, f.compression) == (hashlib.sha1(DATA).hexdigest(), len(DATA), "gzip")
    assert (catalog.root / UUID / "file0").read_bytes() == DATA
    assert leftovers(catalog.root) == [UUID]
    assert await catalog.get_image(UUID) == image
    assert [i.uuid for i in await catalog.list_images()] == [UUID]


async def test_open_file_streams_mebibyte_chunks(catalog: EmbeddedCatalog) -> None:
    await catalog.import_image(manifest(), chunks(DATA, 7777))
    sizes = [len(c) async for c in catalog.open_file(UUID)]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, len(DATA) - 2 * CHUNK_SIZE]
    assert CHUNK_SIZE == MiB
    with pytest.raises(CatalogError):
        async for _ in catalog.open_file(UUID, 1):
            pass


async def test_open_local_file_gives_the_imported_bytes(catalog: EmbeddedCatalog) -> None:
    """What the export sends with sendfile: the very file the import renamed into place."""
    assert isinstance(catalog, LocalFileCatalog)
    await catalog.import_image(manifest(), chunks(DATA))
    fh = await catalog.open_local_file(UUID)
    with fh:
        assert fh.read() == DATA
    with pytest.raises(CatalogError, match="has no file 1"):
        await catalog.open_local_file(UUID, 1)
    with pytest.raises(CatalogError, match="not found"):
        await catalog.open_local_file("0b5e7b0c-0000-4222-8333-944444444444")


async def test_image_survives_reopen(tmp_path: Path, catalog: EmbeddedCatalog) -> None:
    image = await catalog.import_image(manifest(), chunks(DATA))
    again = EmbeddedCatalog(catalog.root)
    await again.open()
    try:
        assert await again.get_image(UUID) == image
    finally:
        await again.close()


@pytest.mark.parametrize(
    ("changes", "state", "published"),
    [
        ({"disabled": True}, "disabled", True),
        ({"activated": False}, "unactivated", False),
        ({"state": "disabled"}, "disabled", True),
        ({"published_at": "2020-01-02T03:04:05Z"}, "active", True),
    ],
)
async def test_state_is_derived_as_imgapi_does(
    catalog: EmbeddedCatalog, changes: dict[str, Any], state: str, published: bool
) -> None:
    image = await catalog.import_image(manifest(**changes), chunks(DATA))
    assert image.manifest["state"] == state
    assert image.manifest["disabled"] is (state == "disabled")
    assert ("published_at" in image.manifest) is published
    assert "activated" not in image.manifest
    if "published_at" in changes:
        assert image.manifest["published_at"] == changes["published_at"]


async def test_zvol_fields_and_acl_kept_in_order(catalog: EmbeddedCatalog) -> None:
    m = manifest(
        type="zvol", os="linux", nic_driver="virtio", disk_driver="virtio", cpu_type="host",
        image_size=10240, acl=[OWNER], public=True, homepage="https://example.com/",
        icon=True, channels=["dev"],
    )  # fmt: skip
    image = await catalog.import_image(m, chunks(DATA))
    keys = list(image.manifest)
    assert keys.index("acl") == keys.index("files") + 1
    assert keys[-5:] == ["nic_driver", "disk_driver", "cpu_type", "image_size", "tags"]
    assert "icon" not in keys and "channels" not in keys


# --- failed imports leave nothing ----------------------------------------------------------


async def test_short_file_is_a_size_mismatch(catalog: EmbeddedCatalog) -> None:
    with pytest.raises(ImageFileMismatch, match="size"):
        await catalog.import_image(manifest(), chunks(DATA[:-1]))
    assert leftovers(catalog.root) == []
    assert await catalog.get_image(UUID) is None


async def test_long_file_stops_reading_early(catalog: EmbeddedCatalog) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    with pytest.raises(ImageFileMismatch, match="larger"):
        await catalog.import_image(manifest(), endless())
    assert sent <= len(DATA) + 64 * 1024
    assert leftovers(catalog.root) == []


async def test_sha1_mismatch(catalog: EmbeddedCatalog) -> None:
    corrupt = b"y" + DATA[1:]
    with pytest.raises(ImageFileMismatch, match="sha1"):
        await catalog.import_image(manifest(), chunks(corrupt))
    assert leftovers(catalog.root) == []
    assert await catalog.list_images() == []


async def test_failing_body_leaves_nothing(catalog: EmbeddedCatalog) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield DATA[:MiB]
        yield DATA[MiB : 2 * MiB]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await catalog.import_image(manifest(), broken())
    assert leftovers(catalog.root) == []


async def test_duplicate_uuid_keeps_the_first(catalog: EmbeddedCatalog) -> None:
    first = await catalog.import_image(manifest(), chunks(DATA))
    with pytest.raises(ImageAlreadyExists):
        await catalog.import_image(manifest(name="other"), chunks(DATA))
    assert await catalog.get_image(UUID) == first
    assert (catalog.root / UUID / "file0").read_bytes() == DATA


# --- validation ----------------------------------------------------------------------------

BAD = [
    ({"name": None}, "name", "MissingParameter"),
    ({"uuid": "not-a-uuid"}, "uuid", "Invalid"),
    ({"uuid": UUID.upper()}, "uuid", "Invalid"),
    ({"owner": None}, "owner", "MissingParameter"),
    ({"name": "x" * 1025}, "name", "Invalid"),  # IMGAPI-451: 1024
    ({"name": "semi;colon"}, "name", "Invalid"),
    ({"version": "1.0 beta"}, "version", "Invalid"),
    ({"v": 1}, "v", "Invalid"),
    ({"type": "vm"}, "type", "Invalid"),
    ({"os": "plan9"}, "os", "Invalid"),
    ({"type": "zvol"}, "nic_driver", "MissingParameter"),
    ({"image_size": 10}, "image_size", "Invalid"),
    ({"inherited_directories": ["/x"], "type": "lx-dataset"}, "inherited_directories", "Invalid"),
    ({"bogus": 1}, "bogus", "Invalid"),
    ({"files": None}, "files", "MissingParameter"),
    ({"files": []}, "files", "Invalid"),
    ({"files": [{"sha1": "a" * 40, "size": 1, "compression": "zip"}]}, "files", "Invalid"),
    ({"files": [{"sha1": "xyz", "size": 1, "compression": "none"}]}, "files", "Invalid"),
    ({"files": [{"size": 1, "compression": "none"}]}, "files", "Invalid"),
    ({"requirements": {"gpu": True}}, "requirements.gpu", "Invalid"),
    ({"requirements": {"min_ram": 512, "max_ram": 256}}, "requirements.max_ram", "Invalid"),
    ({"requirements": {"min_platform": {"7.0": "2012"}}}, "requirements.min_platform", "Invalid"),
    ({"published_at": "2020-01-01 00:00:00"}, "published_at", "Invalid"),
    ({"acl": ["bob"]}, "acl", "Invalid"),
    ({"homepage": "ftp://example.com/"}, "homepage", "Invalid"),
    ({"eula": "https://example.com/" + "e" * 1010}, "eula", "Invalid"),
    ({"state": "creating"}, "state", "Invalid"),
    ({"state": "active", "disabled": True}, "state", "Invalid"),
    ({"public": "yes"}, "public", "Invalid"),
    ({"tags": {"big": "t" * 103000}}, "tags", "Invalid"),
    ({"users": [{"name": "root", "uid": 0}]}, "users", "Invalid"),
]


@pytest.mark.parametrize(("changes", "field", "code"), BAD, ids=[b[1] + "-" + b[2] for b in BAD])
async def test_invalid_manifest_names_the_field(
    catalog: EmbeddedCatalog, changes: dict[str, Any], field: str, code: str
) -> None:
    body_read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal body_read
        body_read = True
        yield DATA

    with pytest.raises(InvalidManifest) as info:
        await catalog.import_image(manifest(**changes), body())
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in info.value.errors
    ]
    assert all(e["message"] for e in info.value.errors)
    assert field.split(".")[0] in str(info.value)
    assert not body_read
    assert leftovers(catalog.root) == []


async def test_manifest_not_an_object(catalog: EmbeddedCatalog) -> None:
    with pytest.raises(InvalidManifest):
        await catalog.import_image(["not", "a", "manifest"], chunks(DATA))  # type: ignore[arg-type]


# --- delete --------------------------------------------------------------------------------


async def test_delete_removes_row_and_file(catalog: EmbeddedCatalog) -> None:
    await catalog.import_image(manifest(), chunks(DATA))
    assert await catalog.delete_image(UUID) is True
    assert await catalog.get_image(UUID) is None
    assert leftovers(catalog.root) == []
    assert await catalog.delete_image(UUID) is False
    again = await catalog.import_image(manifest(), chunks(DATA))  # the uuid is free again
    assert again.uuid == UUID


async def test_concurrent_imports_of_one_uuid(catalog: EmbeddedCatalog) -> None:
    results = await asyncio.gather(
        catalog.import_image(manifest(), chunks(DATA)),
        catalog.import_image(manifest(name="second"), chunks(DATA, 50_000)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ImageAlreadyExists)
    stored = await catalog.get_image(UUID)
    assert stored is not None and stored in results
    assert (catalog.root / UUID / "file0").read_bytes() == DATA
    assert leftovers(catalog.root) == [UUID]


async def test_cancelled_import_leaves_nothing(catalog: EmbeddedCatalog) -> None:
    started, never = asyncio.Event(), asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield DATA[: 2 * MiB]
        started.set()
        await never.wait()
        yield DATA[2 * MiB :]

    task = asyncio.create_task(catalog.import_image(manifest(), stalled()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(catalog.root) == []
    assert await catalog.get_image(UUID) is None


async def test_open_sweeps_stale_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    stale_tmp, fresh_tmp = root / ".import-old.tmp", root / ".import-new.tmp"
    stale_trash = root / f".trash-{UUID}-0000"
    stale_trash.mkdir()
    (stale_trash / "file0").write_bytes(b"x")
    for path in (stale_tmp, fresh_tmp):
        path.write_bytes(b"partial")
    old = time.time() - STALE_AFTER - 60
    for path in (stale_tmp, stale_trash):
        os.utime(path, (old, old))
    cat = EmbeddedCatalog(root)
    await cat.open()
    await cat.close()
    assert leftovers(root) == [".import-new.tmp"]  # may be another process's import


async def test_orphan_directory_of_a_crashed_import(catalog: EmbeddedCatalog) -> None:
    orphan = catalog.root / UUID
    orphan.mkdir()
    (orphan / "file0").write_bytes(b"half")
    with pytest.raises(ImageAlreadyExists):  # young: maybe another import in flight
        await catalog.import_image(manifest(), chunks(DATA))
    assert (orphan / "file0").read_bytes() == b"half"
    old = time.time() - STALE_AFTER - 60
    os.utime(orphan, (old, old))
    image = await catalog.import_image(manifest(), chunks(DATA))
    assert (orphan / "file0").read_bytes() == DATA and image.uuid == UUID


async def test_reads_follow_writes_made_through_another_connection(
    catalog: EmbeddedCatalog,
) -> None:
    """Reads are kept in memory: another connection's (another process's) import, update and
    delete are seen by reads within ``RECHECK_AFTER``; this connection's own at once."""

    async def after_bound() -> None:
        await asyncio.sleep(RECHECK_AFTER * 2)

    other = EmbeddedCatalog(catalog.root)
    await other.open()
    try:
        assert await catalog.get_image(UUID) is None
        assert await catalog.list_images() == []
        await other.import_image(manifest(), chunks(DATA))
        await after_bound()
        first = await catalog.get_image(UUID)
        assert first is not None and first.manifest["description"] == "a test image"
        assert await catalog.get_image(UUID) is first  # served from memory
        assert [i.uuid for i in await catalog.list_images()] == [UUID]

        await other.update_image(UUID, {"description": "changed elsewhere"})
        await after_bound()
        changed = await catalog.get_image(UUID)
        assert changed is not None and changed.manifest["description"] == "changed elsewhere"
        listed = await catalog.list_images()
        assert listed[0].manifest["description"] == "changed elsewhere"

        await catalog.update_image(UUID, {"description": "changed here"})
        mine = await catalog.get_image(UUID)
        assert mine is not None and mine.manifest["description"] == "changed here"
        await after_bound()
        seen = await other.get_image(UUID)
        assert seen is not None and seen.manifest["description"] == "changed here"

        assert await other.delete_image(UUID)
        await after_bound()
        assert await catalog.get_image(UUID) is None
        assert await catalog.list_images() == []
    finally:
        await other.close()
